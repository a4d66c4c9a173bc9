"""The contract's app in each framework, the same routes everywhere, served over real HTTP.

Routes (POST; query parameters in brackets):

- ``/track`` [name, key, plan]: ``track_goal(request, name, {key: plan})``; answers
  ``{"queued": bool}``, or ``{"raised": "InvalidGoal"}`` when the call raised it;
- ``/track-timezone``: a direct call with ``timezone="Europe/Paris"``;
- ``/track-three``: three direct calls (``goal_0`` .. ``goal_2``);
- ``/decorated`` [status, plan]: ``@track_goal("purchase", metadata=...)``, answering *status*;
- ``/decorated-raises``: a decorated view that raises;
- ``/metadata-raises``: a decorated view whose metadata callable raises;
- ``/declared`` [plan]: a metadata callable declaring fewer arguments than it could get (in
  FastAPI, on an endpoint with extra parameters: a ``GoalTrackerDep`` and the ``Request``);
- ``/decorated-timezone``: ``@track_goal("purchase", timezone="Europe/Paris")``;
- ``/signal`` [which, plan]: sends a signal connected with ``connect_goal``: ``ok`` (goal
  ``account_opened``, ``when=`` skips plan "skip"), ``when`` (its ``when`` raises) or
  ``metadata`` (its metadata callable raises);
- ``/pay`` [amount, currency, txn, visitor]: ``track_payment(request, Decimal(amount),
  currency, txn, visitor_id=visitor)`` (the cookie's visitor without ``visitor``; in FastAPI,
  ``goals.track_payment``); answers ``{"queued": bool}``, or ``{"raised": "InvalidPayment"}``.

Each ``serve_*`` builds the adapter from the same option names (``skip_bots``,
``flush_at_request_end``, ``max_queue_size``, ``on_delivery``, ...) spelled its own way, serves
it on a free loopback port in a thread (werkzeug's server for WSGI, uvicorn for ASGI), and yields
a :class:`Served`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import ModuleType
from typing import Any

from fastapi import Request, Response

from goaltrack import GoalTracker, InvalidGoal, InvalidPayment, get_tracker
from goaltrack.asgi import GoalTrackerDep
from tests.support.threaded import serve_asgi, serve_wsgi

PAYMENT_DEFAULTS = {"amount": "29.90", "currency": "usd", "txn": "ch_contract"}


def pay(track: Callable[..., bool], query: Mapping[str, str]) -> dict[str, Any]:
    """The /pay route's body, given the adapter's ``track_payment`` bound to the request."""
    args = {**PAYMENT_DEFAULTS, **query}
    try:
        queued = track(
            Decimal(args["amount"]),
            args["currency"],
            args["txn"],
            visitor_id=args.get("visitor") or None,
        )
    except InvalidPayment:
        return {"raised": "InvalidPayment"}
    return {"queued": queued}


ADAPTERS = ("django", "flask", "fastapi", "starlette")


@dataclass
class Served:
    """One adapter's contract app, running."""

    adapter: str
    url: str
    signals: ModuleType
    """The module with the adapter's goal_tracked / goal_delivered / goal_failed / goal_dropped."""
    tracker_of: Callable[[], GoalTracker]

    @property
    def tracker(self) -> GoalTracker:
        return self.tracker_of()

    @property
    def sender(self) -> GoalTracker:
        """The documented sender of those signals: the tracker the goals went through."""
        return self.tracker_of()


# -- Django --------------------------------------------------------------------------------------


@contextlib.contextmanager
def serve_django(options: Mapping[str, Any]) -> Iterator[Served]:
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import override_settings

    from goaltrack.django import signals

    setting = {name.upper(): value for name, value in options.items()}
    with (
        override_settings(GOALTRACK=setting, ROOT_URLCONF="tests.contract.django_urls"),
        serve_wsgi(WSGIHandler()) as url,
    ):
        tracker = get_tracker()
        try:
            yield Served("django", url, signals, get_tracker)
        finally:
            tracker.close(5)


# -- blinker signals for /signal (Flask, Starlette, FastAPI) ---------------------------------


def blinker_signals(connect_goal: Callable[..., Any]) -> dict[str, Any]:
    """The /signal route's signals, new for each app, connected with *connect_goal*."""
    from blinker import Namespace

    namespace = Namespace()
    signals = {which: namespace.signal(which) for which in ("ok", "when", "metadata")}
    connect_goal(
        signals["ok"],
        "account_opened",
        when=lambda sender, plan: plan != "skip",
        metadata=lambda sender, plan: {"plan": plan},
    )
    connect_goal(signals["when"], "when_raises", when=lambda sender: 1 / 0)
    connect_goal(signals["metadata"], "metadata_raises", metadata=lambda sender, **kw: kw["nope"])
    return signals


# -- Flask ---------------------------------------------------------------------------------------


def flask_app(options: Mapping[str, Any]) -> Any:
    from flask import Flask, current_app, jsonify, request

    from goaltrack.flask import GoalTrack, connect_goal, track_goal, track_payment

    app = Flask("contract")
    app.config.update({f"GOALTRACK_{name.upper()}": value for name, value in options.items()})
    GoalTrack(app)
    signals = blinker_signals(connect_goal)

    @app.post("/track")
    def track() -> Any:
        metadata = {request.args.get("key", "plan"): request.args.get("plan", "pro")}
        try:
            queued = track_goal(request, request.args.get("name", "signup"), metadata)
        except InvalidGoal:
            return jsonify(raised="InvalidGoal")
        return jsonify(queued=queued)

    @app.post("/track-timezone")
    def track_timezone() -> Any:
        return jsonify(queued=track_goal(request, "signup", timezone="Europe/Paris"))

    @app.post("/track-three")
    def track_three() -> Any:
        return jsonify(queued=[track_goal(request, f"goal_{n}") for n in range(3)])

    @app.post("/decorated")
    @track_goal(
        "purchase", metadata=lambda request, response: {"plan": request.args.get("plan", "pro")}
    )
    def decorated() -> Any:
        return "done", int(request.args.get("status", "200"))

    @app.post("/decorated-raises")
    @track_goal("purchase")
    def decorated_raises() -> Any:
        raise RuntimeError("the view failed")

    @app.post("/metadata-raises")
    @track_goal("purchase", metadata=lambda request, response: {"plan": request.form["missing"]})
    def metadata_raises() -> Any:
        return "done"

    @app.post("/declared")
    @track_goal("declared", metadata=lambda request: {"plan": request.args.get("plan", "pro")})
    def declared() -> Any:
        return "done"

    @app.post("/decorated-timezone")
    @track_goal("purchase", timezone="Europe/Paris")
    def decorated_timezone() -> Any:
        return "done"

    @app.post("/signal")
    def send_signal() -> Any:
        signal = signals[request.args.get("which", "ok")]
        signal.send(current_app._get_current_object(), plan=request.args.get("plan", "pro"))
        return "sent"

    @app.post("/pay")
    def payment() -> Any:
        def track(*args: Any, **kwargs: Any) -> bool:
            return track_payment(request, *args, **kwargs)

        return jsonify(pay(track, request.args))

    add_flask_routes(app)
    return app


@contextlib.contextmanager
def serve_flask(options: Mapping[str, Any]) -> Iterator[Served]:
    from goaltrack import flask as flask_adapter
    from goaltrack.flask import get_tracker as app_tracker

    app = flask_app(options)
    try:
        with serve_wsgi(app) as url:
            yield Served("flask", url, flask_adapter, lambda: app_tracker(app))
    finally:
        app_tracker(app).close(5)


# -- Starlette and FastAPI -----------------------------------------------------------------------


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    from goaltrack.asgi import connect_goal as asgi_connect_goal
    from goaltrack.asgi import track_goal, track_payment

    signals = blinker_signals(asgi_connect_goal)

    async def payment(request: Request) -> JSONResponse:
        def track(*args: Any, **kwargs: Any) -> bool:
            return track_payment(request, *args, **kwargs)

        return JSONResponse(pay(track, request.query_params))

    async def track(request: Request) -> JSONResponse:
        query = request.query_params
        metadata = {query.get("key", "plan"): query.get("plan", "pro")}
        try:
            queued = track_goal(request, query.get("name", "signup"), metadata)
        except InvalidGoal:
            return JSONResponse({"raised": "InvalidGoal"})
        return JSONResponse({"queued": queued})

    async def track_timezone(request: Request) -> JSONResponse:
        return JSONResponse({"queued": track_goal(request, "signup", timezone="Europe/Paris")})

    async def track_three(request: Request) -> JSONResponse:
        return JSONResponse({"queued": [track_goal(request, f"goal_{n}") for n in range(3)]})

    @track_goal(
        "purchase",
        metadata=lambda response, request: {"plan": request.query_params.get("plan", "pro")},
    )
    async def decorated(request: Request) -> PlainTextResponse:
        status = int(request.query_params.get("status", "200"))
        return PlainTextResponse("done", status_code=status)

    @track_goal("purchase")
    async def decorated_raises(request: Request) -> PlainTextResponse:
        raise RuntimeError("the view failed")

    @track_goal("purchase", metadata=lambda response, request: {"plan": request.path_params["x"]})
    async def metadata_raises(request: Request) -> PlainTextResponse:
        return PlainTextResponse("done")

    @track_goal("declared", metadata=lambda response: {"plan": response.headers["x-plan"]})
    async def declared(request: Request) -> PlainTextResponse:
        plan = request.query_params.get("plan", "pro")
        return PlainTextResponse("done", headers={"x-plan": plan})

    @track_goal("purchase", timezone="Europe/Paris")
    async def decorated_timezone(request: Request) -> PlainTextResponse:
        return PlainTextResponse("done")

    async def send_signal(request: Request) -> PlainTextResponse:
        query = request.query_params
        signals[query.get("which", "ok")].send("form", plan=query.get("plan", "pro"))
        return PlainTextResponse("sent")

    routes = {
        "/track": track,
        "/track-timezone": track_timezone,
        "/track-three": track_three,
        "/decorated": decorated,
        "/decorated-raises": decorated_raises,
        "/metadata-raises": metadata_raises,
        "/declared": declared,
        "/decorated-timezone": decorated_timezone,
        "/signal": send_signal,
        "/pay": payment,
    }
    return Starlette(
        routes=[Route(p, e, methods=["POST"]) for p, e in routes.items()] + starlette_routes()
    )


def fastapi_app() -> Any:
    # Request, Response and GoalTrackerDep are module-level: FastAPI resolves the endpoints'
    # annotations (strings here) in the module's namespace.
    from fastapi import FastAPI

    from goaltrack.asgi import connect_goal as asgi_connect_goal
    from goaltrack.asgi import track_goal

    app = FastAPI()
    signals = blinker_signals(asgi_connect_goal)

    @app.post("/track")
    async def track(
        goals: GoalTrackerDep, name: str = "signup", key: str = "plan", plan: str = "pro"
    ) -> Any:
        try:
            return {"queued": goals.track(name, {key: plan})}
        except InvalidGoal:
            return {"raised": "InvalidGoal"}

    @app.post("/track-timezone")
    async def track_timezone(request: Request) -> Any:
        return {"queued": track_goal(request, "signup", timezone="Europe/Paris")}

    @app.post("/track-three")
    async def track_three(goals: GoalTrackerDep) -> Any:
        return {"queued": [goals.track(f"goal_{n}") for n in range(3)]}

    @app.post("/decorated")
    @track_goal("purchase", metadata=lambda result, plan: {"plan": plan})
    async def decorated(response: Response, status: int = 200, plan: str = "pro") -> Any:
        response.status_code = status
        return {"done": True}

    @app.post("/decorated-raises")
    @track_goal("purchase")
    def decorated_raises() -> Any:
        raise RuntimeError("the view failed")

    @app.post("/metadata-raises")
    @track_goal("purchase", metadata=lambda result: {"plan": result["missing"]})
    async def metadata_raises() -> Any:
        return {"done": True}

    @app.post("/declared")
    @track_goal("declared", metadata=lambda result, plan: {"plan": plan})
    async def declared(goals: GoalTrackerDep, request: Request, plan: str = "pro") -> Any:
        return {"done": goals is request.scope["goaltrack"]}

    @app.post("/decorated-timezone", status_code=201)
    @track_goal("purchase", timezone="Europe/Paris")
    async def decorated_timezone() -> Any:
        return {"done": True}

    @app.post("/signal")
    def send_signal(which: str = "ok", plan: str = "pro") -> Any:  # sync: FastAPI's thread pool
        signals[which].send("form", plan=plan)
        return "sent"

    @app.post("/pay")
    async def payment(goals: GoalTrackerDep, request: Request) -> Any:
        return pay(goals.track_payment, request.query_params)

    add_fastapi_routes(app)
    return app


@contextlib.contextmanager
def serve_asgi_adapter(adapter: str, options: Mapping[str, Any]) -> Iterator[Served]:
    from goaltrack import asgi
    from goaltrack.asgi import GoalTrackMiddleware

    app = GoalTrackMiddleware(fastapi_app() if adapter == "fastapi" else starlette_app(), **options)
    try:
        with serve_asgi(app) as url:
            yield Served(adapter, url, asgi, lambda: app.tracker)
    finally:
        app.tracker.close(5)


@contextlib.contextmanager
def serve(adapter: str, options: Mapping[str, Any]) -> Iterator[Served]:
    """The contract app of *adapter*, built with *options* and served."""
    if adapter == "django":
        with serve_django(options) as served:
            yield served
    elif adapter == "flask":
        with serve_flask(options) as served:
            yield served
    else:
        with serve_asgi_adapter(adapter, options) as served:
            yield served


# -- conversions: form views and downloads (tests/contract/test_decorator_rule.py) -------------
#
# - ``/form`` [title] (GET, POST): shows a form on GET; on POST an empty title re-renders it with
#   an error (200), a title redirects (302). ``@track_goal("signup", when=...)``: the redirect
#   only, as the README shows;
# - ``/form-default``: the same view with a plain ``@track_goal("signup")``;
# - ``/download`` (GET): ``@track_goal("download", methods=["GET"])``.

FORM_PAGE = "<form method='post'><input name='title'><button>Post</button></form>"


def form_outcome(method: str, title: str | None) -> tuple[int, str]:
    """What the form view answers: (status, body), the body being the Location of a 302."""
    if method != "POST":
        return 200, FORM_PAGE
    if not title:
        return 200, "<p>A title is required.</p>" + FORM_PAGE
    return 302, "/thanks"


def add_flask_routes(app: Any) -> None:
    from flask import redirect, request

    from goaltrack.flask import track_goal

    def answer() -> Any:
        status, body = form_outcome(request.method, request.args.get("title"))
        return redirect(body) if status == 302 else (body, status)

    app.route("/form", methods=["GET", "POST"])(
        track_goal("signup", when=lambda response: response.status_code == 302)(answer)
    )
    app.route("/form-default", methods=["GET", "POST"], endpoint="form_default")(
        track_goal("signup")(lambda: answer())
    )
    app.get("/download")(track_goal("download", methods=["GET"])(lambda: "the file"))


def starlette_routes() -> list[Any]:
    from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse
    from starlette.routing import Route

    from goaltrack.asgi import track_goal

    async def answer(request: Request) -> Any:
        status, body = form_outcome(request.method, request.query_params.get("title"))
        if status == 302:
            return RedirectResponse(body, status_code=302)
        return HTMLResponse(body, status_code=status)

    @track_goal("signup", when=lambda response: response.status_code == 302)
    async def form(request: Request) -> Any:
        return await answer(request)

    @track_goal("signup")
    async def form_default(request: Request) -> Any:
        return await answer(request)

    @track_goal("download", methods=["GET"])
    async def download(request: Request) -> Any:
        return PlainTextResponse("the file")

    return [
        Route("/form", form, methods=["GET", "POST"]),
        Route("/form-default", form_default, methods=["GET", "POST"]),
        Route("/download", download, methods=["GET"]),
    ]


def add_fastapi_routes(app: Any) -> None:
    from starlette.responses import HTMLResponse, RedirectResponse

    from goaltrack.asgi import track_goal

    def answer(request: Request, title: str | None) -> Any:
        status, body = form_outcome(request.method, title)
        if status == 302:
            return RedirectResponse(body, status_code=302)
        return HTMLResponse(body, status_code=status)

    @app.api_route("/form", methods=["GET", "POST"])
    @track_goal("signup", when=lambda response: response.status_code == 302)
    async def form(request: Request, title: str | None = None) -> Any:
        return answer(request, title)

    @app.api_route("/form-default", methods=["GET", "POST"])
    @track_goal("signup")
    async def form_default(request: Request, title: str | None = None) -> Any:
        return answer(request, title)

    @app.get("/download")
    @track_goal("download", methods=["GET"])
    async def download() -> Any:
        return {"file": "the file"}
