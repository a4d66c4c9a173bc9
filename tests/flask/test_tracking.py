"""Tracking from Flask views over real HTTP to the fake API: every form of ``track_goal``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from blinker import Namespace
from flask import Blueprint, Flask, Response, abort, request
from flask.testing import FlaskClient
from flask.views import MethodView

import goaltrack
from goaltrack.context import bind_visitor, current_visitor, unbind_visitor
from goaltrack.flask import GoalTrack, connect_goal, get_tracker, goal_tracked, track_goal
from goaltrack.testing.server import FakeAPIServer
from tests.support.keys import KEYS

BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"}
GOOGLEBOT = {
    "User-Agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
}

AppFactory = Callable[..., Flask]


@pytest.fixture
def make_app(fake_api: FakeAPIServer) -> Iterator[AppFactory]:
    """Flask apps with goaltrack pointed at the fake API; their trackers are closed afterwards."""
    apps: list[Flask] = []

    def make(provider: str = "datafast", **config: Any) -> Flask:
        app = Flask(f"test_{provider}_{len(apps)}")
        app.config.update(
            GOALTRACK_API_KEY=KEYS[provider],
            GOALTRACK_PROVIDER=provider,
            GOALTRACK_API_URL=fake_api.api_url(provider),
            GOALTRACK_BACKOFF_BASE=0.01,
            **config,
        )
        GoalTrack(app)
        apps.append(app)
        return app

    yield make
    for app in apps:
        get_tracker(app).close(5)


def visitor_client(app: Flask, fake_api: FakeAPIServer, provider: str = "datafast") -> FlaskClient:
    """A test client carrying a visitor cookie the fake API knows (as the tracking script would)."""
    client = app.test_client()
    visitor_id = fake_api.add_pageview(provider)
    cookie = "datafast_visitor_id" if provider == "datafast" else "_fs_vid"
    client.set_cookie(cookie, visitor_id)
    return client


def add_sentinel(app: Flask) -> None:
    @app.post("/sentinel")
    def sentinel() -> str:
        track_goal(request, "sentinel")
        return "ok"


def names_after_sentinel(client: FlaskClient, fake_api: FakeAPIServer, count: int) -> list[str]:
    """Track a sentinel goal last, wait until the tracker settled everything: the goal names.

    Several requests are in flight at once, so arrival order is not tracking order: sorted.
    """
    assert client.post("/sentinel", headers=BROWSER).status_code == 200
    assert client.application.extensions["goaltrack"].flush(10)
    goals = fake_api.wait_for_goals(count, timeout=10)
    assert "sentinel" in [goal["name"] for goal in goals]
    return sorted(goal["name"] for goal in goals)


# -- the helper -------------------------------------------------------------------------------


def test_track_goal_in_a_view_sends_the_visitor_and_metadata(
    make_app: AppFactory, fake_api: FakeAPIServer
) -> None:
    app = make_app()

    @app.post("/signup")
    def signup() -> dict[str, object]:
        return {"tracked": track_goal(request, "signup", {"plan": "pro", "seats": 3})}

    client = visitor_client(app, fake_api)
    response = client.post("/signup", headers=BROWSER)

    assert response.json == {"tracked": True}
    [goal] = fake_api.wait_for_goals(1)
    assert goal["name"] == "signup"
    assert goal["provider"] == "datafast"
    assert goal["visitor_id"] == client.get_cookie("datafast_visitor_id").value  # type: ignore[union-attr]
    assert goal["metadata"] == {"plan": "pro", "seats": "3"}


def test_track_goal_raises_invalid_goal_to_the_caller(make_app: AppFactory) -> None:
    app = make_app()

    with app.test_request_context("/"), pytest.raises(goaltrack.InvalidGoal):
        track_goal(request, "Not A Valid Name!")


def test_current_visitor_is_bound_for_the_request_only(
    make_app: AppFactory, fake_api: FakeAPIServer
) -> None:
    app = make_app()
    seen: list[object] = []

    @app.get("/whoami")
    def whoami() -> str:
        seen.append(current_visitor())
        return "ok"

    client = visitor_client(app, fake_api)
    client.get("/whoami", headers=BROWSER)
    client.get("/whoami", headers=GOOGLEBOT)

    visitor_id = client.get_cookie("datafast_visitor_id").value  # type: ignore[union-attr]
    assert seen == [goaltrack.Visitor(visitor_id, None), None]
    assert current_visitor() is None


def test_cookieless_and_malformed_visitors_are_not_sent(
    make_app: AppFactory, fake_api: FakeAPIServer
) -> None:
    app = make_app()
    add_sentinel(app)
    results: list[bool] = []

    @app.post("/signup")
    def signup() -> str:
        results.append(track_goal(request, "signup"))
        return "ok"

    app.test_client().post("/signup", headers=BROWSER)
    malformed = app.test_client()
    malformed.set_cookie("datafast_visitor_id", "not-a-uuid")
    malformed.post("/signup", headers=BROWSER)

    assert results == [False, False]
    assert names_after_sentinel(visitor_client(app, fake_api), fake_api, 1) == ["sentinel"]


@pytest.mark.parametrize("provider", ["datafast", "flowsery"])
def test_bots_get_no_goals(make_app: AppFactory, fake_api: FakeAPIServer, provider: str) -> None:
    app = make_app(provider)
    add_sentinel(app)

    @app.post("/signup")
    @track_goal("signup")
    def signup() -> str:
        return "ok"

    client = visitor_client(app, fake_api, provider)
    assert client.post("/signup", headers=GOOGLEBOT).status_code == 200
    # Flowsery takes goals without a visitor: a bot without cookies must be skipped too.
    assert app.test_client().post("/signup", headers=GOOGLEBOT).status_code == 200

    assert names_after_sentinel(client, fake_api, 1) == ["sentinel"]


def test_bots_are_tracked_when_skip_bots_is_off(
    make_app: AppFactory, fake_api: FakeAPIServer
) -> None:
    app = make_app("flowsery", GOALTRACK_SKIP_BOTS="false")

    @app.post("/signup")
    @track_goal("signup")
    def signup() -> str:
        return "ok"

    visitor_client(app, fake_api, "flowsery").post("/signup", headers=GOOGLEBOT)

    [goal] = fake_api.wait_for_goals(1)
    assert goal["name"] == "signup"


# -- the decorator ----------------------------------------------------------------------------


def test_decorator_below_and_above_route_with_metadata_callable(
    make_app: AppFactory, fake_api: FakeAPIServer
) -> None:
    app = make_app()
    calls: list[tuple[str, int]] = []

    def plan_of(request: Any, response: Response) -> dict[str, str]:
        calls.append((request.path, response.status_code))
        return {"plan": request.form["plan"]}

    @app.post("/below")
    @track_goal("below", metadata=plan_of)
    def below() -> tuple[str, int]:
        return "created", 201

    @track_goal("above", metadata={"where": "above"})
    @app.post("/above")
    def above() -> str:
        return "ok"

    client = visitor_client(app, fake_api)
    assert client.post("/below", data={"plan": "team"}, headers=BROWSER).status_code == 201
    assert client.post("/above", headers=BROWSER).status_code == 200

    goals = fake_api.wait_for_goals(2)
    assert sorted((g["name"], str(g["metadata"])) for g in goals) == [
        ("above", "{'where': 'above'}"),
        ("below", "{'plan': 'team'}"),
    ]
    assert calls == [("/below", 201)]


def test_stacked_decorators_track_each_goal_once(
    make_app: AppFactory, fake_api: FakeAPIServer
) -> None:
    app = make_app()
    add_sentinel(app)

    @track_goal("outer_above")
    @app.post("/stacked")
    @track_goal("inner_a")
    @track_goal("inner_b")
    def stacked() -> str:
        return "ok"

    @track_goal("one")
    @track_goal("two")
    @app.post("/both-above")
    def both_above() -> str:
        return "ok"

    client = visitor_client(app, fake_api)
    client.post("/stacked", headers=BROWSER)
    client.post("/both-above", headers=BROWSER)

    names = names_after_sentinel(client, fake_api, 6)
    assert names == sorted(["inner_b", "inner_a", "outer_above", "two", "one", "sentinel"])


def test_decorator_tracks_nothing_for_errors_and_raising_views(
    make_app: AppFactory, fake_api: FakeAPIServer
) -> None:
    app = make_app()
    add_sentinel(app)

    class Handled(Exception):
        pass

    @app.errorhandler(Handled)
    def handled(exc: Handled) -> tuple[str, int]:
        return "handled anyway", 200

    @app.post("/bad-request")
    @track_goal("bad_request")
    def bad_request() -> tuple[str, int]:
        return "no", 400

    @app.post("/aborts")
    @track_goal("aborts")
    def aborts() -> str:
        abort(403)

    @app.post("/raises-below")
    @track_goal("raises_below")
    def raises_below() -> str:
        raise Handled

    @track_goal("raises_above")
    @app.post("/raises-above")
    def raises_above() -> str:
        raise Handled

    client = visitor_client(app, fake_api)
    assert client.post("/bad-request", headers=BROWSER).status_code == 400
    assert client.post("/aborts", headers=BROWSER).status_code == 403
    assert client.post("/raises-below", headers=BROWSER).status_code == 200
    assert client.post("/raises-above", headers=BROWSER).status_code == 200

    assert names_after_sentinel(client, fake_api, 1) == ["sentinel"]


def test_invalid_goal_at_request_time_is_logged_not_raised(
    make_app: AppFactory, fake_api: FakeAPIServer, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    add_sentinel(app)

    @app.post("/bad-metadata")
    @track_goal("signup", metadata=lambda request, response: {"Not Valid Key": "x"})
    def bad_metadata() -> str:
        return "ok"

    @app.post("/broken-callable")
    @track_goal("signup", metadata=lambda request, response: {"plan": request.form["missing"]})
    def broken_callable() -> str:
        return "ok"

    client = visitor_client(app, fake_api)
    with caplog.at_level(logging.ERROR, logger="goaltrack"):
        assert client.post("/bad-metadata", headers=BROWSER).status_code == 200
        assert client.post("/broken-callable", headers=BROWSER).status_code == 200

    assert names_after_sentinel(client, fake_api, 1) == ["sentinel"]
    messages = [record.getMessage() for record in caplog.records]
    assert any(
        "'signup' from a decorated view was not tracked (/bad-metadata)" in m for m in messages
    )
    assert any(
        "'signup' from a decorated view was not tracked (/broken-callable)" in m for m in messages
    )
    assert KEYS["datafast"] not in caplog.text


def test_decorator_checks_the_name_when_applied() -> None:
    with pytest.raises(goaltrack.InvalidGoal):
        track_goal("no spaces or CAPITALS allowed here!")
    with pytest.raises(TypeError, match='@track_goal\\("signup"\\)'):
        track_goal(lambda: "ok")  # type: ignore[call-overload]


def test_method_view_methods_and_decorators(make_app: AppFactory, fake_api: FakeAPIServer) -> None:
    app = make_app()

    class Subscribe(MethodView):
        def get(self) -> str:
            return "form"

        @track_goal("subscribe", metadata=lambda request, response: {"list": request.form["list"]})
        def post(self) -> str:
            return "subscribed"

    class Upgrade(MethodView):
        decorators = [track_goal("upgrade")]

        def post(self) -> str:
            return "upgraded"

    app.add_url_rule("/subscribe", view_func=Subscribe.as_view("subscribe"))
    app.add_url_rule("/upgrade", view_func=Upgrade.as_view("upgrade"))

    client = visitor_client(app, fake_api)
    client.get("/subscribe", headers=BROWSER)
    client.post("/subscribe", data={"list": "weekly"}, headers=BROWSER)
    client.post("/upgrade", headers=BROWSER)

    goals = fake_api.wait_for_goals(2)
    assert sorted((g["name"], str(g["metadata"])) for g in goals) == [
        ("subscribe", "{'list': 'weekly'}"),
        ("upgrade", "{}"),
    ]


def test_async_views(make_app: AppFactory, fake_api: FakeAPIServer) -> None:
    app = make_app()

    @app.post("/async-decorated")
    @track_goal("async_decorated")
    async def decorated() -> str:
        return "ok"

    @track_goal("async_above")
    @app.post("/async-above")
    async def above() -> str:
        return "ok"

    @app.post("/async-helper")
    async def helper() -> dict[str, object]:
        # The visitor bound by the middleware is visible in the view's event loop.
        assert current_visitor() is not None
        return {"tracked": track_goal(request, "async_helper", {"via": "helper"})}

    client = visitor_client(app, fake_api)
    assert client.post("/async-decorated", headers=BROWSER).status_code == 200
    assert client.post("/async-above", headers=BROWSER).status_code == 200
    assert client.post("/async-helper", headers=BROWSER).json == {"tracked": True}

    goals = fake_api.wait_for_goals(3)
    assert sorted(g["name"] for g in goals) == ["async_above", "async_decorated", "async_helper"]


# -- app factory and blueprints ---------------------------------------------------------------

shop = Blueprint("shop", __name__, url_prefix="/shop")


@shop.post("/buy/<item>")
@track_goal("purchase", metadata=lambda request, response: {"item": request.view_args["item"]})
def buy(item: str) -> str:
    return f"bought {item}"


@track_goal("wishlist")
@shop.post("/wish")
def wish() -> str:
    return "wished"


extension = GoalTrack()


def test_app_factory_with_blueprints_and_one_extension_for_two_apps(
    fake_api: FakeAPIServer,
) -> None:
    def create_app(provider: str) -> Flask:
        app = Flask(f"factory_{provider}")
        app.config.update(
            GOALTRACK_API_KEY=KEYS[provider],
            GOALTRACK_PROVIDER=provider,
            GOALTRACK_API_URL=fake_api.api_url(provider),
        )
        extension.init_app(app)
        app.register_blueprint(shop)
        return app

    datafast_app, flowsery_app = create_app("datafast"), create_app("flowsery")
    try:
        assert get_tracker(datafast_app) is not get_tracker(flowsery_app)
        visitor_client(datafast_app, fake_api).post("/shop/buy/book", headers=BROWSER)
        visitor_client(flowsery_app, fake_api, "flowsery").post("/shop/wish", headers=BROWSER)

        goals = fake_api.wait_for_goals(2)
        assert sorted((g["provider"], g["name"], str(g["metadata"])) for g in goals) == [
            ("datafast", "purchase", "{'item': 'book'}"),
            ("flowsery", "wishlist", "{}"),
        ]
        with datafast_app.app_context():
            assert extension.tracker is get_tracker(datafast_app)
    finally:
        get_tracker(datafast_app).close(5)
        get_tracker(flowsery_app).close(5)


# -- signals ----------------------------------------------------------------------------------


def test_goal_signals_have_the_apps_tracker_as_sender(
    make_app: AppFactory, fake_api: FakeAPIServer
) -> None:
    from goaltrack.flask import goal_delivered, goal_failed

    app = make_app()
    other_app = make_app("flowsery")
    tracker, other_tracker = get_tracker(app), get_tracker(other_app)
    tracked: list[tuple[object, str]] = []
    delivered: list[tuple[object, str, str | None, bool]] = []
    failed: list[tuple[object, str, str]] = []
    settled = threading.Semaphore(0)

    def on_tracked(sender: goaltrack.GoalTracker, name: str, **kwargs: object) -> None:
        tracked.append((sender, name))

    def on_delivered(
        sender: goaltrack.GoalTracker, goal: goaltrack.Goal, result: goaltrack.DeliveryResult
    ) -> None:
        delivered.append(
            (
                sender,
                goal.name,
                result.event_id,
                threading.current_thread() is threading.main_thread(),
            )
        )
        settled.release()

    def on_failed(
        sender: goaltrack.GoalTracker, goal: goaltrack.Goal, reason: str, **kwargs: object
    ) -> None:
        failed.append((sender, goal.name, reason))
        settled.release()

    @app.post("/signup")
    @track_goal("signup")
    def signup() -> str:
        return "ok"

    @app.post("/unknown-visitor")
    def unknown_visitor() -> str:
        # A visitor without a pageview: DataFast answers 404, a final failure.
        track_goal(request, "orphan")
        return "ok"

    with (
        goal_tracked.connected_to(on_tracked, tracker),
        goal_delivered.connected_to(on_delivered, tracker),
        goal_failed.connected_to(on_failed, tracker),
        goal_delivered.connected_to(on_delivered, other_tracker),
    ):
        visitor_client(app, fake_api).post("/signup", headers=BROWSER)
        stranger = app.test_client()
        stranger.set_cookie("datafast_visitor_id", "0b7a4c36-3f7e-4c1e-9a4e-5d1c8a3b2f10")
        stranger.post("/unknown-visitor", headers=BROWSER)
        assert settled.acquire(timeout=10)
        assert settled.acquire(timeout=10)

    assert tracked == [(tracker, "signup"), (tracker, "orphan")]
    [(sender, name, event_id, in_main_thread)] = delivered
    assert (sender, name, in_main_thread) == (tracker, "signup", False)
    assert event_id
    [(sender, name, reason)] = failed
    assert (sender, name) == (tracker, "orphan")
    assert "404" in reason or "pageview" in reason.lower()


def test_connect_goal_turns_a_signal_into_a_goal(
    make_app: AppFactory, fake_api: FakeAPIServer, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    user_logged_in = Namespace().signal("user-logged-in")
    receiver = connect_goal(
        user_logged_in, "login", metadata=lambda sender, user: {"method": user["method"]}
    )
    try:

        @app.post("/login")
        def login() -> str:
            user_logged_in.send(app, user={"method": "password"})
            return "welcome"

        client = visitor_client(app, fake_api)
        assert client.post("/login", headers=BROWSER).status_code == 200
        [goal] = fake_api.wait_for_goals(1)
        assert (goal["name"], goal["metadata"]) == ("login", {"method": "password"})
        assert goal["visitor_id"] == client.get_cookie("datafast_visitor_id").value  # type: ignore[union-attr]

        # Outside a request, from a job: the sender app's tracker and the bound visitor.
        visitor_id = fake_api.add_pageview("datafast")
        binding = bind_visitor(goaltrack.Visitor(visitor_id, None))
        try:
            user_logged_in.send(app, user={"method": "sso"})
        finally:
            unbind_visitor(binding)
        goals = fake_api.wait_for_goals(2)
        assert (goals[1]["visitor_id"], goals[1]["metadata"]) == (visitor_id, {"method": "sso"})

        # No app to track for: logged, never raised into the sender.
        with caplog.at_level(logging.WARNING, logger="goaltrack"):
            user_logged_in.send(object(), user={"method": "none"})
        assert "outside any app with goaltrack" in caplog.text
    finally:
        user_logged_in.disconnect(receiver)


# -- serverless -------------------------------------------------------------------------------


def test_flush_at_request_end_delivers_before_the_response_is_done(
    make_app: AppFactory, fake_api: FakeAPIServer
) -> None:
    app = make_app(GOALTRACK_FLUSH_AT_REQUEST_END=True)

    @app.post("/signup")
    @track_goal("signup")
    def signup() -> str:
        track_goal(request, "second")
        return "ok"

    response = visitor_client(app, fake_api).post("/signup", headers=BROWSER)
    response.close()  # what the WSGI server does once the body went out

    # No waiting: closing the response flushed the tracker.
    assert sorted(goal["name"] for goal in fake_api.goals) == ["second", "signup"]
