"""How many requests go at once: :class:`goaltrack.retry.InFlightLimit` and the transports that
follow it, watched from the fake API's side (requests held by its latency overlap)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from goaltrack import GoalTracker
from goaltrack.retry import InFlightLimit
from goaltrack.testing.server import FakeAPIServer
from tests.support.keys import DATAFAST_KEY as KEY

# -- the rule ------------------------------------------------------------------------------------


def test_it_starts_at_four_and_grows_only_while_goals_wait() -> None:
    limit = InFlightLimit(32)
    assert (limit.start, limit.limit) == (4, 4)
    assert not limit.answered(waiting=False)  # light traffic: nothing to grow for
    assert limit.limit == 4
    for expected in range(5, 33):
        assert limit.answered(waiting=True)
        assert limit.limit == expected
    assert not limit.answered(waiting=True)  # the ceiling
    assert limit.limit == 32


def test_each_failure_halves_it_never_below_its_start() -> None:
    limit = InFlightLimit(32)
    for _ in range(28):
        limit.answered(waiting=True)
    seen = []
    for _ in range(5):
        limit.failed()
        seen.append(limit.limit)
    assert seen == [16, 8, 4, 4, 4]


def test_a_ceiling_below_four_is_the_start_too() -> None:
    limit = InFlightLimit(2)
    assert (limit.start, limit.limit) == (2, 2)
    assert not limit.answered(waiting=True)
    assert limit.admits(1)
    assert not limit.admits(2)


# -- what the API sees ---------------------------------------------------------------------------

LATENCY_S = 0.2
BURST = 160


def most_at_once(received: list[float], latency: float) -> int:
    """The most requests that arrived within one latency of each other: each is held that long
    by the fake API, so all of them were in flight together."""
    times = sorted(received)
    best = 0
    start = 0
    for end, at in enumerate(times):
        while at - times[start] >= latency * 0.9:
            start += 1
        best = max(best, end - start + 1)
    return best


@pytest.fixture
def trackers() -> Iterator[list[GoalTracker]]:
    made: list[GoalTracker] = []
    yield made
    for tracker in made:
        tracker.close(timeout=5)


@pytest.mark.parametrize("delivery_process", [None, False], ids=["courier", "threads"])
def test_a_backlog_gets_more_requests_in_flight_up_to_max_in_flight(
    fake_api: FakeAPIServer, trackers: list[GoalTracker], delivery_process: Any
) -> None:
    fake_api.set_faults(latency_ms=LATENCY_S * 1000)
    visitor = fake_api.add_pageview("datafast")
    tracker = GoalTracker(
        KEY,
        api_url=fake_api.api_url("datafast"),
        max_in_flight=12,
        delivery_process=delivery_process,
        flush_at_exit=False,
    )
    trackers.append(tracker)
    for i in range(BURST):
        tracker.track("purchase", visitor_id=visitor, metadata={"n": str(i)})
    # 4 at a time would take BURST / 4 * LATENCY_S = 8 s; 12 at a time under 3 s.
    assert tracker.flush(60)
    assert tracker.stats.delivered == BURST
    at_once = most_at_once([r["received_at_epoch"] for r in fake_api.requests], LATENCY_S)
    assert 4 < at_once <= 12, at_once


@pytest.mark.parametrize("delivery_process", [None, False], ids=["courier", "threads"])
def test_goals_tracked_one_by_one_keep_to_one_request_at_a_time(
    fake_api: FakeAPIServer, trackers: list[GoalTracker], delivery_process: Any
) -> None:
    fake_api.set_faults(latency_ms=50)
    visitor = fake_api.add_pageview("datafast")
    tracker = GoalTracker(
        KEY,
        api_url=fake_api.api_url("datafast"),
        delivery_process=delivery_process,
        flush_at_exit=False,
    )
    trackers.append(tracker)
    for i in range(10):
        tracker.track("signup", visitor_id=visitor, metadata={"n": str(i)})
        assert tracker.flush(10)
    assert most_at_once([r["received_at_epoch"] for r in fake_api.requests], 0.05) == 1
