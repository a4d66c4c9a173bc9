"""One rule for setup errors in every adapter, under the real servers people deploy on.

Production (each adapter: FastAPI and Starlette under uvicorn with its default ``--lifespan
auto``, Django and Flask under gunicorn): a key of the wrong provider never stops the app: every
route answers 200 (FastAPI's ``/docs`` too), the app's own lifespan startup runs, goaltrack logs
the problem once with its check id, and goals are validated but not sent. An outbox file that
cannot be opened is logged once with its path, and goals are delivered from memory.

Development (``SETUP_DEBUG=1``: the ASGI middleware's ``debug=True``, Django's ``DEBUG``): the
ASGI app refuses to start (the lifespan startup fails with the id); under a server without
lifespan, and Django under gunicorn, the app serves, routes that track nothing answer 200, and
each tracking call raises ``InvalidConfiguration`` with the id. (Flask's ``init_app`` raising:
``tests/flask/test_config.py``.)

The check commands (``goaltrack check``, ``manage.py goaltrack_check``, ``flask goaltrack
check``) run on the same bad configuration and report it: exit 1, the id and its hint, no
traceback, never the key.

The apps are :mod:`tests.contract.setup_apps` and :mod:`tests.contract.setup_django`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from goaltrack.testing.server import FakeAPIServer
from tests.contract.apps import ADAPTERS
from tests.support.ports import free_port
from tests.support.servers import REPO, Running, python_command, serve, server_env

pytestmark = pytest.mark.slow

#: A Flowsery key given to a tracker for DataFast: goaltrack.E005.
WRONG_PROVIDER_KEY = "flow_setup_errors_key_0123456789"
START_DEADLINE_S = 30.0


def server_command(adapter: str, port: int, *extra: str) -> tuple[list[str], dict[str, str]]:
    """The command serving *adapter*'s setup app on *port*, and what its environment adds."""
    bind = ["--bind", f"127.0.0.1:{port}", "--workers", "1"]
    if adapter == "django":
        command = python_command("gunicorn", *bind, "django.core.wsgi:get_wsgi_application()")
        return command, {"DJANGO_SETTINGS_MODULE": "tests.contract.setup_django"}
    if adapter == "flask":
        return python_command("gunicorn", *bind, "tests.contract.setup_apps:flask_app()"), {}
    # uvicorn as started by hand: its default --lifespan auto, unless *extra* says otherwise.
    factory = f"tests.contract.setup_apps:{adapter}_app"
    command = python_command("uvicorn", "--factory", factory, "--host", "127.0.0.1")
    return [*command, "--port", str(port), *extra], {}


@contextlib.contextmanager
def served(
    adapter: str, fake_api: FakeAPIServer, tmp_path: Path, *extra: str, **env: str
) -> Iterator[Running]:
    port = free_port()
    command, adapter_env = server_command(adapter, port, *extra)
    environment = server_env(fake_api, **adapter_env, **env)
    with serve(command, environment, tmp_path / "server.log", port=port, health_path="/plain") as r:
        yield r


def visitor_cookie(fake_api: FakeAPIServer) -> dict[str, str]:
    return {"datafast_visitor_id": fake_api.add_pageview("datafast")}


def log_lines_with(output: str, text: str) -> list[str]:
    return [line for line in output.splitlines() if text in line]


# -- production ----------------------------------------------------------------------------------


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_a_key_of_the_wrong_provider_never_stops_the_app(
    adapter: str, fake_api: FakeAPIServer, tmp_path: Path
) -> None:
    with served(adapter, fake_api, tmp_path, GOALTRACK_API_KEY=WRONG_PROVIDER_KEY) as running:
        cookies = visitor_cookie(fake_api)
        with httpx.Client(base_url=running.url, timeout=10, cookies=cookies) as client:
            assert client.get("/plain").status_code == 200
            tracked = client.post("/track")
            assert tracked.status_code == 200
            assert tracked.json() == {"queued": False}  # validated, not sent
            if adapter in ("fastapi", "starlette"):
                assert client.get("/started").json() == {"started": True}  # the app's lifespan
            if adapter == "fastapi":
                assert client.get("/docs").status_code == 200
                assert client.get("/openapi.json").status_code == 200
        running.stop()
    output = running.output
    logged = log_lines_with(output, "goaltrack.E005")
    assert len(logged) == 1, output  # once, with the id and the hint
    assert "cannot work" in logged[0]
    assert "goals are validated but not sent" in logged[0]
    assert "HINT: this looks like a flowsery key" in logged[0]
    assert WRONG_PROVIDER_KEY not in output
    assert "Traceback" not in output
    assert "no API key" not in output  # the stand-in tracker does not warn about a missing key
    assert fake_api.goals == []


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_an_unusable_outbox_falls_back_to_memory(
    adapter: str, fake_api: FakeAPIServer, tmp_path: Path
) -> None:
    not_a_directory = tmp_path / "not-a-directory"
    not_a_directory.write_text("a file where the outbox's directory should be")
    outbox = not_a_directory / "outbox.sqlite3"
    with served(adapter, fake_api, tmp_path, GOALTRACK_OUTBOX=str(outbox)) as running:
        cookies = visitor_cookie(fake_api)
        with httpx.Client(base_url=running.url, timeout=10, cookies=cookies) as client:
            assert client.get("/plain").status_code == 200
            for _ in range(3):
                tracked = client.post("/track")
                assert tracked.status_code == 200
                assert tracked.json() == {"queued": True}
            if adapter in ("fastapi", "starlette"):
                assert client.get("/started").json() == {"started": True}
        goals = fake_api.wait_for_goals(3, timeout=15)
        running.stop()
    assert [goal["name"] for goal in goals] == ["signup"] * 3  # delivered from memory
    logged = log_lines_with(running.output, "goaltrack.E008")
    assert len(logged) == 1, running.output
    assert str(outbox) in logged[0]
    assert "delivered from memory" in logged[0]
    assert not outbox.exists()


# -- development ---------------------------------------------------------------------------------


@pytest.mark.parametrize("adapter", ["fastapi", "starlette"])
def test_asgi_debug_refuses_to_start_with_the_id(
    adapter: str, fake_api: FakeAPIServer, tmp_path: Path
) -> None:
    command, _ = server_command(adapter, free_port())
    environment = server_env(fake_api, GOALTRACK_API_KEY=WRONG_PROVIDER_KEY, SETUP_DEBUG="1")
    finished = subprocess.run(
        command,
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=START_DEADLINE_S,
        check=False,
    )
    output = finished.stdout + finished.stderr
    assert finished.returncode != 0, output
    assert "Application startup failed" in output
    assert "goaltrack.E005" in output
    assert WRONG_PROVIDER_KEY not in output


@pytest.mark.parametrize("adapter", ["fastapi", "starlette", "django"])
def test_development_without_a_start_up_phase_raises_at_tracking_calls_only(
    adapter: str, fake_api: FakeAPIServer, tmp_path: Path
) -> None:
    # uvicorn --lifespan off; Django with DEBUG under gunicorn (no system checks there).
    extra = ["--lifespan", "off"] if adapter != "django" else []
    with served(
        adapter, fake_api, tmp_path, *extra, GOALTRACK_API_KEY=WRONG_PROVIDER_KEY, SETUP_DEBUG="1"
    ) as running:
        cookies = visitor_cookie(fake_api)
        with httpx.Client(base_url=running.url, timeout=10, cookies=cookies) as client:
            assert client.get("/plain").status_code == 200  # tracks nothing: never a 500
            tracked = client.post("/track").json()
            if adapter == "fastapi":
                assert client.get("/docs").status_code == 200
    assert tracked["raised"] == "InvalidConfiguration"
    assert "goaltrack.E005" in tracked["message"]
    assert WRONG_PROVIDER_KEY not in tracked["message"]


# -- the check commands --------------------------------------------------------------------------


def run_command(command: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **server_env_without_fake_api(),
        "GOALTRACK_API_KEY": WRONG_PROVIDER_KEY,
        **env,
    }
    return subprocess.run(
        command,
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def server_env_without_fake_api() -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GOALTRACK_")}
    return {**environment, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}


CHECK_COMMANDS = {
    "goaltrack check": ([sys.executable, "-m", "goaltrack.cli", "check", "--offline"], {}),
    "manage.py goaltrack_check": (
        [sys.executable, "-m", "django", "goaltrack_check", "--offline"],
        {"DJANGO_SETTINGS_MODULE": "tests.contract.setup_django"},
    ),
    "flask goaltrack check": (
        [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "tests.contract.setup_apps:flask_app",
            "goaltrack",
            "check",
            "--offline",
        ],
        {},
    ),
}


@pytest.mark.parametrize("development", [False, True], ids=["production", "development"])
@pytest.mark.parametrize("front_end", CHECK_COMMANDS)
def test_the_check_commands_report_a_bad_configuration(front_end: str, development: bool) -> None:
    command, env = CHECK_COMMANDS[front_end]
    if development:
        env = {**env, "SETUP_DEBUG": "1", "FLASK_DEBUG": "1"}
    finished = run_command(command, **env)
    output = finished.stdout + finished.stderr
    assert finished.returncode == 1, output
    assert "goaltrack.E005" in finished.stdout
    assert "HINT: this looks like a flowsery key" in finished.stdout
    assert "Traceback" not in output
    assert WRONG_PROVIDER_KEY not in output


def test_manage_py_goaltrack_outbox_runs_whatever_the_key(tmp_path: Path) -> None:
    """The outbox needs no key: Django's system checks (E005 for this key) must not stop
    ``manage.py goaltrack_outbox status`` from showing what is stored."""
    finished = run_command(
        [sys.executable, "-m", "django", "goaltrack_outbox", "status"],
        DJANGO_SETTINGS_MODULE="tests.contract.setup_django",
        GOALTRACK_OUTBOX=str(tmp_path / "absent.sqlite3"),
    )
    output = finished.stdout + finished.stderr
    assert "SystemCheckError" not in output, output
    assert "Traceback" not in output, output
    assert "absent.sqlite3" in output, output
    assert WRONG_PROVIDER_KEY not in output
