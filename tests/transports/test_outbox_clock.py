"""The outbox transport on a clock the test drives, against the fake API over real HTTP.

Its schedules, leases, ages and breaker read the transport's clock: an hour past ``max_age`` or a
lease's expiry costs the test nothing. Its workers are real threads; each test waits on a
condition (the transport's next housekeeping, a settled goal), never a sleep.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from goaltrack.delivery import Endpoint
from goaltrack.goals import Goal
from goaltrack.http_client import HttpClient
from goaltrack.providers import get_provider
from goaltrack.retry import RetryPolicy, RetryState
from goaltrack.testing.server import FakeAPIServer
from goaltrack.transports.base import Settlement
from goaltrack.transports.outbox import Outbox, OutboxTransport
from goaltrack.transports.outbox.store import OutboxStore, connect, encode_goal
from goaltrack.transports.outbox.transport import identity_of
from tests.support.clock import FakeClock
from tests.support.waiting import wait_until

KEY = "df_secret_outbox_clock_key_123"
DATAFAST = get_provider("datafast")
HOUR = 3600.0


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "goals.sqlite3")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_outbox(
    fake_api: FakeAPIServer, path: str, clock: FakeClock
) -> Iterator[Callable[..., OutboxTransport]]:
    made: list[OutboxTransport] = []

    def make(**options: object) -> OutboxTransport:
        endpoint = Endpoint(DATAFAST, KEY, fake_api.api_url("datafast"), None)
        transport = OutboxTransport(
            path,
            endpoint,
            Settlement(),
            retry=RetryPolicy(backoff_base=0.05, backoff_max=0.2),
            http=lambda: HttpClient(timeout=2.0, target_url=endpoint.url),
            flush_at_exit=False,
            max_in_flight=1,
            clock=clock,
            **options,  # type: ignore[arg-type]
        )
        made.append(transport)
        return transport

    yield make
    for transport in made:
        transport.close(timeout=0)
        for thread in transport._threads:
            thread.join(5)


def advance_and_wait_for_a_turn(
    transport: OutboxTransport, clock: FakeClock, seconds: float
) -> None:
    """Move the clock, then wait until a worker has run two housekeeping turns past it (so one
    whole turn, claim included, ran on the new time)."""
    for _ in range(2):
        clock.advance(seconds)
        moved_to = clock.monotonic()
        with transport._cond:
            transport._cond.notify_all()

        def turned(at: float = moved_to) -> bool:
            return transport._next_lease_check > at

        wait_until(turned, 5, "a worker's turn")
        seconds = 1.0  # LEASE_CHECK_INTERVAL: the next turn's housekeeping is due


def retry_column(path: str) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return [text for (text,) in conn.execute("SELECT retry FROM goals")]


def test_a_goal_still_failing_at_max_age_is_dead_lettered_then_not_before(
    fake_api: FakeAPIServer,
    make_outbox: Callable[..., OutboxTransport],
    clock: FakeClock,
    path: str,
) -> None:
    visitor = fake_api.add_pageview("datafast")
    fake_api.stop()
    try:
        outbox = make_outbox(max_age=HOUR)
        assert outbox.submit(Goal(DATAFAST, "signup", visitor))
        wait_until(lambda: outbox.stats.retried >= 1, 5, "a first failed attempt")
        [state] = retry_column(path)
        assert RetryState.from_json(state).failures >= 1  # its state waits with it in the file
        advance_and_wait_for_a_turn(outbox, clock, HOUR - 60)
        assert outbox.stats.failed == 0  # younger than max_age: still waiting
        assert len(retry_column(path)) == 1
        clock.advance(61)
        with outbox._cond:
            outbox._cond.notify_all()
        wait_until(lambda: outbox.stats.failed == 1, 5, "the goal dead-lettered")
    finally:
        fake_api.start()
    assert retry_column(path) == []
    with Outbox(path) as admin:
        [letter] = admin.dead_letters()
    # The age check, or its last attempt's verdict (the outbox's time budget is max_age):
    # whichever came first on the worker's turn.
    assert "older than max_age (3600 s)" in letter.reason or "(give_up_after=3600 s)" in (
        letter.reason
    )
    assert fake_api.goals == []


def test_a_lease_of_a_dead_owner_is_taken_over_when_it_expires(
    fake_api: FakeAPIServer,
    make_outbox: Callable[..., OutboxTransport],
    clock: FakeClock,
    path: str,
) -> None:
    visitor = fake_api.add_pageview("datafast")
    goal = Goal(DATAFAST, "purchase", visitor, metadata={"id": "leased"})
    endpoint = Endpoint(DATAFAST, KEY, fake_api.api_url("datafast"), None)
    # Another host's process claimed the goal, may have sent it, and died: its lease runs on.
    store = OutboxStore(connect(path), identity_of(endpoint))
    store.add(encode_goal(goal), clock.wall())
    store.conn.execute(
        "UPDATE goals SET lease_owner = 'otherhost:123:456:abcd', lease_until = ?",
        (clock.wall() + 30.0,),
    )
    store.close()
    outbox = make_outbox()
    advance_and_wait_for_a_turn(outbox, clock, 10.0)  # 11 s of its 30
    assert fake_api.requests == []  # not while the lease runs
    clock.advance(20.0)  # past its expiry
    with outbox._cond:
        outbox._cond.notify_all()
    wait_until(lambda: outbox.stats.delivered == 1, 5, "the goal delivered")
    assert outbox.stats.possible_duplicates == 1  # the dead owner may have sent it
    assert [g["metadata"] for g in fake_api.goals] == [{"id": "leased"}]
    assert retry_column(path) == []
