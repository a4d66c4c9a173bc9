"""What the outbox tests share: a file in the test's own directory, and trackers that use it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from goaltrack import GoalTracker
from goaltrack.testing.server import FakeAPIServer
from tests.support.keys import DATAFAST_KEY


@pytest.fixture
def outbox_path(tmp_path: Path) -> str:
    return str(tmp_path / "goals.sqlite3")


@pytest.fixture
def make_tracker(fake_api: FakeAPIServer, outbox_path: str) -> Iterator[Callable[..., GoalTracker]]:
    """Trackers on the test's outbox file and the fake API's DataFast, retrying fast; closed at
    the end of the test."""
    made: list[GoalTracker] = []

    def make(key: str = DATAFAST_KEY, **options: Any) -> GoalTracker:
        options.setdefault("backoff_base", 0.05)
        options.setdefault("backoff_max", 0.2)
        options.setdefault("flush_at_exit", False)
        options.setdefault("outbox", outbox_path)
        options.setdefault("api_url", fake_api.api_url("datafast"))
        tracker = GoalTracker(key, **options)
        made.append(tracker)
        return tracker

    yield make
    for tracker in made:
        tracker.close(timeout=2)
