"""Litestar as a plain ASGI app inside ``GoalTrackMiddleware``, under uvicorn, over real HTTP.

``track_goal(request, ...)`` with Litestar's ``Request``, ``@track_goal`` under ``@post`` (its
metadata from the handler's ``data``), error answers that track nothing, and the flush at
SIGTERM (the middleware's, at lifespan shutdown). The app is ``tests/support/apps/litestar_app.py``.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from goaltrack.testing.server import FakeAPIServer
from tests.support.django_app.support import BROWSER_UA
from tests.support.ports import free_port
from tests.support.servers import python_command, serve, server_env

pytestmark = pytest.mark.slow


def test_litestar_app_tracks_and_flushes_at_sigterm(
    fake_api: FakeAPIServer, tmp_path: Path
) -> None:
    port = free_port()
    command = python_command("uvicorn", "tests.support.apps.litestar_app:application")
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    visitor_id = fake_api.add_pageview("datafast")
    with serve(command, server_env(fake_api), tmp_path / "log", port=port) as app:
        with httpx.Client(
            base_url=app.url,
            headers={"User-Agent": BROWSER_UA},
            cookies={"datafast_visitor_id": visitor_id},
            timeout=10,
        ) as browser:
            signup = browser.post("/signup", json={"plan": "team"})
            assert (signup.status_code, signup.json()) == (201, {"queued": True})
            assert browser.post("/purchase", json={"plan": "gold"}).status_code == 400
            assert browser.post("/refund").status_code == 409
            assert browser.post("/purchase", json={"plan": "pro"}).status_code == 201
            first = fake_api.wait_for_goals(2)
            # Pending when SIGTERM comes: 40 goals at 200 ms, 4 in flight, take 2 s to deliver
            # (within the exit flush's 3 s); sending them takes a fraction of that.
            fake_api.set_faults(latency_ms=200)
            for _ in range(40):
                assert browser.post("/purchase", json={"plan": "team"}).status_code == 201
        with httpx.Client(base_url=app.url, timeout=10) as cookieless:
            assert cookieless.post("/signup", json={}).json() == {"queued": False}
        before = len(fake_api.goals)
        stopped_in = app.stop()
    print(
        f"\nLitestar under uvicorn: received before SIGTERM {before}, stopped in {stopped_in:.2f} s"
    )
    assert sorted((g["name"], g["metadata"]) for g in first) == [
        ("purchase", {"plan": "pro"}),
        ("signup", {"plan": "team"}),
    ]
    names = [g["name"] for g in fake_api.goals]
    assert before < 42
    assert sorted(names) == ["purchase"] * 41 + ["signup"], app.output
    assert {g["visitor_id"] for g in fake_api.goals} == {visitor_id}
    assert stopped_in < 3.0 + 2.0, app.output
