"""Apps run under the servers people deploy on, and a helper that runs one (not a test module).

:func:`serve` starts a server command in its own process, pointed at the fake API through the
``GOALTRACK_*`` variables, waits until it answers, and stops it with SIGTERM, measuring how long
the stop took. The apps are in this package: ``wsgi_app`` (gunicorn, uWSGI), ``asgi_app``
(Hypercorn, Daphne), ``litestar_app``, ``django_apis`` (Django REST framework, django-ninja),
``gevent_script`` (a bare process under ``gevent.monkey.patch_all()``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from goaltrack.testing.server import FakeAPIServer
from tests.support.keys import DATAFAST_KEY as KEY
from tests.support.paths import REPO
from tests.support.ports import free_port

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0


@dataclass
class Running:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    stopped_in: float | None = None
    """Seconds from SIGTERM to the process's exit."""

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> float:
        """Send *sig* and wait for the exit; the seconds it took (killed after 20 s: a hang)."""
        if self.stopped_in is not None:
            return self.stopped_in
        started = time.monotonic()
        self.process.send_signal(sig)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            raise AssertionError(f"no exit within {STOP_TIMEOUT_S:g} s:\n{self.output}") from None
        finally:
            self.stopped_in = time.monotonic() - started
        return self.stopped_in


def server_env(fake_api: FakeAPIServer, **extra: str) -> dict[str, str]:
    """The environment of a server process: goals to the fake API's DataFast, fast retries."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PYTHONUNBUFFERED": "1",
        "GOALTRACK_API_KEY": KEY,
        "GOALTRACK_API_URL": fake_api.api_url("datafast"),
        "GOALTRACK_BACKOFF_BASE": "0.05",
        "SERVERS_VISITOR": fake_api.add_pageview("datafast"),
        **extra,
    }
    env.pop("GOALTRACK_MODE", None)
    return env


@contextlib.contextmanager
def serve(
    command: Sequence[str],
    env: Mapping[str, str],
    log: Path,
    *,
    port: int,
    health_path: str = "/",
    cwd: Path = REPO,
) -> Iterator[Running]:
    """Run *command* (which listens on 127.0.0.1:*port*); yield it once *health_path* answers 200.

    The caller stops it (``running.stop()``) to measure the stop; otherwise it is stopped here.
    """
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=cwd, env=dict(env), stdout=out, stderr=out)
    running = Running(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if httpx.get(running.url + health_path, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command[2:4]} did not start:\n{running.output}")
            time.sleep(0.05)  # polling interval of a deadline-bound wait for the port
        yield running
    finally:
        if process.poll() is None:
            with contextlib.suppress(AssertionError):
                running.stop()


def track_requests(
    url: str, ids: range, path: str = "/track", cookies: Mapping[str, str] | None = None
) -> list[str]:
    """GET *path*?id=N for each id, one keep-alive connection; the ids answered 200."""
    done = []
    with httpx.Client(base_url=url, timeout=10, cookies=dict(cookies or {})) as client:
        for goal_id in ids:
            if client.get(path, params={"id": str(goal_id)}).status_code == 200:
                done.append(str(goal_id))
    return done


def python_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", *arguments]


__all__ = [
    "KEY",
    "REPO",
    "Running",
    "python_command",
    "serve",
    "serve_django_apis",
    "server_env",
    "track_requests",
]


@contextlib.contextmanager
def serve_django_apis(fake_api: FakeAPIServer, server: str, log: Path) -> Iterator[Running]:
    """The DRF and django-ninja project (``tests.support.apps.django_apis``) under *server*."""
    port = free_port()
    if server == "gunicorn":
        command = python_command("gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1")
        command.append("tests.support.apps.django_apis.wsgi:application")
    else:
        command = python_command("uvicorn", "tests.support.apps.django_apis.asgi:application")
        command += ["--host", "127.0.0.1", "--port", str(port), "--lifespan", "off"]
    env = server_env(fake_api, DJANGO_SETTINGS_MODULE="tests.support.apps.django_apis.settings")
    with serve(command, env, log, port=port) as running:
        yield running
