"""Payments through the outbox and the sync transport: the same machinery as goals, against the
fake API over real HTTP; what differs is the count of duplicates (a payment's is exact)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from decimal import Decimal

from goaltrack import GoalTracker
from goaltrack.items import decode
from goaltrack.testing.server import FakeAPIServer
from tests.support.keys import DATAFAST_KEY
from tests.support.waiting import wait_until


def test_the_outbox_stores_a_payment_and_delivers_it(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker], outbox_path: str
) -> None:
    visitor = fake_api.add_pageview("datafast")
    fake_api.set_faults(down_for=60)  # nothing leaves: the payment waits in the file
    tracker = make_tracker()
    assert tracker.track_payment(Decimal("42.00"), "EUR", "ch_outbox", visitor_id=visitor)
    with sqlite3.connect(outbox_path) as db:
        [(text,)] = db.execute("SELECT goal FROM goals").fetchall()
    stored = decode(text)
    assert (stored.kind, stored.label) == ("payment", "payment 'ch_outbox' (42 EUR)")
    tracker.close(0.5)
    fake_api.clear_faults()
    again = make_tracker()  # a new process's tracker, on the same file
    assert again.track_payment(1, "EUR", "ch_next", visitor_id=visitor)  # starts its worker
    assert again.flush(10)
    payments = fake_api.wait_for_payments(2, timeout=10)
    [payment] = [p for p in payments if p["transaction_id"] == "ch_outbox"]
    assert (payment["transaction_id"], payment["amount"], payment["visitor_id"]) == (
        "ch_outbox",
        42,
        visitor,
    )
    wait_until(lambda: again.stats.payments.delivered == 2, timeout=10)


def test_a_resend_after_a_lost_answer_is_a_duplicate_not_a_possible_one(
    fake_api: FakeAPIServer,
) -> None:
    """The API recorded the payment but its answer never came (a trickled body, past the
    timeout): the retry is answered "duplicate", counted as delivered, and nothing else."""
    visitor = fake_api.add_pageview("datafast")
    fake_api.set_faults(trickle_for=1.5, trickle_bytes_per_s=1)
    with GoalTracker(
        DATAFAST_KEY,
        api_url=fake_api.api_url("datafast"),
        mode="sync",
        timeout=0.3,
        sync_deadline=20,
        backoff_base=0.2,
        backoff_max=1.0,
    ) as tracker:
        assert tracker.track_payment(5, "USD", "ch_lost_answer", visitor_id=visitor)
        stats = tracker.stats
    assert [p["transaction_id"] for p in fake_api.payments] == ["ch_lost_answer"]
    assert stats.payments.delivered == 1
    assert stats.payments.duplicates == 1
    assert stats.possible_duplicates == 0
    assert stats.payments.retried >= 1
