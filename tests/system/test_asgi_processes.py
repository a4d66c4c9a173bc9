"""The ASGI adapter in real uvicorn processes: the example projects, Django's ASGI handler, and
the flush at shutdown when the server gets SIGTERM / SIGINT.

The factories ``lifespan_app`` and ``django_app`` below are what the subprocesses serve
(``uvicorn --factory tests.system.test_asgi_processes:...``); importing this module configures
nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from goaltrack.asgi import GoalTrackMiddleware, track_goal
from goaltrack.testing.server import FakeAPIServer
from tests.support.keys import DATAFAST_KEY, FLOWSERY_KEY
from tests.support.paths import EXAMPLES, REPO
from tests.support.ports import free_port

ROOT = REPO
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
START_DEADLINE_S = 30.0


class Server:
    """A uvicorn subprocess and everything it printed so far."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url
        self.lines: list[str] = []
        self.started = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if "Application startup complete" in line:
                self.started.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_started(self) -> None:
        deadline = time.monotonic() + START_DEADLINE_S
        while not self.started.wait(0.1):
            assert self.process.poll() is None, f"uvicorn exited early:\n{self.output}"
            assert time.monotonic() < deadline, f"uvicorn did not start:\n{self.output}"

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send *signum* and return the exit status; fail if it takes longer than *timeout*."""
        self.process.send_signal(signum)
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            pytest.fail(f"uvicorn did not exit within {timeout} s of {signum!r}:\n{self.output}")
        self._reader.join(5)
        return status


@contextmanager
def uvicorn_process(
    target: str, *, env: dict[str, str] | None = None, app_dir: Path = ROOT, factory: bool = False
) -> Iterator[Server]:
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GOALTRACK_", "DJANGO_SETTINGS_MODULE"))
    }
    environ.update(env or {})
    environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), environ.get("PYTHONPATH", "")])
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(port)]
    command += ["--app-dir", str(app_dir), "--lifespan", "on", "--log-level", "info"]
    if factory:
        command.append("--factory")
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=environ,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = Server(process, f"http://127.0.0.1:{port}")
    try:
        server.wait_started()
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)


def tracker_env(fake_api: FakeAPIServer, provider: str, key: str) -> dict[str, str]:
    return {
        "GOALTRACK_API_KEY": key,
        "GOALTRACK_PROVIDER": provider,
        "GOALTRACK_API_URL": fake_api.api_url(provider),
    }


def goal_names(goals: list[Any]) -> list[str]:
    return sorted(goal["name"] for goal in goals)


# ---- served by the subprocesses ----------------------------------------------------------------


def lifespan_app() -> Any:
    """A Starlette app with its own lifespan that tracks a goal on shutdown; no exit flush."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    import goaltrack

    # Only the lifespan flush can deliver: the flush at interpreter exit is off.
    tracker = goaltrack.GoalTracker.from_env(flush_at_exit=False, shutdown_timeout=10)
    last_visitor: list[goaltrack.Visitor | None] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        visitor = last_visitor[-1] if last_visitor else None
        tracker.track_visitor(visitor, "app_shutdown")

    async def purchase(request: Request) -> PlainTextResponse:
        last_visitor.append(request.state.goaltrack_visitor)
        return PlainTextResponse(str(track_goal(request, "purchase")))

    return Starlette(
        routes=[Route("/purchase", purchase, methods=["POST"])],
        lifespan=lifespan,
        middleware=[Middleware(GoalTrackMiddleware, tracker=tracker)],
    )


@track_goal("django_async_signup")
async def django_async_view(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"ok": True})


@track_goal("django_sync_signup")
def django_sync_view(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"ok": True})


async def django_direct_view(request: HttpRequest) -> HttpResponse:
    # Django's ASGIRequest carries the ASGI scope: track_goal takes it like a Starlette Request.
    visitor = request.scope["state"]["goaltrack_visitor"]  # type: ignore[attr-defined]
    queued = track_goal(request, "django_direct", {"via": "scope"})
    return JsonResponse({"queued": queued, "visitor": visitor})


urlpatterns = [
    path("async/", django_async_view),
    path("sync/", django_sync_view),
    path("direct/", django_direct_view),
]


def django_app() -> Any:
    """Django's own ASGI handler with a standalone configuration, wrapped in the middleware."""
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="asgi-test-not-secret",
        ALLOWED_HOSTS=["127.0.0.1"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        MIDDLEWARE=[],
    )
    from django.core.asgi import get_asgi_application

    return GoalTrackMiddleware(get_asgi_application())


# ---- tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_goals_tracked_just_before_shutdown_arrive(fake_api: FakeAPIServer, signum: int) -> None:
    fake_api.set_faults(latency_ms=400)  # still in flight when the signal arrives
    visitor_id = fake_api.add_pageview("datafast")
    cookie = f"datafast_visitor_id={visitor_id}"
    env = tracker_env(fake_api, "datafast", DATAFAST_KEY)
    with uvicorn_process(
        "tests.system.test_asgi_processes:lifespan_app", env=env, factory=True
    ) as server:
        answer = httpx.post(
            f"{server.url}/purchase", headers={"Cookie": cookie, "User-Agent": BROWSER}
        )
        assert answer.text == "True"
        started = time.monotonic()
        # uvicorn re-raises the signal once it has shut down gracefully.
        assert server.stop(signum) in (0, -signum)
        elapsed = time.monotonic() - started
    assert "Application shutdown complete" in server.output
    # No waiting: the server flushed before it exited.
    assert goal_names(fake_api.goals) == ["app_shutdown", "purchase"]
    assert elapsed < 10
    assert DATAFAST_KEY not in server.output


def test_django_asgi_handler(fake_api: FakeAPIServer) -> None:
    visitor_id = fake_api.add_pageview("datafast")
    headers = {"Cookie": f"datafast_visitor_id={visitor_id}", "User-Agent": BROWSER}
    env = tracker_env(fake_api, "datafast", DATAFAST_KEY)
    with (
        uvicorn_process(
            "tests.system.test_asgi_processes:django_app", env=env, factory=True
        ) as server,
        httpx.Client(base_url=server.url, headers=headers, timeout=10) as client,
    ):
        assert client.post("/async/").json() == {"ok": True}
        assert client.post("/sync/").json() == {"ok": True}
        assert client.post("/direct/").json() == {"queued": True, "visitor": [visitor_id, None]}
        goals = fake_api.wait_for_goals(3, timeout=10)
        assert server.stop() in (0, -signal.SIGTERM)
    assert goal_names(goals) == ["django_async_signup", "django_direct", "django_sync_signup"]
    assert {goal["visitor_id"] for goal in goals} == {visitor_id}


def test_fastapi_example_against_the_configured_api(fake_api: FakeAPIServer) -> None:
    visitor_id = fake_api.add_pageview("datafast")
    headers = {"Cookie": f"datafast_visitor_id={visitor_id}", "User-Agent": BROWSER}
    env = tracker_env(fake_api, "datafast", DATAFAST_KEY)
    with (
        uvicorn_process("app:app", env=env, app_dir=EXAMPLES / "fastapi_app") as server,
        httpx.Client(base_url=server.url, headers=headers, timeout=10) as client,
    ):
        page = client.get("/")
        assert page.status_code == 200
        assert visitor_id in page.text
        assert client.get("/demo").json() == {"fake_api_url": None}
        signup = client.post("/api/signup", json={"email": "a@example.com", "plan": "pro"})
        assert signup.status_code == 201
        refused = client.post("/api/signup", json={"email": "not-an-email"})
        assert refused.status_code == 422
        checkout = client.post("/api/checkout", json={"plan": "team", "seats": 2})
        assert checkout.json() == {"total": 58, "goal_queued": True}
        goals = fake_api.wait_for_goals(2, timeout=10)
        assert server.stop() in (0, -signal.SIGTERM)
    assert goal_names(goals) == ["checkout", "signup"]
    by_name = {goal["name"]: goal for goal in goals}
    assert by_name["signup"]["metadata"] == {"plan": "pro"}
    assert by_name["checkout"]["metadata"] == {"plan": "team", "seats": "2", "total": "58"}


def test_fastapi_example_demo_mode_uses_the_bundled_fake_api() -> None:
    with (
        uvicorn_process("app:app", app_dir=EXAMPLES / "fastapi_app") as server,
        httpx.Client(base_url=server.url, headers={"User-Agent": BROWSER}, timeout=10) as client,
    ):
        fake_url = client.get("/demo").json()["fake_api_url"]
        assert fake_url.startswith("http://127.0.0.1:")
        assert "No visitor cookie yet" in client.get("/").text  # sets the visitor cookie
        assert "Your visitor id" in client.get("/").text
        assert client.post("/api/signup", json={"email": "a@example.com"}).status_code == 201
        deadline = time.monotonic() + 10
        while not (goals := httpx.get(f"{fake_url}/_fake/goals").json()):
            assert time.monotonic() < deadline, "the demo's goal did not reach its fake API"
            time.sleep(0.05)  # polling the other process's API: no event to wait on
        assert server.stop() in (0, -signal.SIGTERM)
    assert [(goal["name"], goal["metadata"]) for goal in goals] == [("signup", {"plan": "free"})]


def test_starlette_example_with_the_process_wide_tracker(fake_api: FakeAPIServer) -> None:
    headers = {"Cookie": "_fs_vid=visitor_1; _fs_sid=session_1", "User-Agent": BROWSER}
    env = tracker_env(fake_api, "flowsery", FLOWSERY_KEY)
    with (
        uvicorn_process("app:app", env=env, app_dir=EXAMPLES / "starlette_app") as server,
        httpx.Client(base_url=server.url, headers=headers, timeout=10) as client,
    ):
        assert client.post("/signup", params={"plan": "pro"}).json() == {"goal_queued": True}
        assert client.post("/newsletter").json() == {"subscribed": True}
        goals = fake_api.wait_for_goals(2, timeout=10)
        assert server.stop() in (0, -signal.SIGTERM)
    assert goal_names(goals) == ["newsletter", "signup"]
    assert {(goal["visitor_id"], goal["session_id"]) for goal in goals} == {
        ("visitor_1", "session_1")
    }


NO_FRAMEWORK_SCRIPT = """
import asyncio, sys
for name in ("starlette", "fastapi"):
    sys.modules[name] = None  # as if not installed
from goaltrack import GoalTracker
from goaltrack.asgi import GoalTrackMiddleware, track_goal

seen = []

async def app(scope, receive, send):
    seen.append(track_goal(scope, "signup"))

async def main():
    middleware = GoalTrackMiddleware(app, tracker=GoalTracker(mode="disabled"))
    await middleware({"type": "http", "headers": []}, None, None)

asyncio.run(main())
assert seen == [False], seen
try:
    from goaltrack.asgi import GoalTrackerDep
except ImportError as exc:
    print("ImportError:", exc)
"""


def test_the_middleware_needs_no_framework() -> None:
    result = subprocess.run(
        [sys.executable, "-c", NO_FRAMEWORK_SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "GoalTrackerDep needs FastAPI: pip install fastapi" in result.stdout
