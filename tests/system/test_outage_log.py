"""What goaltrack says about an outage, about drops and at exit: once, with counts that add up.

Over real HTTP against a loopback API (:mod:`tests.support.hostile_api`) whose listening socket (and
open connections) is closed for a while: connections are refused.
"""

from __future__ import annotations

import logging
import re
import time

import pytest

from goaltrack.transports.base import SUMMARY_INTERVAL
from tests.support.hostile_api import VISITOR, HostileAPI, error
from tests.support.hostile_api import make_tracker as make
from tests.support.waiting import wait_until


@pytest.mark.slow
def test_refused_connections_for_6_s_are_said_once_and_lose_nothing(
    api: HostileAPI, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = make(api)
    try:
        tracker.track("warmup", visitor_id=VISITOR, metadata={"n": "warmup"})
        assert tracker.flush(10)  # connections open and kept alive: they are closed too
        with caplog.at_level(logging.INFO, logger="goaltrack"):
            api.stop()
            down_at = time.monotonic()
            for n in range(50):
                tracker.track("signup", visitor_id=VISITOR, metadata={"n": str(n)})
                time.sleep(0.02)
            wait_until(lambda: time.monotonic() - down_at >= 6.0, 10, "the outage's 6 s")
            api.start()
            up_at = time.monotonic()
            assert tracker.flush(20)
            stats = tracker.stats
    finally:
        tracker.close(5)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert 1 <= len(warnings) <= 5, [r.getMessage() for r in warnings]
    assert warnings[0].created - down_wall(down_at) < 5.0
    assert "goals are held" in warnings[0].getMessage()
    back = [r for r in caplog.records if "is back after" in r.getMessage()]
    assert len(back) == 1
    # The all-clear is a WARNING like the alarm, so a log showing warnings shows both; it says
    # how long the API was down (from the first refused connection) and what it held.
    assert back[0].levelno == logging.WARNING
    down_for = float(back[0].getMessage().split("is back after ")[1].split(" s")[0])
    assert 5.5 <= down_for <= up_at - down_at + 3.0, back[0].getMessage()
    assert "delivering the 50 goal(s) held" in back[0].getMessage()
    assert back[0].created >= warnings[0].created
    assert back[0].created - down_wall(up_at) < 5.0
    assert sorted(n for n in api.delivered if n != "warmup") == sorted(str(n) for n in range(50))
    assert (stats.delivered, stats.failed, stats.dropped) == (51, 0, 0)
    # Never a line per goal.
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) <= 5


def down_wall(monotonic_at: float) -> float:
    """*monotonic_at* as a wall-clock time, comparable with ``LogRecord.created``."""
    return time.time() - (time.monotonic() - monotonic_at)


@pytest.mark.slow
def test_drop_summaries_add_up_to_stats_within_seconds(
    api: HostileAPI, caplog: pytest.LogCaptureFixture
) -> None:
    api.stop()  # nothing is delivered: the queue (cap 10) fills
    tracker = make(api, max_queue_size=10)
    try:
        with caplog.at_level(logging.WARNING, logger="goaltrack"):
            for n in range(511):
                tracker.track("signup", visitor_id=VISITOR, metadata={"n": str(n)})
            dropped = tracker.stats.dropped
            assert dropped == 501

            def logged() -> int:
                return sum(
                    int(m.group(1))
                    for r in caplog.records
                    if (m := re.search(r"dropped (\d+) goal\(s\)", r.getMessage()))
                )

            wait_until(lambda: logged() == dropped, SUMMARY_INTERVAL + 3, "drops logged")
    finally:
        api.start()
        tracker.close(5)
    lines = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(lines) <= 3  # the first at once, then a summary: never a line per goal


def test_the_exit_report_has_one_wording(api: HostileAPI, caplog: pytest.LogCaptureFixture) -> None:
    tracker = make(api, shutdown_timeout=0.5)
    try:
        tracker.track("signup", visitor_id=VISITOR, metadata={"n": "0"})
        assert tracker.flush(10)
        api.stop()
        for n in range(1, 8):
            tracker.track("signup", visitor_id=VISITOR, metadata={"n": str(n)})
        with caplog.at_level(logging.INFO, logger="goaltrack"):
            tracker._transport._close_at_exit()  # type: ignore[attr-defined]
    finally:
        api.start()
        tracker.close(1)
    reports = [r.getMessage() for r in caplog.records if "at exit" in r.getMessage()]
    assert reports == [
        "goaltrack at exit: 1 delivered, 0 still pending, 7 lost (not delivered within 0.5 s); "
        "use the outbox (GOALTRACK_OUTBOX) to lose none"
    ]
    assert not any("dropped" in r.getMessage() for r in caplog.records)


def test_failure_summaries_add_up_to_stats_within_seconds(
    api: HostileAPI, caplog: pytest.LogCaptureFixture
) -> None:
    api.behaviour = lambda seen: error(400, "Invalid goal")
    tracker = make(api)
    try:
        with caplog.at_level(logging.ERROR, logger="goaltrack"):
            for n in range(30):
                tracker.track("signup", visitor_id=VISITOR, metadata={"n": str(n)})
            assert tracker.flush(10)
            assert tracker.stats.failed == 30

            def logged() -> int:
                total = 0
                for record in caplog.records:
                    message = record.getMessage()
                    if "was not recorded by" in message:
                        total += 1
                    elif m := re.search(r"(\d+) more goal\(s\) were not recorded", message):
                        total += int(m.group(1))
                return total

            wait_until(lambda: logged() == 30, SUMMARY_INTERVAL + 3, "failures logged")
            lines = len(caplog.records)
    finally:
        tracker.close(5)
    assert lines <= 3  # the first in full, then a summary: never a line per goal


def test_closing_a_sync_tracker_logs_its_failure_summary_at_once(
    api: HostileAPI, caplog: pytest.LogCaptureFixture
) -> None:
    """The summary of failures not logged yet is said when the tracker closes, not later by a
    timer, among another tracker's lines (any transport: here the sync one)."""
    api.behaviour = lambda seen: error(404, "visitor has no pageviews on this website")
    tracker = make(api, mode="sync")
    with caplog.at_level(logging.ERROR, logger="goaltrack"):
        for name in ("first", "second", "third"):
            assert tracker.track(name, visitor_id=VISITOR) is False
        tracker.close(5)
        summaries = [r.getMessage() for r in caplog.records if "more goal(s)" in r.getMessage()]
    assert len(summaries) == 1, summaries
    assert "2 more goal(s)" in summaries[0]
