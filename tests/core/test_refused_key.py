"""A refused key (401/403) is an outage of the account, not a fault of each goal.

Over real HTTP against a loopback API (:mod:`tests.support.hostile_api`) that refuses the key for a
while (401, then 403), while goals keep being tracked: the circuit breaker opens, about one
request per probe interval reaches the API, one ERROR says what to check, no goal is lost, and
delivery resumes once a probe is accepted. 400 and 404 stay final per goal.
"""

from __future__ import annotations

import logging
import time

import pytest

from goaltrack import GoalTracker
from goaltrack.retry import CircuitBreaker
from goaltrack.testing.server import FakeAPIServer
from tests.support.hostile_api import VISITOR, HostileAPI, Seen, error, refuse_key_for
from tests.support.hostile_api import make_tracker as make
from tests.support.keys import DATAFAST_KEY as KEY


@pytest.mark.slow
def test_a_refused_key_holds_goals_probes_slowly_and_delivers_all_when_it_works_again(
    api: HostileAPI, caplog: pytest.LogCaptureFixture
) -> None:
    refused_for = 8.0
    api.behaviour = refuse_key_for(refused_for)
    tracker = make(api)
    tracked = 0
    with caplog.at_level(logging.INFO, logger="goaltrack"):
        try:
            began = time.monotonic()
            # About 300 goals a second while the key is refused, then a little after.
            while time.monotonic() - began < refused_for + 1:
                for _ in range(30):
                    tracker.track("signup", visitor_id=VISITOR, metadata={"n": str(tracked)})
                    tracked += 1
                time.sleep(0.1)
            first_request = api.requests[0].at
            key_back = first_request + refused_for
            assert tracker.flush(60), "every goal delivered"
            stats = tracker.stats
        finally:
            tracker.close(5)
    refused = [r for r in api.requests if r.status in (401, 403)]
    assert {r.status for r in refused} == {401, 403}
    # While refused: the first answers of the workers in flight, then one probe per interval
    # (2 s doubling): nowhere near one request per goal.
    assert len(refused) <= 4 + refused_for / 1.6 + 1, len(refused)
    assert api.requests_between(first_request, key_back) <= 4 + refused_for / 1.6 + 1
    # Nothing lost, nothing failed, each goal once.
    assert sorted(api.delivered, key=int) == [str(n) for n in range(tracked)]
    assert (stats.delivered, stats.failed, stats.dropped) == (tracked, 0, 0)
    # Delivery resumes at the next probe: within the interval reached (8 s), plus slack.
    first_delivery_after = min(r.at for r in api.requests if r.status == 200)
    assert first_delivery_after - key_back < 8.0 + 3.0
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and api.url in r.getMessage()]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    message = errors[0].getMessage()
    assert "refused the API key" in message
    assert "HTTP 401" in message
    assert "website id" in message
    assert "3600 s" in message
    back = [r for r in caplog.records if "accepts the API key again" in r.getMessage()]
    assert len(back) == 1


def test_400_and_404_stay_final_per_goal(api: HostileAPI, caplog: pytest.LogCaptureFixture) -> None:
    def behaviour(seen: Seen) -> tuple[int, dict[str, str], bytes] | None:
        name = seen.goal.get("name")
        if name == "unknown_visitor":
            return error(404, "Visitor not found")
        if name == "bad_goal":
            return error(400, "Invalid goal")
        return None

    api.behaviour = behaviour
    failed: list[int | None] = []
    tracker = make(api, on_failure=lambda goal, result: failed.append(result.status))
    try:
        with caplog.at_level(logging.WARNING, logger="goaltrack"):
            for name in ("unknown_visitor", "bad_goal", "fine"):
                tracker.track(name, visitor_id=VISITOR, metadata={"n": name})
            assert tracker.flush(10)
    finally:
        tracker.close(5)
    assert sorted(s for s in failed if s is not None) == [400, 404]
    assert len(api.requests) == 3  # one each, never retried
    assert api.delivered == ["fine"]
    assert not any("refused the API key" in r.getMessage() for r in caplog.records)


def test_the_breaker_grows_refused_probe_intervals_to_its_cap() -> None:
    from goaltrack.delivery import DeliveryResult, Outcome

    breaker = CircuitBreaker(1.0, refused_interval_max=8.0)
    refusal = DeliveryResult(Outcome.FAILED, "HTTP 401: no", status=401)
    now = 100.0
    ticket = breaker.admit(now)
    assert ticket is not None
    breaker.refused(ticket, refusal, now)
    gaps = []
    for _ in range(6):
        wake = breaker.wake_at
        assert wake is not None
        assert breaker.admit(wake - 0.01) is None  # nothing before the probe is due
        gaps.append(wake - now)
        now = wake
        probe = breaker.admit(now)
        assert probe is not None
        assert probe.probe
        breaker.refused(probe, refusal, now)
    assert 1.6 <= gaps[0] <= 2.0
    assert 3.2 <= gaps[1] <= 4.0  # doubling
    assert all(6.4 <= gap <= 8.0 for gap in gaps[2:])  # then capped by refused_interval_max
    assert not breaker.refusal_expired(now)
    assert breaker.refusal_expired(100.0 + breaker.refusal_give_up)


@pytest.mark.slow
def test_the_fake_apis_refused_key_window_is_held_through_and_delivered_after(
    fake_api: FakeAPIServer, caplog: pytest.LogCaptureFixture
) -> None:
    visitor = fake_api.add_pageview("datafast")
    fake_api.set_faults(refuse_key_for=3)  # 401 for 1.5 s, then 403 for 1.5 s
    tracker = GoalTracker(KEY, api_url=fake_api.api_url("datafast"), flush_at_exit=False)
    try:
        with caplog.at_level(logging.INFO, logger="goaltrack"):
            for n in range(30):
                tracker.track("signup", visitor_id=visitor, metadata={"id": str(n)})
            assert tracker.flush(20)
            stats = tracker.stats
    finally:
        tracker.close(5)
    statuses = [r["status"] for r in fake_api.requests]
    refused = [s for s in statuses if s in (401, 403)]
    assert 1 <= len(refused) <= 4 + 3  # the first answers, then a probe 2 s and 4 s later
    assert statuses.count(200) == 30
    assert (stats.delivered, stats.failed) == (30, 0)
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1


def test_the_refusal_options_of_the_tracker_reach_its_breaker(api: HostileAPI) -> None:
    """``refused_probe_interval_max`` and ``refusal_give_up`` are tracker options: a key refused
    for longer than ``refusal_give_up`` fails the goals it holds, with the status."""
    api.behaviour = lambda seen: error(401, "Invalid API key")
    failures: list[tuple[int | None, str]] = []
    tracker = make(
        api,
        refusal_give_up=1.5,
        refused_probe_interval_max=0.5,
        on_failure=lambda goal, result: failures.append((result.status, result.reason)),
    )
    try:
        for n in range(5):
            tracker.track("signup", visitor_id=VISITOR, metadata={"n": str(n)})
        assert tracker.flush(30), "the held goals settle once the refusal is older than 1.5 s"
        stats = tracker.stats
    finally:
        tracker.close(5)
    assert (stats.failed, stats.delivered) == (5, 0)
    assert {status for status, _ in failures} == {401}
    assert all("refusal_give_up" in reason for _, reason in failures)
    assert KEY not in repr(failures)
