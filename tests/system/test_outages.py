"""What an outage does to goals, beyond the fault suite's table: process ends and changed config.

- a bare process (no server to catch the signal) stopped by SIGTERM during an outage: with the
  outbox nothing is lost (the next start delivers); in memory the exact number it could not
  deliver is logged, and the process still ends by SIGTERM;
- the exit warning counts every undelivered goal, those held by the worker threads included;
- outbox rows belong to the provider, goals URL and key they were tracked for: rows stored under
  another ``api_url`` or of another provider are not sent by the tracker now using the file, stay
  in it and show in ``status``;
- a blackholed or trickling API holds a worker for ``timeout`` at most, ``flush`` and ``close``
  wait no longer than asked, and a 50 MB answer is not read into memory.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from goaltrack import GoalTracker
from goaltrack.testing.server import FakeAPIServer
from goaltrack.transports.outbox import Outbox
from tests.support.keys import DATAFAST_KEY as KEY
from tests.support.paths import REPO

BARE_PROCESS = """
import json, os, sys, time, goaltrack
options = json.loads(os.environ["TRACKER_OPTIONS"])
tracker = goaltrack.GoalTracker(os.environ["KEY"], api_url=os.environ["API_URL"], **options)
for i in range(int(os.environ["COUNT"])):
    tracker.track("purchase", visitor_id=os.environ["VISITOR"], metadata={"id": str(i)})
print("tracked", flush=True)
while True:  # a worker loop that never handles SIGTERM itself
    time.sleep(0.05)
"""


def start_bare_process(
    api_url: str, visitor: str, count: int, **options: object
) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "KEY": KEY,
        "API_URL": api_url,
        "VISITOR": visitor,
        "COUNT": str(count),
        "TRACKER_OPTIONS": json.dumps(options),
        "PYTHONPATH": str(REPO),
    }
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(BARE_PROCESS)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "tracked"
    return process


def stop_with_sigterm(process: subprocess.Popen[str]) -> tuple[float, str]:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    return time.monotonic() - started, err


@pytest.mark.slow
def test_sigterm_during_an_outage_in_memory_logs_exactly_what_is_lost(
    fake_api: FakeAPIServer,
) -> None:
    visitor = fake_api.add_pageview("datafast")
    fake_api.stop()  # connections refused for the whole life of the process
    try:
        process = start_bare_process(
            fake_api.api_url("datafast"), visitor, 37, shutdown_timeout=1.0
        )
        took, err = stop_with_sigterm(process)
    finally:
        fake_api.start()
    assert process.returncode == -signal.SIGTERM  # it still ends the way SIGTERM ends it
    assert took < 1.0 + 3.0  # the flush's bound, plus start-up noise
    lost = re.findall(r"goaltrack at exit: 0 delivered, 0 still pending, (\d+) lost", err)
    assert lost == ["37"], err
    assert "(not delivered within 1 s); use the outbox (GOALTRACK_OUTBOX) to lose none" in err


@pytest.mark.slow
def test_sigterm_delivers_what_it_can_within_shutdown_timeout(fake_api: FakeAPIServer) -> None:
    visitor = fake_api.add_pageview("datafast")
    fake_api.set_faults(latency_ms=300)  # a slow API: goals still queued when SIGTERM comes
    process = start_bare_process(fake_api.api_url("datafast"), visitor, 20, shutdown_timeout=10)
    _, err = stop_with_sigterm(process)
    assert process.returncode == -signal.SIGTERM
    assert "not delivered" not in err
    assert sorted(int(g["metadata"]["id"]) for g in fake_api.goals) == list(range(20))


@pytest.mark.slow
def test_sigterm_during_an_outage_with_the_outbox_loses_nothing(
    fake_api: FakeAPIServer, tmp_path: Path
) -> None:
    visitor = fake_api.add_pageview("datafast")
    outbox = str(tmp_path / "goals.sqlite3")
    fake_api.stop()
    try:
        process = start_bare_process(
            fake_api.api_url("datafast"), visitor, 37, shutdown_timeout=1.0, outbox=outbox
        )
        _, err = stop_with_sigterm(process)
    finally:
        fake_api.start()
    assert process.returncode == -signal.SIGTERM
    assert "0 delivered, 37 still pending, 0 lost" in err, err
    assert "pending goals stay in the outbox" in err, err
    # The next start delivers them.
    with GoalTracker(
        KEY, api_url=fake_api.api_url("datafast"), outbox=outbox, flush_at_exit=False
    ) as tracker:
        deadline = time.monotonic() + 20
        while len(fake_api.goals) < 37 and time.monotonic() < deadline:
            fake_api.wait_for_goals(len(fake_api.goals) + 1, timeout=deadline - time.monotonic())
        assert tracker.stats.failed == 0
    assert Counter(g["metadata"]["id"] for g in fake_api.goals) == Counter(
        str(i) for i in range(37)
    )


def test_the_exit_warning_counts_the_goals_held_by_workers_too(
    fake_api: FakeAPIServer, caplog: pytest.LogCaptureFixture
) -> None:
    visitor = fake_api.add_pageview("datafast")
    fake_api.set_faults(latency_ms=3000)  # every worker holds a goal in flight
    tracker = GoalTracker(
        KEY,
        api_url=fake_api.api_url("datafast"),
        flush_at_exit=False,
        shutdown_timeout=0.3,
        delivery_process=False,  # the workers' in-flight count is what this test reads
    )
    for i in range(200):
        tracker.track("purchase", visitor_id=visitor, metadata={"id": str(i)})
    transport = tracker._transport
    deadline = time.monotonic() + 5
    while transport._in_flight < 4:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the four workers never took a goal each"
        time.sleep(0.01)
    with caplog.at_level(logging.WARNING, logger="goaltrack"):
        transport._close_at_exit()  # type: ignore[attr-defined]
    assert "0 still pending, 200 lost (not delivered within 0.3 s)" in caplog.text
    for thread in transport._threads:  # type: ignore[attr-defined]
        thread.join(10)  # their requests land now, not in the next test


# -- the outbox after a configuration change -------------------------------------------------------


def test_outbox_rows_of_an_old_api_url_stay_for_it_and_show_in_status(
    fake_api: FakeAPIServer, tmp_path: Path
) -> None:
    outbox = str(tmp_path / "goals.sqlite3")
    visitor = fake_api.add_pageview("datafast")
    with FakeAPIServer() as old_api:
        old_url = old_api.api_url("datafast")
    # The old API is gone (a deploy moved the app to another endpoint): nothing was delivered.
    old = GoalTracker(KEY, api_url=old_url, outbox=outbox, flush_at_exit=False)
    for i in range(5):
        old.track("purchase", visitor_id=visitor, metadata={"id": str(i)})
    assert not old.close(timeout=0.5)
    with Outbox(outbox) as admin:
        assert admin.status().by_destination == {f"datafast {old_url}/api/v1/goals": 5}
    new = GoalTracker(KEY, api_url=fake_api.api_url("datafast"), outbox=outbox)
    try:
        new.track("purchase", visitor_id=visitor, metadata={"id": "new"})
        assert new.flush(timeout=10)  # its own goal; the old URL's rows are not its to send
    finally:
        new.close(timeout=2)
    assert [g["metadata"]["id"] for g in fake_api.goals] == ["new"]
    with Outbox(outbox) as admin:
        status = admin.status()
    assert (status.waiting, status.dead_letters) == (5, 0)
    assert status.by_destination == {f"datafast {old_url}/api/v1/goals": 5}


def test_outbox_rows_of_another_provider_stay_in_the_file_unsent(
    fake_api: FakeAPIServer, tmp_path: Path
) -> None:
    outbox = str(tmp_path / "goals.sqlite3")
    fake_api.stop()
    try:
        flowsery = GoalTracker(
            "flow_key_1", provider="flowsery", api_url=fake_api.api_url("flowsery"), outbox=outbox
        )
        flowsery.track("signup", visitor_id="vid_1")
        flowsery.track("signup", visitor_id="vid_2")
        flowsery.close(timeout=0.2)
    finally:
        fake_api.start()
    datafast = GoalTracker(KEY, api_url=fake_api.api_url("datafast"), outbox=outbox)
    try:
        assert datafast.flush(timeout=5)
    finally:
        datafast.close(timeout=2)
    assert fake_api.goals == []
    with Outbox(outbox) as admin:
        status = admin.status()
    assert (status.waiting, status.dead_letters) == (2, 0)
    assert status.by_destination == {f"flowsery {fake_api.api_url('flowsery')}/api/v1/goals": 2}


# -- blackholes, trickles and oversized answers ---------------------------------------------------


def wait_for(condition: Callable[[], bool], timeout: float) -> float:
    """Seconds until *condition* held (a deadline-bound wait)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "condition not met in time"
        time.sleep(0.005)
    return time.monotonic() - started


@pytest.mark.parametrize(
    ("fault", "timeout"),
    [
        ({"blackhole_for": 30.0}, 1.0),  # accepts the request, never answers
        ({"trickle_for": 30.0, "trickle_bytes_per_s": 1.0}, 2.0),  # a byte a second: no read
    ],  # ever waits 2 s, so only a deadline for the whole request ends it
    ids=["blackhole", "one byte a second"],
)
def test_a_request_that_never_completes_holds_a_worker_for_timeout_at_most(
    fake_api: FakeAPIServer, fault: dict[str, float], timeout: float
) -> None:
    visitor = fake_api.add_pageview("datafast")
    fake_api.set_faults(**fault)
    tracker = GoalTracker(
        KEY, api_url=fake_api.api_url("datafast"), flush_at_exit=False, timeout=timeout
    )
    try:
        started = time.monotonic()
        tracker.track("purchase", visitor_id=visitor)
        assert not tracker.flush(timeout=0.5)  # flush never waits longer than asked...
        assert time.monotonic() - started < 0.5 + 0.3
        wait_for(lambda: tracker.stats.retried == 1, timeout=timeout + 5)
        failed_after = time.monotonic() - started
        assert timeout - 0.1 <= failed_after <= timeout + 0.5  # ...nor does one request
        fake_api.clear_faults()  # the API answers again: the goal gets through
        assert tracker.flush(timeout=10)
        assert len(fake_api.goals) >= 1  # a trickled answer may have stored it already
        assert tracker.stats.delivered == 1
    finally:
        started = time.monotonic()
        tracker.close(timeout=0.5)
        assert time.monotonic() - started < 0.5 + 0.3


HUGE_ANSWER = """
import os, resource, goaltrack
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracker = goaltrack.GoalTracker(os.environ["KEY"], api_url=os.environ["API_URL"])
tracker.track("purchase", visitor_id=os.environ["VISITOR"])
assert tracker.flush(30)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(tracker.stats.delivered, after - before)
"""


def test_a_50_mb_answer_is_not_read_into_memory(fake_api: FakeAPIServer) -> None:
    visitor = fake_api.add_pageview("datafast")
    fake_api.set_faults(huge_body_next=1, huge_body_bytes=50_000_000)
    env = {
        **os.environ,
        "KEY": KEY,
        "API_URL": fake_api.api_url("datafast"),
        "VISITOR": visitor,
        "PYTHONPATH": str(REPO),
    }
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(HUGE_ANSWER)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    delivered, peak_growth_kib = map(int, result.stdout.split())
    assert delivered == 1
    assert [r["fault"] for r in fake_api.requests] == ["huge_body_next"]
    assert peak_growth_kib < 20 * 1024, peak_growth_kib
