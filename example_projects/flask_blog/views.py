"""The blog's pages: one blueprint, three goals, each tracked a different way.

- ``signup``: the ``@track_goal`` decorator on a form view (GET shows the form, a POST with
  errors shows it again with 200, a valid POST redirects): ``when=`` counts the redirect, so
  one goal per successful signup; metadata built from the request;
- ``newsletter_subscribe``: ``track_goal(request, ...)`` inside the view, once the subscription
  is stored;
- ``login``: ``connect_goal`` on a blinker signal, its metadata callable taking the signal's
  ``user`` argument by name. With flask-login, connect ``flask_login.user_logged_in`` the same
  way instead of this app's own signal (it sends ``user`` too).
"""

from __future__ import annotations

from typing import Any

from blinker import Namespace
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template_string,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from goaltrack.flask import connect_goal, current_visitor, track_goal

blog = Blueprint("blog", __name__)

user_logged_in = Namespace().signal("user-logged-in")
connect_goal(
    user_logged_in,
    "login",
    metadata=lambda user: {"method": "password", "role": "admin" if user == "admin" else "reader"},
)

POSTS = [
    ("Server-side goals", "Why the signup goal is recorded by the server, not the browser."),
    ("Never block a request", "Goals leave through a queue; the response does not wait."),
]

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>goaltrack Flask blog</title>
{{ goaltrack_script() }}
</head><body>
<h1>goaltrack Flask blog</h1>
{% for message in get_flashed_messages() %}<p><b>{{ message }}</b></p>{% endfor %}
<p>Visitor: {{ visitor.visitor_id if visitor else "none yet (reload once in demo mode)" }}
{% if user %} &middot; logged in as {{ user }}{% endif %}</p>
{% for title, text in posts %}<h2>{{ title }}</h2><p>{{ text }}</p>{% endfor %}
<form method="post" action="{{ url_for('blog.signup') }}"><h3>Sign up</h3>
  <input name="email" type="email" placeholder="you@example.com" required>
  <select name="plan"><option>free</option><option>pro</option></select>
  <button>Sign up</button></form>
<form method="post" action="{{ url_for('blog.subscribe') }}"><h3>Newsletter</h3>
  <input name="email" type="email" placeholder="you@example.com" required>
  <button>Subscribe</button></form>
<form method="post" action="{{ url_for('blog.login') }}"><h3>Log in</h3>
  <input name="username" placeholder="name" required> <button>Log in</button></form>
{% if fake_api_url %}<p>Goals received by the fake API:
  <a href="{{ fake_api_url }}/_fake/">{{ fake_api_url }}/_fake/</a></p>{% endif %}
</body></html>
"""


@blog.get("/")
def index() -> Response:
    fake_api = current_app.config.get("DEMO_FAKE_API")
    visitor = current_visitor()
    response = current_app.make_response(
        render_template_string(
            PAGE,
            posts=POSTS,
            visitor=visitor,
            user=session.get("user"),
            fake_api_url=fake_api.url if fake_api else None,
        )
    )
    if fake_api is not None and visitor is None:
        # What DataFast's script does in a real browser: record a pageview, set the cookie.
        visitor_id = fake_api.add_pageview("datafast")
        response.set_cookie("datafast_visitor_id", visitor_id, max_age=365 * 24 * 3600)
    return response


SIGNUP_PAGE = """<!doctype html><title>Sign up</title><h1>Sign up</h1>
{% if error %}<p><b>{{ error }}</b></p>{% endif %}
<form method="post"><input name="email" type="email" placeholder="you@example.com">
<select name="plan"><option>free</option><option>pro</option></select>
<button>Sign up</button></form>
"""


def signup_metadata(request: Any) -> dict[str, str]:
    return {"plan": request.form.get("plan", "free")}


@blog.route("/signup", methods=["GET", "POST"])
@track_goal(
    "signup",
    metadata=signup_metadata,
    # Only the redirect after a valid POST: not the form shown, nor shown again with an error.
    when=lambda response: response.status_code == 302,
)
def signup() -> BaseResponse | str:
    error = None
    if request.method == "POST":
        if "@" in request.form.get("email", ""):
            flash("Welcome aboard!")
            return redirect(url_for("blog.index"))
        error = "An email address is needed."
    return render_template_string(SIGNUP_PAGE, error=error)


@blog.post("/subscribe")
def subscribe() -> BaseResponse:
    if "@" not in request.form.get("email", ""):
        abort(400, "an email address is needed")
    track_goal(request, "newsletter_subscribe", {"list": "weekly"})
    flash("Subscribed to the weekly newsletter.")
    return redirect(url_for("blog.index"))


@blog.post("/login")
def login() -> BaseResponse:
    username = request.form.get("username", "").strip()
    if not username:
        abort(400, "a name is needed")
    session["user"] = username
    user_logged_in.send(current_app._get_current_object(), user=username)  # type: ignore[attr-defined]
    flash(f"Hello, {username}.")
    return redirect(url_for("blog.index"))


@blog.get("/healthz")
def healthz() -> str:
    return "ok"
