"""Goals under the servers and workers people deploy on, each a real server over real HTTP.

gunicorn's gevent worker (with and without ``--preload``, where the tracker is made in the
master before gevent patches the worker) and its gthread worker; uWSGI with and without
``--enable-threads``; Hypercorn and Daphne for the ASGI middleware; the Django example shop
under ``uvicorn shop.asgi:application``. For each: every goal tracked reaches the fake API, the
goals still pending at SIGTERM are flushed on the way out, and the server exits within the flush
bound. A bare process under ``gevent.monkey.patch_all()`` keeps the per-request deadline and
flushes at SIGTERM with goaltrack's own handler.

``pytest -s`` prints one line per server: goals tracked, delivered before SIGTERM, delivered in
all, and the seconds the stop took.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from goaltrack.testing.server import FakeAPIServer
from tests.support.ports import free_port
from tests.support.servers import REPO, python_command, serve, server_env, track_requests

pytestmark = pytest.mark.slow

SHUTDOWN_TIMEOUT_S = 3.0  # the tracker's default: the most the exit flush may take
LATENCY_MS = 100  # so that goals are still pending when SIGTERM comes
GOALS = 60  # 4 in flight at 100 ms: 1.5 s of delivery, within the flush bound
UWSGI = shutil.which("uwsgi", path=str(Path(sys.executable).parent))


def report(server: str, tracked: int, before: int, received: int, stop: float) -> None:
    print(
        f"\n{server}: tracked {tracked}, received before SIGTERM {before}, received {received} "
        f"in all, stopped in {stop:.2f} s"
    )


def delivered_ids(fake_api: FakeAPIServer) -> Counter[str]:
    return Counter(str(g["metadata"].get("id")) for g in fake_api.goals)


def wsgi_command(server: str, port: int) -> list[str]:
    bind = f"127.0.0.1:{port}"
    if server.startswith("gunicorn"):
        options = server.split()[1:]
        command = python_command("gunicorn", *options, "--bind", bind, "--workers", "1")
        return [*command, "--graceful-timeout", "10", "tests.support.apps.wsgi_app:application"]
    assert UWSGI is not None
    return [
        UWSGI,
        *server.split()[1:],
        "--http-socket",
        bind,
        "--module",
        "tests.support.apps.wsgi_app:application",
        "--home",
        sys.prefix,  # the virtual environment, with goaltrack and its dependencies
        "--master",
        "--processes",
        "1",
        "--need-app",
        "--disable-logging",
    ]


WSGI_SERVERS = [
    "gunicorn -k gevent",
    "gunicorn -k gevent --preload",
    "gunicorn -k gthread --threads 4",
    "uwsgi --enable-threads --die-on-term",
    "uwsgi --die-on-term",
]


@pytest.mark.parametrize("server", WSGI_SERVERS)
def test_wsgi_servers_deliver_every_goal_and_flush_at_sigterm(
    fake_api: FakeAPIServer, tmp_path: Path, server: str
) -> None:
    if server.startswith("uwsgi") and UWSGI is None:
        pytest.skip("uWSGI is not installed (pip install uwsgi builds it with a C compiler)")
    port = free_port()
    command = wsgi_command(server, port)
    with serve(command, server_env(fake_api), tmp_path / "log", port=port) as app:
        # Delivered while serving: the workers run between requests, not only at exit.
        first = track_requests(app.url, range(20))
        fake_api.wait_for_goals(20, timeout=10)
        fake_api.set_faults(latency_ms=LATENCY_MS)
        tracked = first + track_requests(app.url, range(20, 20 + GOALS))
        before = len(fake_api.goals)
        logged = httpx.get(app.url + "/warnings", timeout=5).json()
        stopped_in = app.stop()
    delivered = delivered_ids(fake_api)
    report(server, len(tracked), before, len(fake_api.goals), stopped_in)
    assert len(tracked) == 20 + GOALS
    assert before < len(tracked)  # goals were pending at SIGTERM: the flush delivered them
    assert delivered == Counter(tracked), app.output
    assert app.process.returncode == 0, app.output
    assert stopped_in < SHUTDOWN_TIMEOUT_S + 2.0, app.output
    # uWSGI runs with threads with or without --enable-threads (2.0.31): no warning then.
    assert logged == []
    assert "goaltrack" not in app.output, app.output


@pytest.mark.parametrize("hooks", ["", "--py-call-osafterfork"])
def test_uwsgi_app_delivering_while_it_loads_in_the_master(
    fake_api: FakeAPIServer, tmp_path: Path, hooks: str
) -> None:
    # uWSGI loads the app in its master, then forks workers from C, without Python's fork hooks
    # unless asked to, and without taking the GIL: goaltrack starts no thread in the master (a
    # worker forked while one held the GIL hung, 2 starts in 40), flush() delivers there, and
    # each worker delivers its own goals either way.
    if UWSGI is None:
        pytest.skip("uWSGI is not installed (pip install uwsgi builds it with a C compiler)")
    port = free_port()
    command = wsgi_command(f"uwsgi --die-on-term {hooks}".strip(), port)
    env = server_env(fake_api, SERVERS_DELIVER_WHILE_LOADING="1")
    with serve(command, env, tmp_path / "log", port=port) as app:
        logged = httpx.get(app.url + "/warnings", timeout=5).json()
        tracked = track_requests(app.url, range(20))
        fake_api.wait_for_goals(1 + 20, timeout=10)
        app.stop()
    assert [g["name"] for g in fake_api.goals][:1] == ["warmup"]
    assert delivered_ids(fake_api) == Counter(["None", *tracked])  # the warmup has no id
    if hooks:
        assert logged == []
    else:
        assert logged == [
            "goaltrack: tracking in uWSGI's master while it loads the app: it forks its workers "
            "without Python's fork hooks; start uWSGI with --py-call-osafterfork (or "
            "--lazy-apps). Goals tracked here are delivered by flush() or at exit, with no thread"
        ]


# -- a bare process under gevent.monkey.patch_all() ---------------------------------------------


def gevent_script(fake_api: FakeAPIServer, *arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        python_command("tests.support.apps.gevent_script", *arguments),
        cwd=REPO,
        env=server_env(fake_api),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_gevent_process_flushes_at_sigterm_with_goaltracks_handler(
    fake_api: FakeAPIServer,
) -> None:
    fake_api.set_faults(latency_ms=LATENCY_MS)
    script = gevent_script(fake_api, "sigterm", str(GOALS))
    try:
        assert script.stdout is not None
        assert script.stdout.readline().strip() == "tracked"
        fake_api.wait_for_goals(1, timeout=10)  # delivering: some goals in flight, some queued
        before = len(fake_api.goals)
        started = time.monotonic()
        script.send_signal(signal.SIGTERM)
        _, err = script.communicate(timeout=20)
        stopped_in = time.monotonic() - started
    finally:
        script.kill()
    delivered = delivered_ids(fake_api)
    report("gevent, bare process", GOALS, before, len(fake_api.goals), stopped_in)
    assert before < GOALS
    assert delivered == Counter(str(i) for i in range(GOALS)), err
    assert script.returncode == -signal.SIGTERM  # ended by SIGTERM, as without goaltrack
    # The flush took what the deliveries need, not the whole bound: no greenlet was held back.
    assert stopped_in < SHUTDOWN_TIMEOUT_S, err
    assert "not delivered" not in err


def test_gevent_keeps_the_per_request_deadline(fake_api: FakeAPIServer) -> None:
    # 5 bytes/s: every read gets a byte within the 0.5 s timeout, so only the request's total
    # deadline (the watchdog, a greenlet here) can end an attempt before the answer's ~16 s.
    script = gevent_script(fake_api, "deadline")
    assert script.stdout is not None
    assert script.stdin is not None
    # The window opens once the process is ready to track (it used to open before the process
    # started: on a cold start the goal was sent after the window, no request was trickled).
    assert script.stdout.readline().strip() == "ready", script.communicate(timeout=30)
    fake_api.set_faults(trickle_for=2.0, trickle_bytes_per_s=5)
    script.stdin.write("go\n")
    script.stdin.flush()
    out, err = script.communicate(timeout=60)
    assert script.returncode == 0, err
    result = json.loads(out.splitlines()[-1])
    trickled = [r for r in fake_api.requests if r["fault"] == "trickle"]
    print(f"\ngevent, trickled answers, 0.5 s timeout: {result}")
    assert result["flushed"], result
    assert trickled
    # The window, the breaker's probe (about 1 s), and room for a machine loaded 4x over: far
    # below the ~16 s one trickled answer takes when the deadline does not hold.
    assert result["took"] < 2.0 + 6.0, result
    assert result["delivered"] == 1
    assert result["possible_duplicates"] >= 1  # the trickled attempts reached the API


def test_gevent_process_forks_without_resending_the_parents_goals(
    fake_api: FakeAPIServer,
) -> None:
    fake_api.set_faults(latency_ms=LATENCY_MS)  # the parent's goals are in flight at the fork
    script = gevent_script(fake_api, "fork", "20")
    out, err = script.communicate(timeout=60)
    assert script.returncode == 0, err
    assert json.loads(out.splitlines()[-1]) == {"child_status": 0, "parent_flushed": True}
    expected = [f"{who}-{i}" for who in ("parent", "child") for i in range(20)]
    assert delivered_ids(fake_api) == Counter(expected)  # each once: none lost, none twice


# -- ASGI servers beside uvicorn ----------------------------------------------------------------


def asgi_command(server: str, port: int) -> list[str]:
    app = "tests.support.apps.asgi_app:application"
    if server == "hypercorn":
        return python_command("hypercorn", "--bind", f"127.0.0.1:{port}", app)
    return python_command("daphne", "--bind", "127.0.0.1", "--port", str(port), app)


@pytest.mark.parametrize("server", ["hypercorn", "daphne"])
def test_asgi_servers_deliver_every_goal_and_flush_at_sigterm(
    fake_api: FakeAPIServer, tmp_path: Path, server: str
) -> None:
    port = free_port()
    env = server_env(fake_api)
    cookies = {"datafast_visitor_id": env["SERVERS_VISITOR"]}
    with serve(asgi_command(server, port), env, tmp_path / "log", port=port) as app:
        first = track_requests(app.url, range(20), cookies=cookies)
        fake_api.wait_for_goals(20, timeout=10)
        fake_api.set_faults(latency_ms=LATENCY_MS)
        tracked = first + track_requests(app.url, range(20, 20 + GOALS), cookies=cookies)
        before = len(fake_api.goals)
        stopped_in = app.stop()
    delivered = delivered_ids(fake_api)
    report(server, len(tracked), before, len(fake_api.goals), stopped_in)
    assert len(tracked) == 20 + GOALS
    assert before < len(tracked)
    assert delivered == Counter(tracked), app.output
    assert app.process.returncode == 0, app.output
    assert stopped_in < SHUTDOWN_TIMEOUT_S + 2.0, app.output


# -- the Django example shop under uvicorn ---------------------------------------------------------

SHOP = REPO / "example_projects" / "django_shop"


def test_django_shop_under_uvicorn_flushes_at_sigterm(
    fake_api: FakeAPIServer, tmp_path: Path
) -> None:
    # uvicorn shop.asgi:application, with goaltrack.django.middleware.GoalTrackMiddleware in
    # MIDDLEWARE and the newsletter view's @track_goal (an async view).
    spec = importlib.util.spec_from_file_location("django_shop_demo", SHOP / "demo.py")
    assert spec is not None
    assert spec.loader is not None
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)  # the demo's own environment and uvicorn command line
    env = demo.shop_environment(fake_api.api_url("datafast"), tmp_path / "shop.sqlite3")
    subprocess.run(python_command("django", "migrate", "--noinput"), cwd=SHOP, env=env, check=True)
    port = free_port()
    command = demo.server_command("uvicorn", port)
    visitor_id = fake_api.add_pageview("datafast")
    with serve(command, env, tmp_path / "log", port=port, health_path="/login/", cwd=SHOP) as shop:
        with httpx.Client(
            base_url=shop.url,
            headers={"User-Agent": demo.BROWSER_UA},
            cookies={"datafast_visitor_id": visitor_id},
            timeout=10,
        ) as browser:
            browser.get("/")
            form = {"csrfmiddlewaretoken": browser.cookies["csrftoken"]}
            assert browser.post("/newsletter/", data=form).status_code == 302
            fake_api.wait_for_goals(1, timeout=10)
            fake_api.set_faults(latency_ms=LATENCY_MS)
            answers = [browser.post("/newsletter/", data=form).status_code for _ in range(30)]
        before = len(fake_api.goals)
        stopped_in = shop.stop()
    goals = [g for g in fake_api.goals if g["name"] == "newsletter"]
    report("uvicorn shop.asgi:application", 31, before, len(goals), stopped_in)
    assert answers == [302] * 30
    assert before < 31
    assert len(goals) == 31, shop.output
    assert {g["visitor_id"] for g in goals} == {visitor_id}
    # uvicorn ends by the signal it handled once its graceful stop is done; the tracker, made
    # when Django loaded the app (before uvicorn took SIGTERM over), flushed on the way.
    assert shop.process.returncode == -signal.SIGTERM, shop.output
    assert stopped_in < SHUTDOWN_TIMEOUT_S + 2.0, shop.output
