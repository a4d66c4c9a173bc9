"""How soon goals held by an outage arrive once the API is back, and what is said about it.

Over real HTTP against a loopback API (:mod:`tests.support.hostile_api`) whose listening socket is
closed for 6 s (connections are refused), then opened again on the same port. Each attempt is
seen in the tracker's own debug log (a refused connection never reaches the server): once the
circuit breaker is open, attempts go one at a time and at most ``probe_interval_max`` apart
whether 1, 2 or 100 goals are held, and every held goal arrives within about
``probe_interval_max`` of the API accepting connections again (before, a lone goal waited out
its own growing backoff: 4-5 s). The all-clear is a WARNING when the outage's alarm was.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import random
import time

import pytest

from goaltrack import GoalTracker
from goaltrack.delivery import DeliveryResult, Outcome
from goaltrack.retry import CircuitBreaker, RetryPolicy, RetryState, judge
from tests.support.hostile_api import VISITOR, HostileAPI
from tests.support.keys import DATAFAST_KEY as KEY
from tests.support.waiting import wait_until

DOWN_FOR = 6.0
PROBE_INTERVAL_MAX = 1.0  # the default
# What a held goal may take beyond probe_interval_max once the API accepts connections again:
# the probe's own request, then the other held goals' (measured: 0.0-0.1 s on a quiet machine;
# the rest is room for a loaded one).
DELIVERY_SLACK = 1.5
# How much later than its due time an attempt may go on a loaded machine.
GAP_SLACK = 0.35


@dataclasses.dataclass
class Outage:
    down_at: float
    up_at: float
    attempts: dict[int, list[float]]
    """Per tracker, when each attempt failed (``time.monotonic()``), in order."""
    arrived: dict[str, float]
    """Per held goal, when the API received it with a 200, after ``up_at``."""
    records: list[logging.LogRecord]


def monotonic(record: logging.LogRecord) -> float:
    """When *record* was made, as ``time.monotonic()``."""
    return record.created - (time.time() - time.monotonic())


def run_outage(
    api: HostileAPI, caplog: pytest.LogCaptureFixture, goals_per_tracker: list[int]
) -> Outage:
    """Each tracker tracks its goals while the API refuses connections for ``DOWN_FOR`` s."""
    with caplog.at_level(logging.DEBUG, logger="goaltrack"):
        trackers = [
            GoalTracker(KEY, api_url=api.url, flush_at_exit=False, debug=True)
            for _ in goals_per_tracker
        ]
        try:
            for t, tracker in enumerate(trackers):
                tracker.track("warmup", visitor_id=VISITOR, metadata={"n": f"warmup-{t}"})
                assert tracker.flush(10)  # its keep-alive connection is closed by stop() too
            api.stop()
            down_at = time.monotonic()
            for t, (tracker, count) in enumerate(zip(trackers, goals_per_tracker, strict=True)):
                for g in range(count):
                    tracker.track(f"held_{t}", visitor_id=VISITOR, metadata={"n": f"{t}-{g}"})
            wait_until(lambda: time.monotonic() - down_at >= DOWN_FOR, 15, "the outage")
            api.start()
            up_at = time.monotonic()
            held = {f"{t}-{g}" for t, count in enumerate(goals_per_tracker) for g in range(count)}
            wait_until(lambda: held <= set(api.delivered), 20, "every held goal delivered")
            for tracker in trackers:
                assert tracker.flush(10)
                assert tracker.stats.failed == tracker.stats.dropped == 0
            records = list(caplog.records)
        finally:
            for tracker in trackers:
                tracker.close(5)
    attempts: dict[int, list[float]] = {t: [] for t in range(len(trackers))}
    for record in records:
        message = record.getMessage()
        if message.startswith("goaltrack debug: retrying"):
            for t in attempts:
                if f"'held_{t}'" in message:
                    attempts[t].append(monotonic(record))
    arrived = {
        str(seen.goal["metadata"]["n"]): seen.at  # type: ignore[index]
        for seen in api.requests
        if seen.status == 200 and seen.at >= up_at
    }
    outage = Outage(down_at, up_at, attempts, arrived, records)
    late = sorted(at - up_at for at in arrived.values())
    print(
        f"\n{goals_per_tracker} held: arrived {late[0]:.2f}-{late[-1]:.2f} s after the API "
        "was back; attempts while down (s after it went down):"
    )
    for t, ats in attempts.items():
        print(f"  tracker {t}: {[round(at - down_at, 2) for at in ats]}")
    return outage


def opened_at(outage: Outage) -> float:
    """When the (one) tracker's breaker opened: its outage WARNING."""
    warnings = [r for r in outage.records if "is not answering" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    return monotonic(warnings[0])


def check_probing(attempts: list[float], opened: float, up_at: float) -> None:
    """Once open: no two attempts at once, none more than probe_interval_max apart, and
    about one per probe_interval_max (after the first probes, 0.25 s then 0.5 s apart)."""
    while_open = [at for at in attempts if opened <= at < up_at]
    assert while_open, "no attempt while the breaker was open"
    gaps = [b - a for a, b in itertools.pairwise([opened, *while_open])]
    assert max(gaps) <= PROBE_INTERVAL_MAX + GAP_SLACK, gaps
    assert up_at - while_open[-1] <= PROBE_INTERVAL_MAX + GAP_SLACK
    # A failure of a request sent before the breaker opened may land just after it.
    probes = [at for at in while_open if at > opened + 0.1]
    assert min(b - a for a, b in itertools.pairwise(probes)) >= 0.1, gaps
    # At most one per 0.8 s (the interval jittered down by 20%), plus the ramp-up's extra two.
    # Counted from 0.1 s after it opened: the requests sent before it opened fail just after
    # (a 100-goal backlog had its first four in flight: the limit grows only on answers).
    assert len(probes) <= (up_at - opened) / (0.8 * PROBE_INTERVAL_MAX) + 3, gaps


def check_arrival(outage: Outage, held: int, *, drain: float = 0.0) -> None:
    """Every held goal arrived within a probe interval (and *drain* s for a backlog)."""
    late = sorted(at - outage.up_at for at in outage.arrived.values())
    assert len(late) == held
    assert late[0] <= PROBE_INTERVAL_MAX + DELIVERY_SLACK, late
    assert late[-1] <= PROBE_INTERVAL_MAX + DELIVERY_SLACK + drain, late


@pytest.mark.slow
def test_a_lone_held_goal_arrives_within_a_probe_interval_of_the_api_coming_back(
    api: HostileAPI, caplog: pytest.LogCaptureFixture
) -> None:
    outage = run_outage(api, caplog, [1])
    check_arrival(outage, 1)
    check_probing(outage.attempts[0], opened_at(outage), outage.up_at)
    # The alarm and the all-clear pair up: both WARNING, the latter with the outage's length.
    alarm = [r for r in outage.records if "is not answering" in r.getMessage()]
    back = [r for r in outage.records if "is back after" in r.getMessage()]
    assert len(back) == 1
    assert alarm[0].levelno == back[0].levelno == logging.WARNING
    message = back[0].getMessage()
    assert "delivering the 1 goal(s) held" in message, message
    down_for = float(message.split("is back after ")[1].split(" s")[0])
    assert DOWN_FOR - 0.5 <= down_for <= outage.up_at - outage.down_at + 2.0, message


@pytest.mark.slow
def test_two_held_goals_in_one_tracker_arrive_within_a_probe_interval(
    api: HostileAPI, caplog: pytest.LogCaptureFixture
) -> None:
    outage = run_outage(api, caplog, [2])
    check_arrival(outage, 2)
    check_probing(outage.attempts[0], opened_at(outage), outage.up_at)


@pytest.mark.slow
def test_two_trackers_holding_a_goal_each_both_probe_and_deliver_within_an_interval(
    api: HostileAPI, caplog: pytest.LogCaptureFixture
) -> None:
    # Like two gunicorn workers: each has its own breaker, each probes with the goal it holds.
    outage = run_outage(api, caplog, [1, 1])
    check_arrival(outage, 2)
    for t in (0, 1):
        # A lone goal's breaker opens at its third failure in a row.
        assert len(outage.attempts[t]) >= 3
        check_probing(outage.attempts[t], outage.attempts[t][2], outage.up_at)


@pytest.mark.slow
def test_a_hundred_held_goals_are_probed_one_at_a_time_and_all_arrive(
    api: HostileAPI, caplog: pytest.LogCaptureFixture
) -> None:
    outage = run_outage(api, caplog, [100])
    # The backlog drains from 4 requests at a time, more as answers come: about 1 s here when
    # quiet.
    check_arrival(outage, 100, drain=6.0)
    check_probing(outage.attempts[0], opened_at(outage), outage.up_at)


# -- the rules behind it, one call at a time ----------------------------------------------------

RETRY_503 = DeliveryResult(Outcome.RETRY, "HTTP 503: down", status=503)
REFUSED = DeliveryResult(Outcome.RETRY, "connection refused")


def test_a_goal_failing_while_the_breaker_is_open_is_due_at_the_next_probe() -> None:
    """However many times it failed before, its own backoff does not outlast the outage."""
    policy = RetryPolicy()
    breaker = CircuitBreaker(policy.probe_interval_max, random.Random(7))
    goal = RetryState(failures=9)  # its own backoff would be 64-128 s, capped at 30-60 s
    now = 100.0
    for _ in range(CircuitBreaker.FAILURES_TO_OPEN):
        ticket = breaker.admit(now)
        assert ticket is not None
        verdict = judge(breaker, policy, goal, ticket, REFUSED, now=now, age=10.0)
        goal = verdict.state
    assert breaker.wake_at is not None
    assert verdict.retry_in == pytest.approx(breaker.wake_at - now)
    strikes = goal.strikes  # its second failure confirmed its first as its own: the API was up
    for _ in range(10):  # probe after probe fails: due with each next probe, <= 1 s apart
        now = breaker.wake_at
        ticket = breaker.admit(now)
        assert ticket is not None
        assert ticket.probe
        verdict = judge(breaker, policy, goal, ticket, REFUSED, now=now, age=10.0)
        goal = verdict.state
        assert verdict.retry_in is not None
        assert verdict.retry_in == pytest.approx(breaker.wake_at - now)
        assert 0.0 < verdict.retry_in <= policy.probe_interval_max
    assert goal.strikes == strikes  # the outage's failures count nothing
    assert goal.failures == 9 + CircuitBreaker.FAILURES_TO_OPEN + 10


def test_a_retry_after_still_delays_the_goal_up_to_backoff_max() -> None:
    policy = RetryPolicy(backoff_max=30.0)
    breaker = CircuitBreaker(policy.probe_interval_max, random.Random(7))
    ticket = breaker.admit(0.0)
    assert ticket is not None
    asked = dataclasses.replace(RETRY_503, retry_after=600.0)
    verdict = judge(breaker, policy, RetryState(), ticket, asked, now=0.0, age=0.0)
    assert verdict.retry_in == pytest.approx(30.0)


def test_an_isolated_failure_keeps_the_goals_own_backoff() -> None:
    policy = RetryPolicy()
    breaker = CircuitBreaker(policy.probe_interval_max, random.Random(7))
    goal = RetryState(failures=5)
    ticket = breaker.admit(0.0)
    assert ticket is not None
    verdict = judge(breaker, policy, goal, ticket, RETRY_503, now=0.0, age=0.0)
    # Its sixth failure: half to all of 0.5 * 2**5 s.
    assert verdict.retry_in is not None
    assert 8.0 <= verdict.retry_in <= 16.0
    assert breaker.wake_at is None  # one failure: still closed


def test_the_all_clear_is_info_after_an_outage_that_was_not_announced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A flapping API's second outage within a minute is not announced: its end is an INFO."""
    held = [3]
    breaker = CircuitBreaker(1.0, random.Random(7), held=lambda: held[0], name="the API")
    now = 0.0
    with caplog.at_level(logging.INFO, logger="goaltrack"):
        for _ in range(2):
            for _ in range(CircuitBreaker.FAILURES_TO_OPEN):
                ticket = breaker.admit(now)
                assert ticket is not None
                breaker.failed(ticket, REFUSED, now)
                now += 0.1
            assert breaker.wake_at is not None
            now = breaker.wake_at
            ticket = breaker.admit(now)
            assert ticket is not None
            assert breaker.succeeded(ticket, now)
            now += 1.0
    levels = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in levels] == [
        logging.WARNING,  # the first outage
        logging.WARNING,  # its end, paired with it
        logging.INFO,  # the second outage's end: its start was only counted
    ], levels
    assert "delivering the 3 goal(s) held" in levels[1][1]


def test_the_all_clear_after_a_refused_key_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """The refusal's ERROR is paired too: the line a log showing warnings needs to see."""
    breaker = CircuitBreaker(1.0, random.Random(7), held=lambda: 5, name="the API")
    refused = DeliveryResult(Outcome.FAILED, "HTTP 401: Invalid API key", status=401)
    with caplog.at_level(logging.INFO, logger="goaltrack"):
        ticket = breaker.admit(10.0)
        assert ticket is not None
        breaker.refused(ticket, refused, 10.0)
        assert breaker.wake_at is not None
        ticket = breaker.admit(breaker.wake_at)
        assert ticket is not None
        assert breaker.succeeded(ticket, 14.0)
    levels = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in levels] == [logging.ERROR, logging.WARNING], levels
    assert levels[1][1] == (
        "goaltrack: the API accepts the API key again after 4.0 s; delivering the 5 goal(s) held"
    )


def test_a_goal_that_probed_a_long_outage_still_gets_a_backoff() -> None:
    """A goal probing a down API fails about once a second: after 17 minutes its failures
    passed 1024, where ``2.0 ** failures`` overflows; its backoff stays capped instead."""
    policy = RetryPolicy()
    breaker = CircuitBreaker(policy.probe_interval_max, random.Random(7))
    goal = RetryState(failures=5000)
    ticket = breaker.admit(0.0)
    assert ticket is not None
    verdict = judge(breaker, policy, goal, ticket, RETRY_503, now=0.0, age=1000.0)
    assert verdict.retry_in is not None
    assert policy.backoff_max / 2 <= verdict.retry_in <= policy.backoff_max
