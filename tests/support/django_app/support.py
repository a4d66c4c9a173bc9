"""Helpers for the Django adapter tests: point goaltrack at the fake API, make visitors."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import httpx

from goaltrack.testing.server import FakeAPIServer
from tests.support.browser import BOT_UA, BROWSER_UA
from tests.support.keys import DATAFAST_KEY, KEYS
from tests.support.paths import REPO as REPOSITORY
from tests.support.ports import free_port

__all__ = ["BOT_UA", "BROWSER_UA", "DATAFAST_KEY", "goaltrack_setting", "serve_test_project"]


def goaltrack_setting(
    fake_api: FakeAPIServer, provider: str = "datafast", **extra: Any
) -> dict[str, Any]:
    """A GOALTRACK setting that delivers to the fake API quickly (no long backoffs)."""
    return {
        "API_KEY": KEYS[provider],
        "PROVIDER": provider,
        "API_URL": fake_api.api_url(provider),
        "BACKOFF_BASE": 0.01,
        "BACKOFF_MAX": 0.05,
        "MAX_RETRIES": 2,
        **extra,
    }


@contextlib.contextmanager
def serve_test_project(fake_api: FakeAPIServer, server: str = "uvicorn") -> Iterator[str]:
    """Serve this test project under uvicorn (ASGI) or gunicorn (WSGI); yield its base URL."""
    port = free_port()
    if server == "uvicorn":
        command = ["uvicorn", "tests.support.django_app.asgi:application", "--port", str(port)]
        command += ["--host", "127.0.0.1", "--lifespan", "off"]
    else:
        command = [
            "gunicorn",
            "tests.support.django_app.wsgi:application",
            "-b",
            f"127.0.0.1:{port}",
        ]
    env = {
        **os.environ,
        "GOALTRACK_TEST_API_URL": fake_api.api_url("datafast"),
        "GOALTRACK_TEST_MODE": "background",
        "PYTHONPATH": str(REPOSITORY),
    }
    base_url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", *command], cwd=REPOSITORY, env=env, stdout=log, stderr=log
        )
        try:
            deadline = time.monotonic() + 20
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"{server} did not start:\n{log.read()}")
                try:
                    httpx.get(f"{base_url}/visitor/", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.05)  # polling interval, bounded by the deadline
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
