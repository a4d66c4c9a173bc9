"""GoalTrackMiddleware over real HTTP: uvicorn in a thread, httpx as the client, the fake API.

Also the parts best driven in-process (lifespan messages, flush at request end, OpenAPI schema).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from websockets.sync.client import connect as websocket_connect

import goaltrack
import goaltrack.tracker as tracker_module
from goaltrack import GoalTracker, InvalidGoal
from goaltrack.asgi import (
    GoalTrackerDep,
    GoalTrackMiddleware,
    RequestGoals,
    current_goals,
    goal_delivered,
    goal_failed,
    track_goal,
)
from goaltrack.context import current_visitor
from goaltrack.testing.server import FakeAPIServer
from tests.support.keys import DATAFAST_KEY, FLOWSERY_KEY
from tests.support.threaded import serve_asgi as serve

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def headers(cookie: str | None = None, user_agent: str = BROWSER) -> dict[str, str]:
    result = {"User-Agent": user_agent}
    if cookie is not None:
        result["Cookie"] = cookie
    return result


# ---- the apps under test -----------------------------------------------------------------------


def plan_metadata(result: Any, plan: str) -> dict[str, str]:
    return {"plan": plan}


def build_fastapi_app(tracker: GoalTracker) -> FastAPI:
    app = FastAPI()
    app.add_middleware(GoalTrackMiddleware, tracker=tracker)

    @app.get("/visitor")
    async def visitor(request: Request) -> dict[str, Any]:
        bound = current_visitor()
        return {
            "state": request.state.goaltrack_visitor,
            "contextvar": list(bound) if bound else None,
        }

    @app.post("/track")
    async def track(request: Request) -> dict[str, bool]:
        return {"sent": track_goal(request, "signup", {"plan": "pro"})}

    @app.post("/sentinel")
    async def sentinel(request: Request) -> dict[str, bool]:
        return {"sent": track_goal(request, "sentinel")}

    @app.post("/async-signup")
    @track_goal("async_signup", metadata=plan_metadata)
    async def async_signup(plan: str) -> dict[str, str]:
        return {"plan": plan}

    @app.post("/sync-signup")
    @track_goal("sync_signup", metadata=plan_metadata)
    def sync_signup(plan: str) -> dict[str, str]:
        return {"plan": plan, "thread": threading.current_thread().name}

    @app.post("/created", status_code=201)
    @track_goal("created")
    async def created() -> dict[str, str]:
        return {}

    @app.post("/refused")
    @track_goal("refused_http_exception")
    async def refused() -> None:
        raise HTTPException(status_code=403)

    @app.post("/unprocessable")
    @track_goal("refused_response")
    async def unprocessable() -> JSONResponse:
        return JSONResponse({"error": "no"}, status_code=422)

    @app.post("/conflict")
    @track_goal("refused_status_param")
    async def conflict(response: Response) -> dict[str, str]:
        response.status_code = 409
        return {}

    @app.post("/crash")
    @track_goal("refused_crash")
    def crash() -> None:
        raise RuntimeError("boom")

    @app.post("/bad-metadata")
    @track_goal("bad_metadata", metadata=lambda result: {"Not A Key": 1})
    async def bad_metadata() -> dict[str, str]:
        return {"ok": "yes"}

    @app.post("/dependency")
    async def dependency(goals: GoalTrackerDep) -> dict[str, Any]:
        return {
            "sent": goals.track("dependency", {"via": "depends"}),
            "same": goals is current_goals(),
        }

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for index in range(3):
                yield f"chunk-{index};".encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.websocket("/ws")
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        text = await websocket.receive_text()
        seen = "goaltrack" in websocket.scope or current_goals() is not None
        await websocket.send_text(f"{text}|middleware-saw-it={seen}")
        await websocket.close()

    return app


@pytest.fixture(scope="module")
def datafast_tracker(fake_api_server: FakeAPIServer) -> Iterator[GoalTracker]:
    with GoalTracker(
        DATAFAST_KEY, provider="datafast", api_url=fake_api_server.api_url("datafast")
    ) as tracker:
        yield tracker


@pytest.fixture(scope="module")
def fastapi_url(datafast_tracker: GoalTracker) -> Iterator[str]:
    with serve(build_fastapi_app(datafast_tracker)) as url:
        yield url


@pytest.fixture
def client(fastapi_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fastapi_url, timeout=10) as client:
        yield client


def visitor_cookie(fake_api: FakeAPIServer) -> tuple[str, str]:
    visitor_id = fake_api.add_pageview("datafast")
    return visitor_id, f"theme=dark; datafast_visitor_id={visitor_id}; lang=en"


def send_sentinel(client: httpx.Client, fake_api: FakeAPIServer, cookie: str) -> list[str]:
    """Track a last goal and wait for it: every goal sent before it has arrived by then."""
    assert client.post("/sentinel", headers=headers(cookie)).json() == {"sent": True}
    deadline = time.monotonic() + 10
    while True:
        names = [goal["name"] for goal in fake_api.goals]
        if "sentinel" in names:
            return names
        assert time.monotonic() < deadline, f"sentinel goal did not arrive; got {names}"
        with contextlib.suppress(TimeoutError):  # looked at again until the deadline
            fake_api.wait_for_goals(len(names) + 1, timeout=0.2)


# ---- cookies -----------------------------------------------------------------------------------


def test_visitor_from_cookie_in_state_contextvar_and_goal(
    client: httpx.Client, fake_api: FakeAPIServer
) -> None:
    visitor_id, cookie = visitor_cookie(fake_api)
    seen = client.get("/visitor", headers=headers(cookie)).json()
    assert seen == {"state": [visitor_id, None], "contextvar": [visitor_id, None]}

    assert client.post("/track", headers=headers(cookie)).json() == {"sent": True}
    [goal] = fake_api.wait_for_goals(1, timeout=10)
    assert (goal["name"], goal["visitor_id"], goal["metadata"]) == (
        "signup",
        visitor_id,
        {"plan": "pro"},
    )


@pytest.mark.parametrize(
    "cookie",
    [
        None,
        "theme=dark",
        "datafast_visitor_id=not-a-uuid",
        "datafast_visitor_id=",
        'datafast_visitor_id="' + "a" * 300 + '"',
        "datafast_visitor_id=11111111-2222-3333-4444-55555555555%00",
    ],
    ids=["absent", "other-cookies", "malformed", "empty", "overlong", "control-char"],
)
def test_no_or_malformed_cookie_sends_nothing(
    client: httpx.Client, fake_api: FakeAPIServer, cookie: str | None
) -> None:
    assert client.get("/visitor", headers=headers(cookie)).json() == {
        "state": None,
        "contextvar": None,
    }
    assert client.post("/track", headers=headers(cookie)).json() == {"sent": False}
    _, good_cookie = visitor_cookie(fake_api)
    assert send_sentinel(client, fake_api, good_cookie) == ["sentinel"]


def test_bots_are_skipped(client: httpx.Client, fake_api: FakeAPIServer) -> None:
    _, cookie = visitor_cookie(fake_api)
    bot_headers = headers(cookie, user_agent=GOOGLEBOT)
    assert client.get("/visitor", headers=bot_headers).json()["state"] is None
    assert client.post("/track", headers=bot_headers).json() == {"sent": False}
    assert client.post("/async-signup", params={"plan": "x"}, headers=bot_headers).is_success
    assert send_sentinel(client, fake_api, cookie) == ["sentinel"]


def test_flowsery_visitor_and_session_ids(fake_api: FakeAPIServer) -> None:
    tracker = GoalTracker(FLOWSERY_KEY, provider="flowsery", api_url=fake_api.api_url("flowsery"))
    app = Starlette(
        routes=[
            Route(
                "/track",
                lambda request: PlainTextResponse(str(track_goal(request, "upgrade"))),
                methods=["POST"],
            )
        ],
        middleware=[Middleware(GoalTrackMiddleware, tracker=tracker)],
    )
    with tracker, serve(app) as url, httpx.Client(base_url=url) as client:
        full = client.post("/track", headers=headers("_fs_vid=vid_ABC-123; _fs_sid=sid.456"))
        session_only = client.post("/track", headers=headers("_fs_sid=sid_only"))
        assert (full.text, session_only.text) == ("True", "True")
        goals = fake_api.wait_for_goals(2, timeout=10)
    assert sorted((g["visitor_id"] or "", g["session_id"]) for g in goals) == [
        ("", "sid_only"),
        ("vid_ABC-123", "sid.456"),
    ]


# ---- the decorator and the dependency ----------------------------------------------------------


def test_decorator_on_async_and_sync_endpoints(
    client: httpx.Client, fake_api: FakeAPIServer
) -> None:
    visitor_id, cookie = visitor_cookie(fake_api)
    assert client.post("/async-signup", params={"plan": "pro"}, headers=headers(cookie)).is_success
    sync = client.post("/sync-signup", params={"plan": "team"}, headers=headers(cookie))
    # FastAPI still runs the decorated sync endpoint in its thread pool.
    assert sync.json()["thread"] != "MainThread"
    goals = fake_api.wait_for_goals(2, timeout=10)
    assert sorted((g["name"], g["metadata"]["plan"], g["visitor_id"]) for g in goals) == [
        ("async_signup", "pro", visitor_id),
        ("sync_signup", "team", visitor_id),
    ]


def test_decorator_tracks_route_status_code(client: httpx.Client, fake_api: FakeAPIServer) -> None:
    _, cookie = visitor_cookie(fake_api)
    assert client.post("/created", headers=headers(cookie)).status_code == 201
    [goal] = fake_api.wait_for_goals(1, timeout=10)
    assert goal["name"] == "created"


def test_decorator_skips_errors_and_exceptions(
    client: httpx.Client, fake_api: FakeAPIServer
) -> None:
    _, cookie = visitor_cookie(fake_api)
    # Each on a connection of its own: uvicorn closes the one whose app raised, after its 500
    # (which does not say so): a request sent on it before the close lands is reset.
    statuses = [
        client.post(path, headers={**headers(cookie), "Connection": "close"}).status_code
        for path in ("/refused", "/unprocessable", "/conflict", "/crash")
    ]
    assert statuses == [403, 422, 409, 500]
    assert send_sentinel(client, fake_api, cookie) == ["sentinel"]


def test_invalid_goal_from_decorator_is_logged_not_raised(
    client: httpx.Client, fake_api: FakeAPIServer, caplog: pytest.LogCaptureFixture
) -> None:
    _, cookie = visitor_cookie(fake_api)
    with caplog.at_level(logging.ERROR, logger="goaltrack"):
        response = client.post("/bad-metadata", headers=headers(cookie))
    assert response.json() == {"ok": "yes"}
    assert any("bad_metadata" in record.getMessage() for record in caplog.records)
    assert send_sentinel(client, fake_api, cookie) == ["sentinel"]


def test_dependency_hands_a_tracker_bound_to_the_visitor(
    client: httpx.Client, fake_api: FakeAPIServer
) -> None:
    visitor_id, cookie = visitor_cookie(fake_api)
    assert client.post("/dependency", headers=headers(cookie)).json() == {
        "sent": True,
        "same": True,
    }
    [goal] = fake_api.wait_for_goals(1, timeout=10)
    assert (goal["name"], goal["visitor_id"], goal["metadata"]) == (
        "dependency",
        visitor_id,
        {"via": "depends"},
    )


def test_decorator_keeps_fastapi_signature_and_openapi_schema() -> None:
    def build(decorate: bool) -> FastAPI:
        app = FastAPI()

        def endpoint(item_id: int, plan: str = "free", coupon: str | None = None) -> dict[str, int]:
            return {"item_id": item_id}

        async def async_endpoint(order: int) -> dict[str, int]:
            return {"order": order}

        if decorate:
            endpoint = track_goal("signup")(endpoint)
            async_endpoint = track_goal("purchase")(async_endpoint)
        app.post("/items/{item_id}", status_code=201)(endpoint)
        app.post("/orders")(async_endpoint)
        return app

    assert build(decorate=True).openapi() == build(decorate=False).openapi()
    assert build(decorate=True).openapi()["paths"]["/items/{item_id}"]["post"]["parameters"]


def test_decorator_shows_the_endpoints_annotations_evaluated() -> None:
    # This module's annotations are strings (from __future__ import annotations). A FastAPI that
    # resolves them in the wrapper's globals (the releases that go with Starlette 0.37) would
    # take an unresolved ``Response`` for a required body field, and answer 422.
    async def endpoint(response: Response, status: int = 200) -> dict[str, bool]:
        return {"done": True}

    parameters = inspect.signature(track_goal("purchase")(endpoint)).parameters
    assert parameters["response"].annotation is Response
    assert parameters["status"].annotation is int


def test_middleware_takes_the_app_by_keyword_too() -> None:
    # Starlette before 0.38 builds each Middleware(cls, **options) as cls(app=app, **options).
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError("not called")

    tracker = GoalTracker(DATAFAST_KEY, mode="disabled")
    assert GoalTrackMiddleware(app=app, tracker=tracker).app is app


def test_decorator_checks_the_name_at_decoration_time() -> None:
    with pytest.raises(InvalidGoal):
        track_goal("Not a valid name!")


# ---- pass-through ------------------------------------------------------------------------------


def test_streaming_response_is_untouched(client: httpx.Client) -> None:
    with client.stream("GET", "/stream", headers=headers()) as response:
        chunks = list(response.iter_raw())
        assert response.headers["transfer-encoding"] == "chunked"
    assert b"".join(chunks) == b"chunk-0;chunk-1;chunk-2;"


def test_websocket_passes_through_untouched(fastapi_url: str) -> None:
    ws_url = fastapi_url.replace("http://", "ws://") + "/ws"
    with websocket_connect(ws_url, user_agent_header=BROWSER, open_timeout=10) as websocket:
        websocket.send("hello")
        assert websocket.recv(timeout=10) == "hello|middleware-saw-it=False"


def test_applied_twice_tracks_once(fake_api: FakeAPIServer) -> None:
    outer = GoalTracker(DATAFAST_KEY, api_url=fake_api.api_url("datafast"))
    inner = GoalTracker(DATAFAST_KEY, api_url=fake_api.api_url("datafast"))

    @track_goal("twice")
    async def endpoint(request: Request) -> PlainTextResponse:
        goals = request.scope["goaltrack"]
        assert isinstance(goals, RequestGoals)
        return PlainTextResponse("outer" if goals.tracker is outer else "inner")

    app = Starlette(
        routes=[Route("/", endpoint, methods=["POST"])],
        middleware=[
            Middleware(GoalTrackMiddleware, tracker=outer),
            Middleware(GoalTrackMiddleware, tracker=inner),
        ],
    )
    _, cookie = visitor_cookie(fake_api)
    with outer, inner, serve(app) as url, httpx.Client(base_url=url) as client:
        assert client.post("/", headers=headers(cookie)).text == "outer"
        assert outer.flush(10)
        assert inner.flush(10)
    assert [g["name"] for g in fake_api.goals] == ["twice"]
    assert (outer.stats.delivered, inner.stats.queued) == (1, 0)


# ---- hooks and signals -------------------------------------------------------------------------


def test_delivery_and_failure_hooks_and_signals(fake_api: FakeAPIServer) -> None:
    events: list[tuple[str, str]] = []
    senders: list[object] = []
    settled = threading.Semaphore(0)

    def hook(kind: str) -> Any:
        def on_settled(goal: goaltrack.Goal, detail: Any) -> None:
            events.append((kind, goal.name))
            settled.release()

        return on_settled

    def receiver(kind: str) -> Any:
        def on_signal(sender: object, goal: goaltrack.Goal, **kwargs: Any) -> None:
            # Connected without a sender, it hears every tracker: an earlier test's may still be
            # settling a goal of its own.
            if goal.name not in ("known_visitor", "unknown_visitor"):
                return
            senders.append(sender)
            events.append((kind, goal.name))
            settled.release()

        return on_signal

    delivered_receiver, failed_receiver = receiver("signal-delivered"), receiver("signal-failed")
    goal_delivered.connect(delivered_receiver)
    goal_failed.connect(failed_receiver)
    middleware = GoalTrackMiddleware(
        PlainTextResponse("ok"),
        api_key=DATAFAST_KEY,
        api_url=fake_api.api_url("datafast"),
        on_delivery=hook("hook-delivered"),
        on_failure=hook("hook-failed"),
    )
    known = fake_api.add_pageview("datafast")
    unknown = str(uuid.uuid4())  # no pageview: the fake API answers 404, a final failure
    try:
        for visitor_id, name in ((known, "known_visitor"), (unknown, "unknown_visitor")):
            scope = {
                "type": "http",
                "headers": [(b"cookie", f"datafast_visitor_id={visitor_id}".encode())],
            }
            asyncio.run(middleware(scope, receive_nothing, discard))
            assert track_goal(scope, name) is True
        for _ in range(4):
            assert settled.acquire(timeout=10)
    finally:
        goal_delivered.disconnect(delivered_receiver)
        goal_failed.disconnect(failed_receiver)
        middleware.tracker.close(5)
    assert sorted(events) == [
        ("hook-delivered", "known_visitor"),
        ("hook-failed", "unknown_visitor"),
        ("signal-delivered", "known_visitor"),
        ("signal-failed", "unknown_visitor"),
    ]
    assert senders == [middleware.tracker, middleware.tracker]  # the tracker, in every adapter


# ---- in-process: raw scopes, lifespan, flush at request end ------------------------------------


async def receive_nothing() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def discard(message: Message) -> None:
    return None


async def empty_app(scope: Scope, receive: Receive, send: Send) -> None:
    return None


def test_track_goal_with_a_raw_scope_raises_invalid_goal(fake_api: FakeAPIServer) -> None:
    captured: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        captured.append(scope)

    tracker = GoalTracker(DATAFAST_KEY, api_url=fake_api.api_url("datafast"), mode="disabled")
    scope: dict[str, Any] = {"type": "http", "headers": []}
    asyncio.run(GoalTrackMiddleware(app, tracker=tracker)(scope, receive_nothing, discard))
    assert captured[0]["state"] == {"goaltrack_visitor": None}
    with pytest.raises(InvalidGoal):
        track_goal(scope, "Not valid!")
    assert track_goal(scope, "fine") is False  # no visitor cookie


def test_track_goal_without_the_middleware_says_so() -> None:
    with pytest.raises(RuntimeError, match="GoalTrackMiddleware"):
        track_goal({"type": "http", "headers": []}, "signup")


def test_conflicting_tracker_arguments_are_refused() -> None:
    with pytest.raises(TypeError, match="either tracker"):
        GoalTrackMiddleware(empty_app, tracker=GoalTracker(mode="disabled"), api_key=DATAFAST_KEY)


def test_without_arguments_the_process_wide_tracker_is_used(
    fake_api: FakeAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracker_module, "_process_tracker", None)
    configured = goaltrack.configure(
        DATAFAST_KEY, provider="datafast", api_url=fake_api.api_url("datafast")
    )
    try:
        assert GoalTrackMiddleware(empty_app).tracker is configured
    finally:
        configured.close(1)


def test_flush_at_request_end(fake_api: FakeAPIServer) -> None:
    fake_api.set_faults(latency_ms=300)
    visitor_id = fake_api.add_pageview("datafast")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        track_goal(scope, "flushed")

    middleware = GoalTrackMiddleware(
        app, api_key=DATAFAST_KEY, api_url=fake_api.api_url("datafast"), flush_at_request_end=True
    )
    scope = {"type": "http", "headers": [(b"cookie", f"datafast_visitor_id={visitor_id}".encode())]}
    try:
        asyncio.run(middleware(scope, receive_nothing, discard))
        # No waiting here: the middleware returned only once the goal was delivered.
        assert [g["name"] for g in fake_api.goals] == ["flushed"]
    finally:
        middleware.tracker.close(1)


async def run_lifespan(app: Any) -> list[str]:
    """Drive startup then shutdown through *app*; return the message types it sent."""
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    sent: list[str] = []

    async def send(message: Any) -> None:
        sent.append(message["type"])

    for kind in ("lifespan.startup", "lifespan.shutdown"):
        inbox.put_nowait({"type": kind})
    await asyncio.wait_for(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send), 10
    )
    return sent


def test_lifespan_flushes_after_the_apps_own_shutdown_handler(fake_api: FakeAPIServer) -> None:
    fake_api.set_faults(latency_ms=300)
    visitor_id = fake_api.add_pageview("datafast")
    tracker = GoalTracker(DATAFAST_KEY, api_url=fake_api.api_url("datafast"))
    order: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        order.append("app startup")
        yield
        tracker.track("tracked_at_shutdown", visitor_id=visitor_id)
        order.append("app shutdown")

    app = Starlette(
        lifespan=lifespan, middleware=[Middleware(GoalTrackMiddleware, tracker=tracker)]
    )
    with tracker:
        sent = asyncio.run(run_lifespan(app))
        # The goal arrived before shutdown completed: nothing to wait for.
        assert [g["name"] for g in fake_api.goals] == ["tracked_at_shutdown"]
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert order == ["app startup", "app shutdown"]


def test_lifespan_is_served_for_apps_that_refuse_it(fake_api: FakeAPIServer) -> None:
    fake_api.set_faults(latency_ms=300)
    visitor_id = fake_api.add_pageview("datafast")
    tracker = GoalTracker(DATAFAST_KEY, api_url=fake_api.api_url("datafast"))

    async def http_only_app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # as Django's ASGIHandler does
            raise ValueError("only http")

    with tracker:
        tracker.track("before_shutdown", visitor_id=visitor_id)
        sent = asyncio.run(run_lifespan(GoalTrackMiddleware(http_only_app, tracker=tracker)))
        assert [g["name"] for g in fake_api.goals] == ["before_shutdown"]
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
