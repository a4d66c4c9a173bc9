"""A bounded load smoke test: each example app under its real server, every request a goal.

The full figures (with and without goaltrack) come from ``python bench/load.py``; here each app
gets a few seconds of concurrent traffic, and the test asserts no request failed, the backlog
stayed bounded by the queue, and every tracked goal reached the fake API once the server stopped.
"""

from __future__ import annotations

import pytest

from bench.load import run_load
from goaltrack.testing.server import FakeAPIServer
from tests.support.examples import EXAMPLE_NAMES

SMOKE_SECONDS = 3.0
MAX_QUEUE_SIZE = 10_000

pytestmark = pytest.mark.slow


class InProcessSink:
    """The session's fake API, as the load driver needs it."""

    def __init__(self, server: FakeAPIServer) -> None:
        self.server = server

    @property
    def api_url(self) -> str:
        return self.server.api_url("datafast")

    def add_visitor(self) -> str:
        return self.server.add_pageview("datafast")

    def goal_count(self) -> int:
        return len(self.server.goals)


@pytest.mark.parametrize("app", EXAMPLE_NAMES)
def test_every_request_under_load_delivers_its_goal(app: str, fake_api: FakeAPIServer) -> None:
    result = run_load(app, InProcessSink(fake_api), duration=SMOKE_SECONDS, concurrency=8)
    assert result.errors == 0
    assert result.requests > 0
    assert 0 <= result.max_backlog <= MAX_QUEUE_SIZE
    assert result.delivered == result.requests  # lost: 0, and nothing sent twice
    assert [r for r in fake_api.requests if r["status"] != 200] == []
