"""The courier: delivery from a separate process, fed over a pipe, with the web process's hooks,
counts and logs; and what happens when either process dies, stops or forks."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from goaltrack import GoalTracker
from goaltrack.goals import Goal
from goaltrack.testing.server import FakeAPIServer
from goaltrack.transports.background import BackgroundTransport
from goaltrack.transports.courier import CourierTransport
from tests.support.keys import DATAFAST_KEY
from tests.support.paths import REPO
from tests.support.waiting import wait_until

DEADLINE = 60.0


@pytest.fixture
def make(fake_api: FakeAPIServer) -> Iterator[Callable[..., GoalTracker]]:
    """Trackers with the default delivery (the courier here), retrying fast; closed at the end."""
    made: list[GoalTracker] = []

    def make_tracker(**options: Any) -> GoalTracker:
        options.setdefault("backoff_base", 0.05)
        options.setdefault("backoff_max", 0.2)
        options.setdefault("flush_at_exit", False)
        tracker = GoalTracker(DATAFAST_KEY, api_url=fake_api.api_url("datafast"), **options)
        made.append(tracker)
        return tracker

    yield make_tracker
    for tracker in made:
        tracker.close(timeout=5)


def courier_pid(tracker: GoalTracker) -> int:
    transport = tracker._transport
    assert isinstance(transport, CourierTransport)
    wait_until(lambda: transport._courier is not None, what="a courier started")
    courier = transport._courier
    assert courier is not None
    return courier.pid


def run_script(script: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_default_background_delivery_is_the_courier_with_the_web_process_hooks_and_counts(
    fake_api: FakeAPIServer, make: Callable[..., GoalTracker]
) -> None:
    delivered: list[Goal] = []
    failed: list[Goal] = []
    tracker = make(
        on_delivery=lambda goal, result: delivered.append(goal),
        on_failure=lambda goal, result: failed.append(goal),
    )
    assert isinstance(tracker._transport, CourierTransport)
    visitor = fake_api.add_pageview("datafast")
    tracked = []
    for n in range(50):
        goal = Goal.create(tracker.provider, "signup", visitor_id=visitor, metadata={"n": n})
        tracked.append(goal)
        assert tracker.submit(goal)
    tracker.track("unknown_visitor", visitor_id="3f0c5b5e-9d44-4c55-9a57-0e3e0c7c2a11")  # 404
    assert tracker.flush(20)
    assert sorted(int(g["metadata"]["n"]) for g in fake_api.goals) == list(range(50))
    # The hooks ran in this process, with the very objects tracked.
    assert {id(g) for g in delivered} == {id(g) for g in tracked}
    assert [g.name for g in failed] == ["unknown_visitor"]
    stats = tracker.stats
    assert (stats.queued, stats.delivered, stats.failed, stats.pending) == (51, 50, 1, 0)
    assert courier_pid(tracker) != os.getpid()


def test_the_key_reaches_the_courier_through_its_pipe_only(
    fake_api: FakeAPIServer, make: Callable[..., GoalTracker]
) -> None:
    tracker = make()
    tracker.track("signup", visitor_id=fake_api.add_pageview("datafast"))
    pid = courier_pid(tracker)
    assert tracker.flush(20)
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline, open(f"/proc/{pid}/environ", "rb") as env:
        seen = cmdline.read() + env.read()
    assert DATAFAST_KEY.encode() not in seen
    assert DATAFAST_KEY not in repr(tracker._transport)


def test_the_courier_delivers_what_it_holds_when_the_web_process_is_killed(
    fake_api: FakeAPIServer,
) -> None:
    # The web process dies by SIGKILL right after tracking, with the API slow: no exit flush
    # ran, yet the courier sees its input end and delivers everything it was handed.
    fake_api.set_faults(latency_ms=200)
    visitor = fake_api.add_pageview("datafast")
    web = run_script(
        f"""
        import os, signal
        from goaltrack import GoalTracker
        tracker = GoalTracker({DATAFAST_KEY!r}, api_url={fake_api.api_url("datafast")!r})
        for n in range(20):
            tracker.track("signup", visitor_id={visitor!r}, metadata={{"n": n}})
        tracker._transport.flush(0.01)  # the pipe had time to take them
        import time
        deadline = time.monotonic() + 10
        while tracker._transport._courier is None or tracker._transport._unsent:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        print(tracker._transport._courier.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    out, err = web.communicate(timeout=DEADLINE)
    assert web.returncode == -signal.SIGKILL, err
    fake_api.wait_for_goals(20, timeout=DEADLINE)
    assert sorted(int(g["metadata"]["n"]) for g in fake_api.goals) == list(range(20))
    courier = int(out.split()[0])
    wait_until(lambda: not _alive(courier), timeout=30, what="the orphaned courier exited")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_a_courier_that_dies_is_replaced_and_given_every_unsettled_goal(
    fake_api: FakeAPIServer, make: Callable[..., GoalTracker], caplog: pytest.LogCaptureFixture
) -> None:
    fake_api.set_faults(latency_ms=100)
    tracker = make()
    visitor = fake_api.add_pageview("datafast")
    with caplog.at_level(logging.WARNING, logger="goaltrack"):
        for n in range(30):
            tracker.track("signup", visitor_id=visitor, metadata={"n": n})
        first = courier_pid(tracker)
        os.kill(first, signal.SIGKILL)
        for n in range(30, 40):
            tracker.track("signup", visitor_id=visitor, metadata={"n": n})
        assert tracker.flush(30), tracker.stats
    assert courier_pid(tracker) != first
    arrived = sorted(int(g["metadata"]["n"]) for g in fake_api.goals)
    assert sorted(set(arrived)) == list(range(40))  # none lost
    stats = tracker.stats
    assert (stats.delivered, stats.dropped, stats.failed) == (40, 0, 0)
    # Sent twice only if the first courier had sent it: each such one is counted.
    assert len(arrived) - 40 <= stats.possible_duplicates
    assert any("delivery process exited unexpectedly" in r.getMessage() for r in caplog.records)


def test_where_no_courier_can_start_the_goals_go_out_from_threads_with_one_warning(
    fake_api: FakeAPIServer,
    make: Callable[..., GoalTracker],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    broken = tmp_path / "python3"  # an interpreter that starts, and exits at once
    broken.write_text("#!/bin/sh\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(broken))
    tracker = make()
    visitor = fake_api.add_pageview("datafast")
    with caplog.at_level(logging.WARNING, logger="goaltrack"):
        for n in range(10):
            tracker.track("signup", visitor_id=visitor, metadata={"n": n})
        assert tracker.flush(30), tracker.stats
        tracker.track("signup", visitor_id=visitor, metadata={"n": 10})
        assert tracker.flush(10)
    assert sorted(int(g["metadata"]["n"]) for g in fake_api.goals) == list(range(11))
    assert tracker.stats.queued == 11
    assert isinstance(tracker._transport._fallback, BackgroundTransport)  # type: ignore[attr-defined]
    said = [r.getMessage() for r in caplog.records if "no delivery process" in r.getMessage()]
    assert len(said) == 1


def test_a_stopped_courier_never_blocks_track_and_delivers_all_once_resumed(
    fake_api: FakeAPIServer, make: Callable[..., GoalTracker]
) -> None:
    tracker = make(max_queue_size=5000)
    visitor = fake_api.add_pageview("datafast")
    tracker.track("first", visitor_id=visitor)
    pid = courier_pid(tracker)
    assert tracker.flush(20)
    os.kill(pid, signal.SIGSTOP)
    try:
        slowest = 0.0
        for n in range(3000):  # far more than a pipe holds (about 64 KiB)
            started = time.monotonic()
            assert tracker.track("signup", visitor_id=visitor, metadata={"n": n})
            slowest = max(slowest, time.monotonic() - started)
        assert tracker._transport._unsent  # type: ignore[attr-defined]
        assert slowest < 1.0  # never waits for the pipe (microseconds; the bound is for load)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert tracker.flush(60), tracker.stats
    assert len(fake_api.goals) == 3001
    assert tracker.stats.delivered == 3001


def test_the_courier_logs_through_the_web_process_logging(
    fake_api: FakeAPIServer, make: Callable[..., GoalTracker], caplog: pytest.LogCaptureFixture
) -> None:
    tracker = make(probe_interval_max=0.2)
    visitor = fake_api.add_pageview("datafast")
    with caplog.at_level(logging.INFO, logger="goaltrack"):
        tracker.track("warm", visitor_id=visitor)
        assert tracker.flush(20)
        fake_api.set_faults(down_for=1.5)
        for n in range(5):
            tracker.track("signup", visitor_id=visitor, metadata={"n": n})
        assert tracker.flush(30), tracker.stats
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("goaltrack")]
    assert any("is not answering (HTTP 503" in line for line in lines), lines
    assert any("is back after" in line for line in lines), lines
    assert len(fake_api.goals) == 6


def test_a_forked_child_starts_its_own_courier(fake_api: FakeAPIServer) -> None:
    visitor = fake_api.add_pageview("datafast")
    web = run_script(
        f"""
        import os
        from goaltrack import GoalTracker
        tracker = GoalTracker({DATAFAST_KEY!r}, api_url={fake_api.api_url("datafast")!r})
        tracker.track("parent-1", visitor_id={visitor!r})
        assert tracker.flush(20)
        parent_courier = tracker._transport._courier.pid
        pid = os.fork()
        if pid == 0:
            tracker.track("child", visitor_id={visitor!r})
            ok = tracker.flush(20)
            child_courier = tracker._transport._courier.pid
            assert child_courier != parent_courier, "the child used the parent's courier"
            os._exit(0 if ok and tracker.stats.delivered == 1 else 3)
        tracker.track("parent-2", visitor_id={visitor!r})
        assert tracker.flush(20)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        assert tracker.stats.delivered == 2, tracker.stats
        print("ok")
        """
    )
    out, err = web.communicate(timeout=DEADLINE)
    assert out.strip() == "ok", err
    assert sorted(g["name"] for g in fake_api.goals) == ["child", "parent-1", "parent-2"]


def test_goals_tracked_just_before_exit_are_delivered_by_the_exit_flush(
    fake_api: FakeAPIServer,
) -> None:
    visitor = fake_api.add_pageview("datafast")
    fake_api.set_faults(latency_ms=50)
    web = run_script(
        f"""
        from goaltrack import GoalTracker
        tracker = GoalTracker({DATAFAST_KEY!r}, api_url={fake_api.api_url("datafast")!r})
        for n in range(40):
            tracker.track("signup", visitor_id={visitor!r}, metadata={{"n": n}})
        """
    )
    _, err = web.communicate(timeout=DEADLINE)
    assert web.returncode == 0, err
    assert sorted(int(g["metadata"]["n"]) for g in fake_api.goals) == list(range(40))


def test_payments_travel_through_the_courier_and_are_counted_as_payments(
    fake_api: FakeAPIServer, make: Callable[..., GoalTracker]
) -> None:
    delivered: list[object] = []
    tracker = make(on_delivery=lambda item, result: delivered.append(item))
    visitor = fake_api.add_pageview("datafast")
    assert tracker.track("signup", visitor_id=visitor)
    assert tracker.track_payment(49, "USD", "txn_courier_1", visitor_id=visitor)
    assert tracker.track_payment(49, "USD", "txn_courier_1", visitor_id=visitor)  # "duplicate"
    assert tracker.flush(20)
    assert isinstance(tracker._transport, CourierTransport)
    assert [p["transaction_id"] for p in fake_api.payments] == ["txn_courier_1"]
    stats = tracker.stats
    assert (stats.goals.delivered, stats.payments.delivered, stats.payments.duplicates) == (1, 2, 1)
    assert [type(item).__name__ for item in delivered].count("Payment") == 2
