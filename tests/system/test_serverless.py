"""Every goal tracked in a serverless invocation reaches the API before the platform freezes the
process: the freeze emulated honestly, under the adapters people deploy with.

Lambda (``tests.support.lambda_runtime``): the handler runs in a child process that stops
itself (SIGSTOP) the moment the handler returns, and is later killed without being resumed, an
execution environment discarded while frozen. What the fake API holds when the result is read
must already include every goal of that invocation: a plain handler under
``@goaltrack.serverless.lambda_handler``, FastAPI under Mangum, Flask under apig-wsgi, Django
under both (WSGI and ASGI). The API answers after 100 ms, so a goal left to a background thread
would still be in flight at the freeze: the controls (no decorator; ``serverless=False``) show
that the check fails then.

Cloud Run: the app under its real server (uvicorn, gunicorn) with ``K_SERVICE`` set, stopped
(SIGSTOP) as soon as each response is read, as request-based billing takes the CPU, and resumed
for the next request; at the end SIGTERM, which Cloud Run follows with SIGKILL after 10 s: the
goal still pending then is delivered, and the process exits, within them.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx
import psutil
import pytest

from goaltrack.testing.server import FakeAPIServer
from tests.support.apps.serverless import GOAL
from tests.support.lambda_runtime import FrozenRuntime, http_event
from tests.support.ports import free_port
from tests.support.servers import python_command, serve, server_env
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

LATENCY_MS = 100
"""The API's answer time: a goal not waited for is still in flight when the handler returns."""
CLOUD_RUN_GRACE_S = 10.0
"""Cloud Run's SIGKILL follows its SIGTERM after 10 s."""

APPS = "tests.support.apps.serverless"
HTTP_HANDLERS = {
    "fastapi-mangum": f"{APPS}.asgi:handler",
    "flask-apig-wsgi": f"{APPS}.wsgi:handler",
    "django-apig-wsgi": f"{APPS}.django_handlers:wsgi_handler",
    "django-mangum": f"{APPS}.django_handlers:asgi_handler",
}


def invocations(fake_api: FakeAPIServer) -> dict[str, int]:
    """Goals the fake API holds, counted per invocation."""
    counted: dict[str, int] = {}
    for goal in fake_api.goals:
        assert goal["name"] == GOAL
        key = str(goal["metadata"]["invocation"])
        counted[key] = counted.get(key, 0) + 1
    return counted


def lambda_env(fake_api: FakeAPIServer, **extra: str) -> dict[str, str]:
    return server_env(
        fake_api,
        AWS_LAMBDA_FUNCTION_NAME="goaltrack-tests",
        DJANGO_SETTINGS_MODULE=f"{APPS}.django_project",
        GOALTRACK_TEST_API_URL=fake_api.api_url("datafast"),
        GOALTRACK_TEST_MODE="background",
        **extra,
    )


@pytest.fixture
def slow_api(fake_api: FakeAPIServer) -> FakeAPIServer:
    fake_api.set_faults(latency_ms=LATENCY_MS)
    return fake_api


def test_a_decorated_handler_delivers_every_goal_before_the_freeze(
    slow_api: FakeAPIServer, tmp_path: Path
) -> None:
    env = lambda_env(slow_api)
    visitor = env["SERVERS_VISITOR"]
    runtime = FrozenRuntime(
        f"{APPS}.plain:handler", env, tmp_path / "runtime.log", lambda: invocations(slow_api)
    )
    with runtime:
        for invocation, goals in (("a", 1), ("b", 10), ("c", 0), ("d", 3)):
            event = {"goals": goals, "invocation": invocation, "visitor": visitor}
            result, at_return = runtime.invoke(event)
            assert result == {"tracked": goals}
            assert at_return.get(invocation, 0) == goals, runtime.output
        runtime.discard()
    assert invocations(slow_api) == {"a": 1, "b": 10, "d": 3}
    assert re.search(
        r"INFO goaltrack goaltrack: on AWS Lambda \(AWS_LAMBDA_FUNCTION_NAME", runtime.output
    )


def test_without_the_decorator_goals_are_still_in_flight_at_the_freeze(
    slow_api: FakeAPIServer, tmp_path: Path
) -> None:
    """The control: what the check above catches when nothing waits for the goals."""
    env = lambda_env(slow_api)
    runtime = FrozenRuntime(
        f"{APPS}.plain:undecorated", env, tmp_path / "runtime.log", lambda: invocations(slow_api)
    )
    with runtime:
        event = {"goals": 3, "invocation": "a", "visitor": env["SERVERS_VISITOR"]}
        result, at_return = runtime.invoke(event)
    assert result == {"tracked": 3}
    assert at_return.get("a", 0) < 3


@pytest.mark.parametrize("adapter", list(HTTP_HANDLERS))
def test_each_adapter_delivers_every_goal_before_the_response_is_handed_back(
    slow_api: FakeAPIServer, tmp_path: Path, adapter: str
) -> None:
    env = lambda_env(slow_api)
    cookies = {"datafast_visitor_id": env["SERVERS_VISITOR"]}
    runtime = FrozenRuntime(
        HTTP_HANDLERS[adapter], env, tmp_path / "runtime.log", lambda: invocations(slow_api)
    )
    with runtime:
        for invocation, goals in (("a", 1), ("b", 10), ("c", 0)):
            query = f"goals={goals}&invocation={invocation}"
            response, at_return = runtime.invoke(http_event("/track", query=query, cookies=cookies))
            assert response["statusCode"] == 200, (response, runtime.output)
            assert at_return.get(invocation, 0) == goals, runtime.output
        runtime.discard()
    assert invocations(slow_api) == {"a": 1, "b": 10}


@pytest.mark.parametrize("adapter", ["fastapi-mangum", "flask-apig-wsgi"])
def test_with_serverless_off_the_adapters_leave_goals_in_flight(
    slow_api: FakeAPIServer, tmp_path: Path, adapter: str
) -> None:
    """The control: ``GOALTRACK_SERVERLESS=0`` on Lambda gives a server's rules."""
    env = lambda_env(slow_api, GOALTRACK_SERVERLESS="0")
    cookies = {"datafast_visitor_id": env["SERVERS_VISITOR"]}
    runtime = FrozenRuntime(
        HTTP_HANDLERS[adapter], env, tmp_path / "runtime.log", lambda: invocations(slow_api)
    )
    with runtime:
        event = http_event("/track", query="goals=3&invocation=a", cookies=cookies)
        response, at_return = runtime.invoke(event)
    assert response["statusCode"] == 200, runtime.output
    assert at_return.get("a", 0) < 3
    assert "on AWS Lambda" not in runtime.output


def test_the_wait_ends_before_the_invocation_s_deadline(
    fake_api: FakeAPIServer, tmp_path: Path
) -> None:
    """An API slower than the time left: the handler returns in time, saying what is pending."""
    fake_api.set_faults(latency_ms=5000)
    env = lambda_env(fake_api)
    runtime = FrozenRuntime(f"{APPS}.plain:handler", env, tmp_path / "runtime.log", lambda: None)
    with runtime:
        event = {"goals": 1, "invocation": "a", "visitor": env["SERVERS_VISITOR"]}
        result, _ = runtime.invoke(event, deadline_ms=900)
    assert result == {"tracked": 1}
    waited = re.search(r"still pending after ([0-9.]+) s at the end of a Lambda", runtime.output)
    assert waited is not None, runtime.output
    assert float(waited.group(1)) <= 0.4  # 900 ms left, less the 500 ms margin


# -- Cloud Run ------------------------------------------------------------------------------------


def freeze(process: psutil.Process) -> list[psutil.Process]:
    """SIGSTOP the server and its workers: no CPU until :func:`thaw`."""
    stopped = [process, *process.children(recursive=True)]
    for each in stopped:
        each.send_signal(signal.SIGSTOP)
    return stopped


def thaw(stopped: list[psutil.Process]) -> None:
    for each in stopped:
        each.send_signal(signal.SIGCONT)


CLOUD_RUN_SERVERS = {
    "uvicorn-fastapi": [
        "uvicorn",
        f"{APPS}.asgi:app",
        "--host",
        "127.0.0.1",
        "--lifespan",
        "on",
        "--port",
    ],
    "gunicorn-flask": ["gunicorn", f"{APPS}.wsgi:app", "--workers", "1", "--bind"],
}


@pytest.mark.parametrize("server", list(CLOUD_RUN_SERVERS))
def test_cloud_run_without_cpu_between_requests_and_sigterm_at_the_end(
    fake_api: FakeAPIServer, tmp_path: Path, server: str
) -> None:
    port = free_port()
    address = str(port) if server.startswith("uvicorn") else f"127.0.0.1:{port}"
    command = python_command(*CLOUD_RUN_SERVERS[server], address)
    # The last request's wait is cut at 0.2 s, its goal answered after 3 s: still pending at
    # SIGTERM, and delivered by the flush at exit (at most 8 s, within Cloud Run's 10).
    env = server_env(
        fake_api,
        K_SERVICE="goaltrack-tests",
        GOALTRACK_FLUSH_AT_REQUEST_END="0.2",
        GOALTRACK_SHUTDOWN_TIMEOUT="8",
    )
    cookies = {"datafast_visitor_id": env["SERVERS_VISITOR"]}
    fake_api.set_faults(latency_ms=LATENCY_MS)
    with serve(command, env, tmp_path / "server.log", port=port) as running:
        process = psutil.Process(running.process.pid)
        with httpx.Client(base_url=running.url, cookies=cookies, timeout=30) as client:
            for invocation, goals in (("a", 1), ("b", 3)):
                query = {"goals": str(goals), "invocation": invocation}
                response = client.get("/track", params=query)
                at_response = invocations(fake_api)
                stopped = freeze(process)
                assert response.status_code == 200
                assert at_response.get(invocation, 0) == goals, running.output
                thaw(stopped)
            fake_api.set_faults(latency_ms=3000)
            assert client.get("/track", params={"invocation": "last"}).status_code == 200
        assert invocations(fake_api).get("last", 0) == 0  # pending, as intended
        stop_took = running.stop(signal.SIGTERM)
        assert stop_took < CLOUD_RUN_GRACE_S, running.output
        wait_until(lambda: invocations(fake_api).get("last") == 1, what="the last goal")
