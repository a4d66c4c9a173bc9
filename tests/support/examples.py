"""The example projects under their real servers, for the journey and load tests and bench/load.py.

:func:`serve_example` starts one example (Django shop and Flask blog under gunicorn, the FastAPI
app under uvicorn) on a free 127.0.0.1 port, pointed at a fake API, waits until it answers, and
stops it gracefully (SIGTERM: workers flush their goals) on exit. Not a test module.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.keys import KEYS
from tests.support.paths import EXAMPLES, REPO
from tests.support.ports import free_port

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0
EXAMPLE_NAMES = ("django", "flask", "fastapi")


@dataclass
class RunningExample:
    name: str
    url: str
    process: subprocess.Popen[str]
    log: Path
    exit_status: int | None = None
    final_output: str | None = None  # kept once stopped: the log file goes with its directory

    @property
    def output(self) -> str:
        if self.final_output is not None:
            return self.final_output
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM and wait: the workers flush their pending goals on the way out."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.exit_status = self.process.returncode
        self.final_output = self.log.read_text(errors="replace")
        return self.exit_status


def _environment(
    name: str, api_url: str, provider: str, tmp: Path, extra: Mapping[str, str]
) -> dict[str, str]:
    python_path = os.pathsep.join(
        p for p in (str(EXAMPLES / "django_shop"), str(REPO), os.environ.get("PYTHONPATH")) if p
    )
    env = {
        **os.environ,
        "PYTHONPATH": python_path,
        "GOALTRACK_API_KEY": KEYS[provider],
        "GOALTRACK_PROVIDER": provider,
        "GOALTRACK_API_URL": api_url,
        "GOALTRACK_BACKOFF_BASE": "0.05",
        "PYTHONUNBUFFERED": "1",
    }
    if name == "django":
        env |= {
            "DJANGO_SETTINGS_MODULE": "shop.settings",
            "SHOP_DB_PATH": str(tmp / "shop.sqlite3"),
            "SHOP_DEBUG": "0",
        }
    return env | dict(extra)


def _command(name: str, port: int, workers: int) -> tuple[list[str], Path, str]:
    """The server command line, its working directory, and a path that answers 200 once up."""
    bind = f"127.0.0.1:{port}"
    gunicorn = [sys.executable, "-m", "gunicorn", "--bind", bind, "--workers", str(workers)]
    gunicorn += ["--graceful-timeout", "10"]
    if name == "django":
        return [*gunicorn, "shop.wsgi:application"], EXAMPLES / "django_shop", "/login/"
    if name == "flask":
        return [*gunicorn, "example_projects.flask_blog.app:create_app()"], REPO, "/healthz"
    if name in ("fastapi", "stripe"):
        uvicorn = [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1"]
        uvicorn += ["--port", str(port), "--workers", str(workers), "--no-access-log"]
        if name == "stripe":  # not among EXAMPLE_NAMES: the payments example, tested on its own
            return uvicorn, EXAMPLES / "stripe_webhook", "/"
        return uvicorn, EXAMPLES / "fastapi_app", "/demo"
    raise ValueError(f"unknown example {name!r}: one of {', '.join(EXAMPLE_NAMES)}")


@contextlib.contextmanager
def serve_example(
    name: str,
    api_url: str,
    *,
    provider: str = "datafast",
    workers: int = 1,
    env: Mapping[str, str] | None = None,
) -> Iterator[RunningExample]:
    """Serve example *name* tracking into *api_url*; yield it running, stop it afterwards."""
    command, cwd, health_path = _command(name, free_port(), workers)
    port = int(command[command.index("--port") + 1]) if "--port" in command else None
    bind = command[command.index("--bind") + 1] if "--bind" in command else None
    url = f"http://127.0.0.1:{port}" if port else f"http://{bind}"
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        environment = _environment(name, api_url, provider, tmp, env or {})
        if name == "django":
            migrate = subprocess.run(
                [sys.executable, "manage.py", "migrate", "--noinput"],
                cwd=cwd,
                env=environment,
                capture_output=True,
                text=True,
                check=False,
            )
            if migrate.returncode != 0:
                raise RuntimeError(f"migrate failed:\n{migrate.stdout}{migrate.stderr}")
        log = tmp / "server.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                command, cwd=cwd, env=environment, stdout=out, stderr=subprocess.STDOUT, text=True
            )
        running = RunningExample(name, url, process, log)
        try:
            _wait_until_serving(running, health_path)
            yield running
        finally:
            running.stop()


def _wait_until_serving(running: RunningExample, health_path: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            raise RuntimeError(f"{running.name} exited early:\n{running.output}")
        try:
            if httpx.get(running.url + health_path, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # polling interval of a deadline-bound wait for the port to open
    raise RuntimeError(
        f"{running.name} did not serve within {START_TIMEOUT_S:g} s:\n{running.output}"
    )
