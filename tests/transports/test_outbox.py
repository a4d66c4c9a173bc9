"""The SQLite outbox transport against the fake API over real HTTP.

Covers: goals committed before ``track`` returns and delivered from the file; what a closed (or
killed) tracker left delivered by the next one; final failures in the dead letters, listed,
retried and purged; several trackers sharing one file deliver each goal once; an expired lease
claimed again and counted as a possible duplicate; the size and age limits with their warnings;
a forked child; the ``goaltrack outbox`` command.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from goaltrack import GoalTracker, InvalidConfiguration
from goaltrack.cli import main as cli_main
from goaltrack.redaction import key_fingerprint
from goaltrack.testing.server import FakeAPIServer
from goaltrack.transports.outbox import Outbox
from tests.support.keys import DATAFAST_KEY as KEY
from tests.support.waiting import wait_until


def ids_delivered(fake_api: FakeAPIServer) -> Counter[str]:
    return Counter(g["metadata"]["id"] for g in fake_api.goals)


def close_now(tracker: GoalTracker) -> None:
    """Close without waiting for delivery, and wait until its workers stopped touching the file."""
    tracker.close(timeout=0)
    for thread in tracker._transport._threads:  # type: ignore[attr-defined]
        thread.join(10)


def rows(path: str, table: str = "goals") -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        (count,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
    return int(count)


def test_goals_are_in_the_file_when_track_returns_then_delivered_and_deleted(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker], outbox_path: str
) -> None:
    visitor = "b3ab2331-989f-4cfa-91c6-2461c9e3c6bd"
    # Before the API answers again: a probe sent the moment it is back must find the visitor.
    fake_api.add_pageview("datafast", visitor)
    fake_api.stop()  # refused: nothing can leave, so the goals must be in the file
    try:
        tracker = make_tracker()
        for i in range(20):
            tracker.track("signup", visitor_id=visitor, metadata={"id": str(i)})
        assert rows(outbox_path) == 20
        assert tracker.stats.pending == 20
    finally:
        fake_api.start()
    assert tracker.flush(timeout=20)
    assert ids_delivered(fake_api) == Counter(str(i) for i in range(20))
    assert rows(outbox_path) == 0
    stats = tracker.stats
    assert (stats.queued, stats.delivered, stats.pending, stats.dropped) == (20, 20, 0, 0)


def test_what_a_closed_tracker_left_is_delivered_by_the_next_start(
    fake_api: FakeAPIServer,
    make_tracker: Callable[..., GoalTracker],
    outbox_path: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    visitor = fake_api.add_pageview("datafast")
    fake_api.stop()
    try:
        first = make_tracker()
        for i in range(5):
            first.track("purchase", visitor_id=visitor, metadata={"id": str(i)})
        with caplog.at_level(logging.WARNING, logger="goaltrack"):
            assert not first.close(timeout=0.2)
        assert first.stats.dropped == 0
        assert "0 delivered, 5 still pending, 0 lost" in caplog.text
        assert "pending goals stay in the outbox" in caplog.text
    finally:
        fake_api.start()
    second = make_tracker()  # tracks nothing itself: delivers what the first one left
    fake_api.wait_for_goals(5, timeout=20)
    assert ids_delivered(fake_api) == Counter(str(i) for i in range(5))
    assert second.flush(timeout=5)


def test_final_failures_go_to_dead_letters_which_can_be_retried_and_purged(
    fake_api: FakeAPIServer,
    make_tracker: Callable[..., GoalTracker],
    outbox_path: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tracker = make_tracker()
    stranger = "b3ab2331-989f-4cfa-91c6-2461c9e3c6bd"  # no pageview: DataFast answers 404
    tracker.track("signup", visitor_id=stranger, metadata={"id": "a"})
    tracker.track("signup", visitor_id=stranger, metadata={"id": "b"})
    assert tracker.flush(timeout=10)
    assert tracker.stats.failed == 2
    with Outbox(outbox_path) as outbox:
        # Both were in flight at once: either may have been dead-lettered first.
        letters = outbox.dead_letters()
        [first] = [letter for letter in letters if letter.goal.metadata["id"] == "a"]
        assert first.status == 404
        assert "404" in first.reason
        assert first.goal.visitor_id == stranger
        assert outbox.status().dead_letters == 2

    assert cli_main(["outbox", "dead-letters", "--path", outbox_path]) == 0
    listed = capsys.readouterr().out
    assert "signup" in listed
    assert "HTTP 404" in listed
    assert KEY not in listed

    fake_api.add_pageview("datafast", stranger)
    assert cli_main(["outbox", "retry", "--path", outbox_path, "--id", str(first.id)]) == 0
    assert "1 dead letter(s) moved back" in capsys.readouterr().out
    fake_api.wait_for_goals(1, timeout=10)
    assert ids_delivered(fake_api) == Counter({"a": 1})  # only the dead letter retried

    assert cli_main(["outbox", "purge", "--path", outbox_path, "--yes"]) == 0
    assert "1 dead letter(s) deleted" in capsys.readouterr().out
    assert rows(outbox_path, "dead_letters") == 0


def test_status_command_shows_depth_and_age(
    fake_api: FakeAPIServer,
    make_tracker: Callable[..., GoalTracker],
    outbox_path: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake_api.stop()
    try:
        tracker = make_tracker()
        tracker.track("signup", visitor_id=fake_api.add_pageview("datafast"))
        assert cli_main(["outbox", "status", "--path", outbox_path]) == 0
    finally:
        fake_api.start()
    out = capsys.readouterr().out
    assert "waiting:      1" in out
    assert "dead letters: 0" in out
    where = f"datafast {fake_api.api_url('datafast')}/api/v1/goals (key {key_fingerprint(KEY)})"
    assert f"       1 for {where}" in out
    assert KEY not in out
    assert tracker.flush(timeout=10)


def test_outbox_command_without_a_path_says_how_to_give_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOALTRACK_OUTBOX", raising=False)
    assert cli_main(["outbox", "status"]) == 2
    assert "GOALTRACK_OUTBOX" in capsys.readouterr().err


def test_trackers_sharing_one_file_deliver_each_goal_once(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker]
) -> None:
    visitor = fake_api.add_pageview("datafast")
    fake_api.set_faults(latency_ms=2)
    trackers = [make_tracker(max_in_flight=3) for _ in range(3)]

    def send(index: int, tracker: GoalTracker) -> None:
        for i in range(100):
            tracker.track("load", visitor_id=visitor, metadata={"id": f"{index}-{i}"})

    threads = [threading.Thread(target=send, args=pair) for pair in enumerate(trackers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for tracker in trackers:
        assert tracker.flush(timeout=30)
    delivered = ids_delivered(fake_api)
    assert len(delivered) == 300
    assert set(delivered.values()) == {1}
    assert sum(t.stats.delivered for t in trackers) == 300
    assert sum(t.stats.delivered for t in trackers if t.stats.delivered) == 300


def test_a_dead_owners_lease_expires_and_the_goal_counts_as_a_possible_duplicate(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker], outbox_path: str
) -> None:
    visitor = fake_api.add_pageview("datafast")
    fake_api.stop()
    try:
        first = make_tracker()
        first.track("purchase", visitor_id=visitor, metadata={"id": "leased"})
        close_now(first)
    finally:
        fake_api.start()
    # As if a process had claimed the goal, sent it maybe, and died: its lease runs out soon.
    with contextlib.closing(sqlite3.connect(outbox_path)) as conn:
        conn.execute(
            "UPDATE goals SET lease_owner = 'gone:1:x', lease_until = ?", (time.time() + 1,)
        )
        conn.commit()
    second = make_tracker()
    wait_until(lambda: second.stats.delivered == 1)
    assert second.stats.possible_duplicates == 1
    assert ids_delivered(fake_api) == Counter({"leased": 1})


def test_a_full_outbox_drops_with_an_exact_count_and_a_warning(
    fake_api: FakeAPIServer,
    make_tracker: Callable[..., GoalTracker],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_api.stop()
    try:
        tracker = make_tracker(outbox_max_goals=10)
        with caplog.at_level(logging.WARNING, logger="goaltrack"):
            visitor = "b3ab2331-989f-4cfa-91c6-2461c9e3c6bd"
            for i in range(25):
                tracker.track("signup", visitor_id=visitor, metadata={"id": str(i)})
        stats = tracker.stats
        assert (stats.queued, stats.dropped, stats.pending) == (10, 15, 10)
        assert "is full (10 goals waiting, max_goals=10)" in caplog.text
    finally:
        fake_api.start()
    close_now(tracker)


def test_goals_older_than_max_age_move_to_dead_letters_with_a_warning(
    fake_api: FakeAPIServer,
    make_tracker: Callable[..., GoalTracker],
    outbox_path: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    visitor = fake_api.add_pageview("datafast")
    fake_api.stop()
    try:
        first = make_tracker()
        first.track("signup", visitor_id=visitor, metadata={"id": "old"})
        close_now(first)
    finally:
        fake_api.start()
    with contextlib.closing(sqlite3.connect(outbox_path)) as conn:
        conn.execute("UPDATE goals SET created_at = created_at - 3600")
        conn.commit()
    with caplog.at_level(logging.WARNING, logger="goaltrack"):
        second = make_tracker(outbox_max_age=60)
        second.track("signup", visitor_id=visitor, metadata={"id": "new"})
        assert second.flush(timeout=10)
        wait_until(lambda: second.stats.failed == 1)
    assert ids_delivered(fake_api) == Counter({"new": 1})
    with Outbox(outbox_path) as outbox:
        [letter] = outbox.dead_letters()
    assert "max_age" in letter.reason
    assert "older than max_age" in caplog.text
    assert second.stats.failed == 1


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() in a threaded process
def test_a_forked_child_opens_its_own_connection_and_delivers_from_the_file(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker]
) -> None:
    visitor = fake_api.add_pageview("datafast")
    tracker = make_tracker()
    tracker.track("before_fork", visitor_id=visitor, metadata={"id": "parent"})
    assert tracker.flush(timeout=10)
    pid = os.fork()
    if pid == 0:  # the child: track, flush, and leave without running the parent's cleanup
        code = 1
        try:
            tracker.track("child", visitor_id=visitor, metadata={"id": "child"})
            code = 0 if tracker.flush(timeout=10) else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    tracker.track("after_fork", visitor_id=visitor, metadata={"id": "parent-2"})
    assert tracker.flush(timeout=10)
    assert ids_delivered(fake_api) == Counter({"parent": 1, "child": 1, "parent-2": 1})


def test_outbox_needs_the_background_mode(outbox_path: str) -> None:
    with pytest.raises(InvalidConfiguration, match="outbox is for the background mode"):
        GoalTracker(KEY, outbox=outbox_path, mode="sync")


def test_the_file_never_holds_the_api_key(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker], outbox_path: str
) -> None:
    fake_api.stop()
    try:
        tracker = make_tracker()
        tracker.track("signup", visitor_id=fake_api.add_pageview("datafast"))
        for path in Path(outbox_path).parent.iterdir():  # the database, its WAL and index
            assert KEY.encode() not in path.read_bytes()
        assert KEY not in repr(tracker._transport)
    finally:
        fake_api.start()
    assert tracker.flush(timeout=10)
