"""300 payments through an 8 s outage and answers lost after the API recorded them: each
transaction is recorded exactly once, in memory and through the outbox.

The fake API is down for 8 s (503), and for 3 s more it records each payment but sends its
answer a byte a second, past the tracker's 0.5 s timeout: the tracker cannot know those arrived,
and sends them again. Payments are idempotent by transaction id, so the resends are answered
"duplicate" and counted as delivered, never as possible duplicates, and the API holds each
transaction once.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from goaltrack import GoalTracker
from goaltrack.testing.server import FakeAPIServer
from tests.support.keys import DATAFAST_KEY
from tests.support.waiting import wait_until

PAYMENTS = 300
OUTAGE_S = 8.0
LOST_ANSWERS_S = 3.0

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("transport", ["memory", "outbox"])
def test_every_transaction_is_recorded_once_through_an_outage_and_lost_answers(
    fake_api: FakeAPIServer, tmp_path: Path, transport: str
) -> None:
    visitor = fake_api.add_pageview("datafast")
    fake_api.set_faults(
        down_for=OUTAGE_S, trickle_for=OUTAGE_S + LOST_ANSWERS_S, trickle_bytes_per_s=1
    )
    tracker = GoalTracker(
        DATAFAST_KEY,
        api_url=fake_api.api_url("datafast"),
        timeout=0.5,
        backoff_base=0.05,
        backoff_max=0.5,
        flush_at_exit=False,
        outbox=str(tmp_path / "outbox.sqlite3") if transport == "outbox" else None,
    )
    try:
        ids = [f"ch_outage_{index:03d}" for index in range(PAYMENTS)]
        for index, transaction_id in enumerate(ids):
            assert tracker.track_payment(10 + index, "USD", transaction_id, visitor_id=visitor)
        payments = fake_api.wait_for_payments(PAYMENTS, timeout=90)
        wait_until(lambda: tracker.stats.pending == 0, timeout=60, what="every payment settled")
        stats = tracker.stats.payments
    finally:
        tracker.close(5)
    recorded = Counter(p["transaction_id"] for p in fake_api.payments)
    assert sorted(recorded) == ids
    assert set(recorded.values()) == {1}
    assert len(payments) == PAYMENTS
    requests = [r for r in fake_api.requests if r["kind"] == "payment"]
    # Some answers were lost after the API recorded the payment: they were sent again.
    resent = [r for r in requests if r["error"] == "duplicate transaction id: not recorded again"]
    assert resent, "no answer was lost after recording: the fault did not apply"
    assert (stats.delivered, stats.failed, stats.dropped) == (PAYMENTS, 0, 0)
    # Each "duplicate" answer that came back counted as delivered (a resend's answer may be
    # lost too, while the answers trickle).
    assert 1 <= stats.duplicates <= len(resent)
    assert stats.possible_duplicates == 0
    assert any(r["fault"] == "down" for r in requests)
