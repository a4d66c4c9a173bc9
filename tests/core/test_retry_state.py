"""The retry rules on a clock the test drives: long outages in milliseconds.

:func:`goaltrack.retry.judge`, the breaker and the policy settle attempts exactly as the
transports call them (a due goal is admitted by the breaker, or waits for its next probe); the
API's answers are scripted. Also: :class:`~goaltrack.retry.RetryState` survives JSON, the
outbox's ``retry`` column and Celery's task keyword unchanged, the ``sync`` transport settles
through the same rules within its deadline, and the process's shared breakers. Last, single
rules on their own: the backoff, the circuit breaker's states and tickets, judge's count of
isolated failures.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import itertools
import json
import os
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from goaltrack.delivery import DeliveryResult, Endpoint, Outcome
from goaltrack.goals import Goal
from goaltrack.http_client import HttpClient
from goaltrack.providers import get_provider
from goaltrack.retry import (
    BreakerState,
    CircuitBreaker,
    RetryPolicy,
    RetryState,
    Ticket,
    Verdict,
    backoff_delay,
    judge,
    new_breaker,
    shared_breaker,
)
from goaltrack.testing.server import FakeAPIServer
from goaltrack.transports.base import Settlement
from goaltrack.transports.inline import SyncTransport
from goaltrack.transports.outbox.store import Identity, OutboxStore, connect
from tests.support.clock import FakeClock

DAY = 24 * 3600.0
DOWN = DeliveryResult(Outcome.RETRY, "connection refused")
HTTP_500 = DeliveryResult(Outcome.RETRY, "HTTP 500: boom", status=500, may_have_arrived=True)
HTTP_401 = DeliveryResult(Outcome.FAILED, "HTTP 401: Invalid API key", status=401)
DELIVERED = DeliveryResult(Outcome.DELIVERED, "delivered", status=200)
DATAFAST = get_provider("datafast")


@dataclasses.dataclass
class Settled:
    verdict: Verdict
    age: float
    """Seconds since the goal was tracked when it was settled."""


@dataclasses.dataclass
class Run:
    settled: dict[str, Settled]
    requests: list[tuple[float, str]]


def drive(
    names: list[str],
    answer: Callable[[str, float], DeliveryResult],
    policy: RetryPolicy,
    clock: FakeClock,
    tracked_at: Callable[[int], float] = lambda index: 0.0,
) -> Run:
    """Deliver *names* (the i-th tracked *tracked_at(i)* seconds from now) as a transport would,
    the clock jumping from one due time to the next: a goal is sent once it is due and the
    breaker admits it; one the breaker does not admit waits for its next probe (or, past
    ``refusal_give_up``, is judged without a request); each answer goes through judge()."""
    breaker = new_breaker(policy, "the API", rng=random.Random(7))
    start = clock.monotonic()
    created = {name: start + tracked_at(i) for i, name in enumerate(names)}
    waiting = [(created[name], seq, name, RetryState()) for seq, name in enumerate(names)]
    heapq.heapify(waiting)
    run = Run({}, [])
    seq = len(names)
    while waiting:
        due, _, name, state = heapq.heappop(waiting)
        clock.advance(max(0.0, due - clock.monotonic()))
        now = clock.monotonic()
        ticket = breaker.admit(now)
        if ticket is None and not breaker.refusal_expired(now):
            wake_at = breaker.wake_at
            assert wake_at is not None
            assert wake_at > now
            heapq.heappush(waiting, (wake_at, seq, name, state))
            seq += 1
            continue
        result = None
        if ticket is not None:
            result = answer(name, now)
            run.requests.append((now - start, name))
        age = now - created[name]
        verdict = judge(breaker, policy, state, ticket, result, now=now, age=age)
        if verdict.retry_in is None:
            run.settled[name] = Settled(verdict, age)
            continue
        heapq.heappush(waiting, (now + verdict.retry_in, seq, name, verdict.state))
        seq += 1
    return run


# -- outages, on the fake clock ----------------------------------------------------------------


def test_a_24_hour_outage_ends_goals_only_by_give_up_after() -> None:
    clock = FakeClock()
    policy = RetryPolicy(probe_interval_max=30.0)  # give_up_after: 24 h, max_retries: 10
    run = drive(["a", "b", "c"], lambda name, now: DOWN, policy, clock)
    assert set(run.settled) == {"a", "b", "c"}
    for settled in run.settled.values():
        final = settled.verdict.final
        assert final is not None
        # Past the day, each goal ends at its next attempt: one per probe, as the breaker
        # admits one request at a time to a down API.
        assert DAY <= settled.age <= DAY + 4 * policy.probe_interval_max
        assert "(give_up_after=86400 s)" in final.reason
        assert final.reason.endswith("last: connection refused")
        assert settled.verdict.state.strikes == 0  # the outage's failures counted nothing
    # One probe at a time reached the down API, at most one per 0.8 * probe_interval_max.
    assert len(run.requests) < DAY / (0.8 * policy.probe_interval_max) + 10
    assert clock.monotonic() - 10_000.0 >= DAY


def test_a_key_refused_for_an_hour_fails_the_held_goals_with_its_status_at_refusal_give_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    policy = RetryPolicy()  # refusal_give_up: 1 h, refused probes up to 60 s apart
    names = [f"g{i}" for i in range(5)]
    run = drive(names, lambda name, now: HTTP_401, policy, clock)
    assert set(run.settled) == set(names)
    first_refusal = run.requests[0][0]
    for settled in run.settled.values():
        final = settled.verdict.final
        assert final is not None
        assert final.status == 401
        assert "refusal_give_up" in final.reason
        assert "Invalid API key" in final.reason
        held_for = settled.age - first_refusal
        assert policy.refusal_give_up <= held_for <= policy.refusal_give_up + 60.0
    # Probes, not a request per goal per probe: about one a minute for an hour.
    assert len(run.requests) < policy.refusal_give_up / (0.8 * 60.0) + 15
    refused = [r for r in caplog.records if "refused the API key" in r.getMessage()]
    assert len(refused) == 1  # said once, not once per goal or per probe


def test_a_goal_failing_alone_spends_its_retries_but_an_outage_spends_none() -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_retries=3, backoff_base=1.0, backoff_max=60.0)

    # Alone: the API answers every other goal, "poison" fails with a 500 each time.
    def alone(name: str, now: float) -> DeliveryResult:
        return HTTP_500 if name == "poison" else DELIVERED

    names = ["poison", *[f"other{i}" for i in range(200)]]
    run = drive(names, alone, policy, FakeClock(), tracked_at=lambda i: i * 0.5)
    poison = run.settled["poison"].verdict
    assert poison.final is not None
    assert poison.final.reason.startswith(
        "gave up after 4 attempts, failed 4 times while the API answered other goals"
    )
    assert poison.state.may_have_arrived  # a 500 may have been recorded anyway

    # In an outage of 10 minutes every goal fails as often, and none spends a retry; then the
    # API is back and they are delivered.
    back_at = clock.monotonic() + 600.0

    def outage(name: str, now: float) -> DeliveryResult:
        return DOWN if now < back_at else DELIVERED

    run = drive(["x", "y", "z"], outage, policy, clock)
    for settled in run.settled.values():
        assert settled.verdict.final is None  # delivered
        assert settled.age >= 600.0
    assert max(s.verdict.state.failures for s in run.settled.values()) > policy.max_retries
    assert all(s.verdict.state.strikes == 0 for s in run.settled.values())


def test_each_long_outage_row_costs_milliseconds() -> None:
    """The point of the fake clock: the rows above simulate a day and an hour in well under a
    second of real time."""
    import time

    started = time.perf_counter()
    drive(["a"], lambda name, now: DOWN, RetryPolicy(probe_interval_max=30.0), FakeClock())
    drive(["a"], lambda name, now: HTTP_401, RetryPolicy(), FakeClock())
    assert time.perf_counter() - started < 1.0


# -- the state: a value that survives every place a transport keeps it ------------------------

STATES = [
    RetryState(),
    RetryState(failures=3),
    RetryState(failures=12, strikes=2, strike_mark="web-1:4242:7", may_have_arrived=True),
    RetryState(failures=1, strike_mark="hôte:1:abc:0f0f:0"),
]


@pytest.mark.parametrize("state", STATES)
def test_the_state_round_trips_through_json(state: RetryState) -> None:
    assert RetryState.from_json(state.to_json()) == state
    assert RetryState.from_dict(state.to_dict()) == state


def test_a_new_goals_state_is_an_empty_object() -> None:
    assert RetryState().to_json() == "{}"
    assert RetryState.from_json("{}") == RetryState.from_json(None) == RetryState()


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        '{"failures": -1}',
        '{"failures": true}',
        '{"failures": "2"}',
        '{"strike_mark": 3}',
        '{"may_have_arrived": 1}',
        '{"attempts": 2}',
        "not json",
    ],
)
def test_anything_else_is_refused_as_a_state(text: str) -> None:
    with pytest.raises(ValueError):
        RetryState.from_json(text)


def test_only_judge_makes_the_next_state() -> None:
    state = RetryState(failures=2, strikes=1, strike_mark="0")
    breaker = new_breaker(RetryPolicy(), "the API")
    ticket = breaker.admit(0.0)
    assert ticket is not None
    verdict = judge(breaker, RetryPolicy(), state, ticket, HTTP_500, now=0.0, age=1.0)
    assert state == RetryState(failures=2, strikes=1, strike_mark="0")  # untouched: frozen
    assert verdict.state == RetryState(
        failures=3, strikes=2, strike_mark="0", may_have_arrived=True
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.failures = 9  # type: ignore[misc]


@pytest.mark.parametrize("state", STATES)
def test_the_state_round_trips_through_the_outbox_column(tmp_path: Path, state: RetryState) -> None:
    store = OutboxStore(connect(tmp_path / "goals.sqlite3"), Identity("datafast", "t", "fp"))
    now = 1_700_000_000.0
    row = store.add('["datafast","x","v",null,null,null,null]', now)
    claimed, _ = store.claim("me:1:t:u", 30.0, now, 600.0, None)
    assert claimed is not None
    assert (claimed.id, RetryState.from_json(claimed.retry)) == (row, RetryState())
    store.reschedule(row, "me:1:t:u", due_at=now + 5, state=state, error="HTTP 500")
    assert store.claim("me:1:t:u", 30.0, now, 600.0, None)[0] is None  # not due yet
    again, _ = store.claim("me:1:t:u", 30.0, now + 5, 600.0, None)
    assert again is not None
    assert RetryState.from_json(again.retry) == state
    assert not again.taken_over  # its lease was released, not lost
    with contextlib.closing(sqlite3.connect(tmp_path / "goals.sqlite3")) as conn:
        (text,) = conn.execute("SELECT retry FROM goals").fetchone()
    assert text == state.to_json()  # one column holds it all


@pytest.mark.parametrize("state", STATES)
def test_the_state_round_trips_through_the_celery_task_keyword(state: RetryState) -> None:
    pytest.importorskip("celery")
    from goaltrack.transports import celery as celery_transport

    class Task:  # the bound task's retry(), as Celery calls it: records what it would send
        sent: dict[str, Any] = {}

        def retry(self, **options: Any) -> Exception:
            self.sent = options
            return RuntimeError("retry")

    task = Task()
    celery_transport._retry(task, {"name": "x"}, state, 2.5)
    assert task.sent["countdown"] == 2.5
    kwargs = json.loads(json.dumps(task.sent["kwargs"]))  # what the broker carries (JSON)
    assert list(kwargs) == ["state"]
    assert RetryState.from_dict(kwargs["state"]) == state


# -- sync mode: the same rules, within sync_deadline ------------------------------------------


def test_sync_mode_settles_through_judge_within_its_deadline() -> None:
    clock = FakeClock()
    failures: list[DeliveryResult] = []
    settlement = Settlement(on_failure=lambda goal, result: failures.append(result))
    url = "http://127.0.0.1:9"  # nothing listens: each attempt is refused at once
    endpoint = Endpoint(DATAFAST, "df_sync_clock_key_0123456789", url, None)
    transport = SyncTransport(
        endpoint,
        settlement,
        retry=RetryPolicy(backoff_base=0.5, probe_interval_max=1.0),
        sync_deadline=10.0,
        http=lambda: HttpClient(timeout=1.0, target_url=url),
        clock=clock,
    )
    try:
        assert transport.submit(Goal(DATAFAST, "signup", "v")) is False
    finally:
        transport.close()
    [failure] = failures
    assert failure.reason.startswith("gave up after ")
    assert "not delivered within sync_deadline (10 s)" in failure.reason
    assert 5.0 < clock.slept < 10.0  # retried, on the breaker's probes, up to the deadline
    assert settlement.snapshot().retried >= 5
    # The outage it saw is the process's: the next sync call to that destination finds the
    # breaker open (it waits for the probe instead of sending at once).
    shared = shared_breaker(endpoint, transport._retry)
    assert shared.breaker.wake_at is not None


def test_sync_mode_holds_nothing_for_a_refused_key_and_probes_it_one_call_at_a_time(
    fake_api: FakeAPIServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    failures: list[DeliveryResult] = []
    settlement = Settlement(on_failure=lambda goal, result: failures.append(result))
    url = fake_api.api_url("datafast")
    endpoint = Endpoint(DATAFAST, "df_sync_refused_key_0123456789", url, None)
    transport = SyncTransport(
        endpoint,
        settlement,
        retry=RetryPolicy(),
        http=lambda: HttpClient(timeout=2.0, target_url=url),
        clock=clock,
    )
    visitor = fake_api.add_pageview("datafast")
    fake_api.set_faults(refuse_key_for=60)  # 401 for its first half
    try:
        assert transport.submit(Goal(DATAFAST, "first", visitor)) is False
        assert transport.submit(Goal(DATAFAST, "second", visitor)) is False
        assert len(fake_api.requests) == 1  # the second failed without a request
        assert clock.slept == 0.0  # the call's final failure at once, nothing held
        fake_api.clear_faults()
        clock.advance(2.0)  # the first probe is due (2 s, jittered down)
        assert transport.submit(Goal(DATAFAST, "third", visitor)) is True
    finally:
        transport.close()
    assert [f.status for f in failures] == [401, 401]
    assert all(f.reason.startswith("HTTP 401") for f in failures)
    assert [g["name"] for g in fake_api.goals] == ["third"]
    errors = [r.getMessage() for r in caplog.records if "refused the API key" in r.getMessage()]
    assert len(errors) == 1
    assert "Goals fail with HTTP 401 until it accepts the key again" in errors[0]


# -- the process's breakers --------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() in a threaded process
def test_one_shared_breaker_per_destination_and_key_and_a_fresh_one_after_fork() -> None:
    policy = RetryPolicy()
    url = "http://127.0.0.1:9"
    a = Endpoint(DATAFAST, "df_breaker_key_A_0123456789", url, None)
    a_again = Endpoint(DATAFAST, "df_breaker_key_A_0123456789", url, None)
    b = Endpoint(DATAFAST, "df_breaker_key_B_0123456789", url, None)
    shared = shared_breaker(a, policy)
    assert shared_breaker(a_again, policy) is shared  # the same destination and key
    assert shared_breaker(b, policy) is not shared  # a refused key A must not hold key B's goals
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, b"1" if shared_breaker(a, policy) is not shared else b"0")
        os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"1"  # the child starts with its own view of the API


# -- single rules: the backoff, the circuit breaker, judge -------------------------------------

FAILED_503 = DeliveryResult(Outcome.RETRY, "HTTP 503", status=503)


def admitted(breaker: CircuitBreaker, now: float = 0.0) -> Ticket:
    ticket = breaker.admit(now)
    assert ticket is not None
    return ticket


def open_breaker(breaker: CircuitBreaker, now: float = 0.0) -> list[Ticket]:
    """Four workers send while it is closed; all four fail."""
    tickets = [breaker.admit(now) for _ in range(4)]
    assert all(t is not None for t in tickets)
    verdicts = [breaker.failed(t, FAILED_503, now) for t in tickets if t is not None]
    assert verdicts == [True, True, False, False]  # two look isolated, the third opens it
    return [t for t in tickets if t is not None]


def test_backoff_grows_exponentially_within_its_jitter_and_cap() -> None:
    rng = random.Random(1)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (10, 30.0)]:
        for _ in range(50):
            delay = backoff_delay(attempt, 0.5, 30.0, rng)
            assert ceiling / 2 <= delay <= ceiling


def test_a_retry_waits_what_retry_after_asks_within_backoff_max() -> None:
    # Updated with the single retry state: the sync transport's count-based delay_before_retry
    # is gone; every transport's delay is judge()'s.
    policy = RetryPolicy(max_retries=2, backoff_base=0.1, backoff_max=1.0)
    for asked, waited in [(0.75, 0.75), (4.0, 1.0)]:  # never longer than backoff_max
        breaker = CircuitBreaker()
        result = DeliveryResult(Outcome.RETRY, "429", status=429, retry_after=asked)
        verdict = judge(breaker, policy, RetryState(), admitted(breaker), result, now=0.0, age=0.0)
        assert verdict.retry_in == pytest.approx(waited, abs=0.01)
        assert verdict.state.failures == 1


def test_breaker_opens_after_three_failures_and_concurrent_ones_count_once() -> None:
    breaker = CircuitBreaker(probe_interval_max=1.0, rng=random.Random(3))
    open_breaker(breaker)
    assert breaker.state is BreakerState.OPEN
    assert breaker.epoch == 1
    # The fourth request was sent before it opened: its failure did not push the probe back.
    assert breaker.wake_at is not None
    assert 0.2 <= breaker.wake_at <= 0.25
    assert breaker.admit(0.1) is None


def test_a_late_success_of_an_earlier_request_does_not_end_a_run_of_failures() -> None:
    breaker = CircuitBreaker()
    earlier, first, second, third = (admitted(breaker) for _ in range(4))
    assert breaker.failed(first, FAILED_503, 0.0)
    assert breaker.failed(second, FAILED_503, 0.0)
    assert not breaker.succeeded(earlier, 0.0)  # sent before the failures began: stale
    assert not breaker.failed(third, FAILED_503, 0.0)  # the third failure in a row opens it
    assert breaker.state is BreakerState.OPEN


def test_a_late_success_of_a_request_sent_before_it_opened_does_not_close_it() -> None:
    breaker = CircuitBreaker()
    sent_before = admitted(breaker)
    open_breaker(breaker)
    assert not breaker.succeeded(sent_before, 0.0)  # answered before the outage, processed after
    assert breaker.state is BreakerState.OPEN


def test_breaker_admits_exactly_one_probe_and_its_success_closes_it() -> None:
    breaker = CircuitBreaker(probe_interval_max=1.0, rng=random.Random(3))
    open_breaker(breaker)
    probe = breaker.admit(0.3)
    assert probe is not None
    assert probe.probe
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.admit(0.31) is None  # one probe in flight, no other request
    assert breaker.succeeded(probe, 1.0)  # closed by it
    assert breaker.state is BreakerState.CLOSED
    assert breaker.wake_at is None
    after = breaker.admit(0.32)
    assert after is not None
    assert not after.probe


def test_failed_probes_grow_the_interval_up_to_probe_interval_max() -> None:
    breaker = CircuitBreaker(probe_interval_max=1.0, rng=random.Random(3))
    open_breaker(breaker)
    now, waits = 0.0, []
    for _ in range(8):
        assert breaker.wake_at is not None
        now = breaker.wake_at
        probe = breaker.admit(now)
        assert probe is not None
        assert not breaker.failed(probe, FAILED_503, now)  # a probe's failure is the outage's
        assert breaker.wake_at is not None
        waits.append(breaker.wake_at - now)
    assert waits[0] == pytest.approx(0.5, rel=0.2)
    assert all(a <= b * 1.26 for a, b in itertools.pairwise(waits))  # growing
    assert all(0.8 <= w <= 1.0 for w in waits[-4:])  # capped, jittered down by at most 20%


def test_an_unanswered_probe_lets_the_next_one_go_after_the_interval() -> None:
    # A blackholed API holds the probe until the request's timeout; the breaker does not wait
    # that long to probe again, and the old probe's late failure changes nothing.
    breaker = CircuitBreaker(probe_interval_max=1.0, rng=random.Random(3))
    open_breaker(breaker)
    first = breaker.admit(0.3)
    assert first is not None
    assert breaker.admit(0.35) is None
    assert breaker.wake_at is not None
    second = breaker.admit(breaker.wake_at)
    assert second is not None
    assert second.probe != first.probe
    before = breaker.wake_at
    assert not breaker.failed(first, FAILED_503, 5.3)  # the first probe timing out at last
    assert breaker.wake_at == before
    assert breaker.succeeded(second, 1.0)


def test_retry_after_opens_the_breaker_until_then_and_wins_over_the_interval() -> None:
    breaker = CircuitBreaker(probe_interval_max=1.0)
    ticket = breaker.admit(10.0)
    assert ticket is not None
    limited = DeliveryResult(Outcome.RETRY, "HTTP 429", status=429, retry_after=30.0)
    assert not breaker.failed(ticket, limited, 10.0)
    assert breaker.state is BreakerState.OPEN
    assert breaker.wake_at == 40.0
    assert breaker.admit(39.9) is None
    assert breaker.admit(40.0) is not None


def test_a_released_probe_ticket_lets_the_next_probe_go_at_once() -> None:
    breaker = CircuitBreaker(probe_interval_max=1.0)
    open_breaker(breaker)
    probe = breaker.admit(1.0)
    assert probe is not None
    breaker.release(probe)  # nothing was due: no request went out on it
    assert breaker.state is BreakerState.OPEN
    assert breaker.admit(1.0) is not None


def test_failures_of_an_outage_never_count_against_max_retries() -> None:
    # Updated with the single retry state: through judge(), which returns the next state.
    policy = RetryPolicy(max_retries=2, backoff_base=0.1, backoff_max=1.0, give_up_after=3600)
    breaker = CircuitBreaker()
    state = RetryState()
    # Goal A fails alone twice while the API answers others: tentative, then confirmed.
    for _ in range(2):
        verdict = judge(breaker, policy, state, admitted(breaker), FAILED_503, now=0.0, age=1.0)
        assert verdict.retry_in is not None
        state = verdict.state
        assert not breaker.succeeded(admitted(breaker), 0.0)  # others delivered meanwhile
    assert (state.failures, state.strikes) == (2, 1)
    # Then an outage opens the breaker: A's pending strike is not confirmed, and any number
    # of failures while it is open count nothing.
    open_breaker(breaker)
    for now in range(1, 50):
        ticket = breaker.admit(float(now)) or Ticket(breaker.epoch)
        verdict = judge(breaker, policy, state, ticket, FAILED_503, now=float(now), age=float(now))
        assert verdict.retry_in is not None
        state = verdict.state
    assert (state.failures, state.strikes) == (51, 1)
    # Past the time budget the next transient failure ends it.
    verdict = judge(breaker, policy, state, Ticket(breaker.epoch), FAILED_503, now=60.0, age=3600.0)
    assert verdict.retry_in is None
    assert verdict.final is not None
    assert verdict.final.reason.startswith("gave up after 52 attempts, undelivered for 3600.0 s")


def test_a_goal_failing_alone_is_given_up_after_max_retries_isolated_failures() -> None:
    policy = RetryPolicy(max_retries=2, backoff_base=0.1, backoff_max=1.0)
    breaker = CircuitBreaker()
    state = RetryState()
    verdicts = []
    for _ in range(3):
        verdict = judge(breaker, policy, state, admitted(breaker), FAILED_503, now=0.0, age=1.0)
        state = verdict.state
        verdicts.append(verdict)
        assert not breaker.succeeded(admitted(breaker), 0.0)  # the API answers others
    assert verdicts[0].retry_in is not None
    assert verdicts[1].retry_in is not None
    assert verdicts[2].final is not None  # 3 attempts = 1 + max_retries, every one isolated
    reason = verdicts[2].final.reason
    assert reason.startswith("gave up after 3 attempts, failed 3 times while the API answered")
