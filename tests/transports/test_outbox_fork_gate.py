"""The outbox's fork gate and its connections: no thread is inside SQLite when the process forks,
and no connection of the outbox is left to the garbage collector.

A thread inside SQLite at fork time (an administration's statement, a connection being opened or
closed, one finalized by the collector on some thread) can leave one of SQLite's process-wide
mutexes held in the child, which then hangs at its first connection. Real processes (fork), real
SQLite files, real HTTP to the fake API.
"""

from __future__ import annotations

import gc
import os
import signal
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import pytest

from goaltrack import GoalTracker
from goaltrack.testing.server import FakeAPIServer
from goaltrack.transports.outbox import Outbox, gate, transport
from tests.support.keys import DATAFAST_KEY as KEY
from tests.support.waiting import wait_until

#: How long a child may take to deliver its goal: generous, the machine may be loaded 4x over.
CHILD_BOUND = 60.0


def fork_child(tracker: GoalTracker, visitor: str, name: str) -> int:
    """Fork a child that tracks one goal with the inherited *tracker* and flushes it; its exit
    code says how it went (0: delivered). Returns its pid in the parent."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            if not tracker.track("child", visitor_id=visitor, metadata={"id": name}):
                code = 3
            elif not tracker.flush(timeout=CHILD_BOUND - 10):
                code = 4
            else:
                code = 0
        finally:
            os._exit(code)
    return pid


def exit_code(pid: int, bound: float = CHILD_BOUND) -> int | None:
    """The child's exit code, or None when it hung past *bound* seconds (then it is killed)."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def open_on(path: str) -> list[str]:
    """This process's file descriptors open on the outbox *path* (or its -wal / -shm)."""
    names = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile (the listing's own descriptor)
            continue
        if target.startswith(path):
            names.append(target)
    return names


def delivered(fake_api: FakeAPIServer) -> set[str]:
    return {g["metadata"]["id"] for g in fake_api.goals}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() in a threaded process
def test_a_fork_waits_for_a_thread_inside_sqlite_outside_the_transports_locks(
    fake_api: FakeAPIServer,
    make_tracker: Callable[..., GoalTracker],
    outbox_path: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(transport, "FORK_WAIT", 120.0)  # the fork waits as long as it takes here
    visitor = fake_api.add_pageview("datafast")
    tracker = make_tracker()
    tracker.track("parent", visitor_id=visitor, metadata={"id": "parent"})
    assert tracker.flush(timeout=30)  # the parent's connections are open as it forks
    inside, release = threading.Event(), threading.Event()

    def pause() -> int:  # SQLite calls it from inside a statement: the thread is in SQLite
        inside.set()
        release.wait(60)
        return 0  # go on

    forked: list[int] = []
    with Outbox(outbox_path) as admin:  # the administration holds none of the transport's locks
        admin._db.set_progress_handler(pause, 1)
        statuses = []
        reader = threading.Thread(target=lambda: statuses.append(admin.status()))
        reader.start()
        try:
            assert inside.wait(30), "the administration's statement did not start"
            forker = threading.Thread(
                target=lambda: forked.append(fork_child(tracker, visitor, "child"))
            )
            forker.start()
            wait_until(lambda: gate._gate._closed, timeout=30, what="the fork hook closed the gate")
            forker.join(0.3)  # (a bound on what must not happen, not a synchronization)
            assert forker.is_alive(), "forked while a thread was inside SQLite"
            assert forked == []
        finally:
            release.set()
            reader.join(30)
        forker.join(30)
        admin._db.set_progress_handler(None, 1)
    assert len(statuses) == 1  # the administration's call finished, then the process forked
    [pid] = forked
    assert exit_code(pid) == 0, "the child did not deliver its goal"
    assert delivered(fake_api) == {"parent", "child"}
    tracker.track("after", visitor_id=visitor, metadata={"id": "after"})  # the gate is open
    assert tracker.flush(timeout=30)


def test_close_closes_the_transports_connections_even_with_workers_mid_request(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker], outbox_path: str
) -> None:
    visitor = fake_api.add_pageview("datafast")
    fake_api.set_faults(latency_ms=300)  # the workers are mid-request when the tracker closes
    tracker = make_tracker(max_in_flight=2)
    for i in range(6):
        tracker.track("close", visitor_id=visitor, metadata={"id": str(i)})
    wait_until(lambda: fake_api.requests, timeout=30, what="a request in flight")
    assert open_on(outbox_path)  # the file is open while the tracker is
    tracker.close(timeout=0)
    for thread in tracker._transport._threads:  # type: ignore[attr-defined]
        thread.join(30)  # each records its attempt (a connection again), then closes it
        assert not thread.is_alive()
    assert open_on(outbox_path) == []
    # Read after close: the file is opened and closed again. Whether the requests in flight at
    # close() were answered first depends on the machine's load; every goal is counted either way.
    stats = tracker.stats
    assert (stats.queued, stats.delivered + stats.pending) == (6, 6), stats
    assert open_on(outbox_path) == []
    # The last connection closed: SQLite checkpointed the file and removed its -wal and -shm.
    assert sorted(p.name for p in Path(outbox_path).parent.iterdir()) == ["goals.sqlite3"]


def test_a_tracker_dropped_unclosed_leaves_its_connection_to_the_gate_not_the_collector(
    fake_api: FakeAPIServer, outbox_path: str
) -> None:
    tracker = GoalTracker(
        KEY, api_url=fake_api.api_url("datafast"), outbox=outbox_path, flush_at_exit=False
    )
    outbox = tracker._transport  # type: ignore[attr-defined]
    conn = outbox._req_store.conn  # kept here: what became of it is what the test looks at
    gone = weakref.ref(outbox)
    del tracker, outbox

    def collect() -> None:  # the collector runs on another thread (as it may, any time)
        gc.collect()

    collector = threading.Thread(target=collect)
    collector.start()
    collector.join(30)
    assert gone() is None, "the transport was not collected"
    conn.execute("SELECT 1")  # not closed by the finalizer, on the collector's thread
    with Outbox(outbox_path):  # the next connection of the outbox closes it, inside the gate
        pass
    with pytest.raises(sqlite3.ProgrammingError):
        conn.execute("SELECT 1")
    assert open_on(outbox_path) == []


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() in a threaded process
def test_forks_while_administrations_open_query_close_and_drop_connections_hang_no_child(
    fake_api: FakeAPIServer, make_tracker: Callable[..., GoalTracker], outbox_path: str
) -> None:
    visitor = fake_api.add_pageview("datafast")
    tracker = make_tracker()
    tracker.track("parent", visitor_id=visitor, metadata={"id": "parent"})
    assert tracker.flush(timeout=30)
    stop = threading.Event()
    errors: list[BaseException] = []

    def administer() -> None:  # in SQLite throughout, none of the transport's locks held
        try:
            while not stop.is_set():
                with Outbox(outbox_path) as admin:
                    admin.status()
                    admin.dead_letters(10)
        except BaseException as exc:
            errors.append(exc)

    def drop_unclosed() -> None:  # connections whose owner is dropped, collected on this thread
        try:
            while not stop.is_set():
                Outbox(outbox_path).status()
                gc.collect()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=administer) for _ in range(2)]
    threads.append(threading.Thread(target=drop_unclosed))
    for thread in threads:
        thread.start()
    codes: list[int | None] = []
    try:
        running: list[int] = []
        for n in range(40):
            running.append(fork_child(tracker, visitor, f"c{n}"))
            if len(running) >= 4:
                codes.append(exit_code(running.pop(0)))
        codes.extend(exit_code(pid) for pid in running)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert errors == []
    assert codes.count(None) == 0, f"{codes.count(None)} child(ren) hung"
    assert codes == [0] * 40
    assert {f"c{n}" for n in range(40)} <= delivered(fake_api)
