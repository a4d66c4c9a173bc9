"""The fault suite: nothing lost under API faults, process kills, pre-forking servers, outages.

- 5,000 goals tracked by a producer process (its own GIL) while the fake API, over real HTTP,
  answers 500/502/503 bursts, 429 with Retry-After, resets connections mid-response, refuses
  connections, and turns 2 s slow (past the tracker's 1 s timeout): every goal arrives; goals
  stored twice are counted and never exceed ``stats.possible_duplicates``; only the timeouts and
  resets may cause them. For the in-memory queue and the outbox.
- ``kill -9`` of a gunicorn worker mid-delivery with the outbox on: every goal whose ``track()``
  returned (its request answered 200) is delivered after the restart.
- gunicorn ``--preload`` with 4 workers, uvicorn ``--workers 2``: all goals delivered, clean exit
  within the flush bound.
- An outage longer than the in-memory cap: with the outbox nothing is lost and RSS stays flat;
  without it the drop count is exact and logged.

Each scenario prints its row of docs/reliability.md's fault table (``pytest -s`` shows them).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from goaltrack.testing.server import FakeAPIServer
from tests.support.keys import DATAFAST_KEY as KEY
from tests.support.paths import REPO
from tests.support.ports import free_port

# Enough for every fault to meet traffic, each after FAULT_EVERY more requests (10,000 goals
# and 700 took twice as long and tested nothing more; the faults are counted in requests).
GOALS = 5_000
FAULT_EVERY = 350
RATE = 1_500.0  # goals/s the producer tracks at
BURST = 20  # answers of each of 500, 502 and 503 in a row
RATE_LIMITED = 3  # 429 answers in a row, each with Retry-After: 1
RESETS = 10  # connections reset mid-response in a row

pytestmark = pytest.mark.slow


def table_row(
    fault: str, tracked: int, delivered: Counter[str], possible: int | None, extra: str = ""
) -> str:
    duplicated = sum(delivered.values()) - len(delivered)
    lost = tracked - len(delivered)
    flagged = "" if possible is None else f" (flagged possible: {possible})"
    row = f"| {fault} | {tracked} | {len(delivered)} | {lost} | {duplicated}{flagged} |"
    if extra:
        row += f" {extra} |"
    print(row)
    return row


def delivered_ids(fake_api: FakeAPIServer) -> Counter[str]:
    return Counter(g["metadata"]["id"] for g in fake_api.goals)


def start_producer(
    fake_api: FakeAPIServer,
    count: int,
    *,
    rate: float = RATE,
    burst: int = 0,
    tuned: bool = True,
    **options: Any,
) -> subprocess.Popen[str]:
    """A producer process; *tuned* shortens the backoff (the request-counted faults), else the
    tracker keeps every default option, as a user would."""
    tuning = {"backoff_base": 0.05, "backoff_max": 1.0, "max_retries": 30} if tuned else {}
    options = {
        "api_key": KEY,
        "api_url": fake_api.api_url("datafast"),
        **tuning,
        "flush_at_exit": False,
        **options,
    }
    env = {**os.environ, "FAULT_VISITOR": fake_api.add_pageview("datafast")}
    env["PYTHONPATH"] = str(REPO)
    arguments = json.dumps(options)
    command = ["produce", str(count), str(rate), arguments, str(burst)]
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.fault_apps", *command],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def inject_faults(fake_api: FakeAPIServer) -> None:
    """Each fault once the API has seen some more traffic; outages last a fixed time."""
    seen = 0

    def after(requests: int) -> None:
        nonlocal seen
        seen += requests
        fake_api.wait_for_requests(seen, timeout=60)

    for status in (500, 502, 503):
        after(FAULT_EVERY)
        fake_api.set_faults(fail_next=BURST, fail_status=status)
    after(FAULT_EVERY)
    fake_api.set_faults(rate_limit_next=RATE_LIMITED, retry_after=1)
    after(FAULT_EVERY)
    fake_api.set_faults(reset_next=RESETS)
    after(FAULT_EVERY)
    fake_api.stop()
    time.sleep(1.0)  # the outage's length (connections refused meanwhile), not a wait on work
    fake_api.start()
    after(FAULT_EVERY)
    fake_api.set_faults(latency_ms=2000)
    time.sleep(2.5)  # how long the API stays slow
    fake_api.set_faults(latency_ms=0)
    seen = len(fake_api.requests)


@pytest.mark.parametrize("transport", ["memory", "outbox"])
def test_goals_through_api_faults_none_lost_duplicates_flagged(
    fake_api: FakeAPIServer, tmp_path: Path, transport: str
) -> None:
    # Failures in a row open the circuit breaker: the API is then probed one request at a time,
    # and each of these request-counted faults is used up by probes; probes 0.2 s apart (not
    # the default 1 s) keep the suite short without changing what is tested. The time-shaped
    # outages below keep every default.
    options: dict[str, Any] = {
        "timeout": 1.0,
        "max_queue_size": 2 * GOALS,
        "backoff_max": 0.2,
        "probe_interval_max": 0.2,
    }
    if transport == "outbox":
        options["outbox"] = str(tmp_path / "goals.sqlite3")
    producer = start_producer(fake_api, GOALS, **options)
    try:
        inject_faults(fake_api)
        out, err = producer.communicate(timeout=150)
    finally:
        producer.kill()
    assert producer.returncode == 0, err
    stats = json.loads(out.splitlines()[-1])
    assert stats["flushed"], stats
    delivered = delivered_ids(fake_api)
    table_row(f"API faults, {transport}", GOALS, delivered, stats["possible_duplicates"])
    assert len(delivered) == GOALS  # 0 lost
    duplicated = sum(delivered.values()) - len(delivered)
    assert duplicated <= stats["possible_duplicates"]
    assert (stats["dropped"], stats["failed"]) == (0, 0)
    faults = Counter(r["fault"] for r in fake_api.requests if r["fault"])
    assert faults["fail_next"] == 3 * BURST
    assert faults["rate_limit_next"] == RATE_LIMITED
    assert faults["reset_next"] == RESETS


# -- processes ----------------------------------------------------------------------------------


def serve(command: list[str], env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"server did not start:\n{log.read_text()}")
        time.sleep(0.05)  # polling interval of a deadline-bound wait for the port


def app_env(fake_api: FakeAPIServer, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "GOALTRACK_API_KEY": KEY,
        "GOALTRACK_API_URL": fake_api.api_url("datafast"),
        "FAULT_VISITOR": fake_api.add_pageview("datafast"),
        **extra,
    }
    env.pop("GOALTRACK_MODE", None)
    return env


def track_requests(port: int, ids: range) -> list[str]:
    """GET /track?id=... for each id; the ids whose request answered 200 (track() returned)."""
    done: list[str] = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        for goal_id in ids:
            try:
                if client.get("/track", params={"id": str(goal_id)}).status_code == 200:
                    done.append(str(goal_id))
            except httpx.TransportError:
                pass  # the worker was killed during this request: track() may not have returned
    return done


@pytest.fixture
def gunicorn_outbox(fake_api: FakeAPIServer, tmp_path: Path) -> Iterator[tuple[Any, int]]:
    port = free_port()
    env = app_env(fake_api, GOALTRACK_OUTBOX=str(tmp_path / "goals.sqlite3"))
    command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    command += ["--graceful-timeout", "10", "tests.support.fault_apps:wsgi"]
    process = serve(command, env, port, tmp_path / "gunicorn.log")
    try:
        yield process, port
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def gunicorn_worker_pid(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def test_kill_9_mid_delivery_with_the_outbox_loses_nothing_that_was_tracked(
    fake_api: FakeAPIServer, gunicorn_outbox: tuple[subprocess.Popen[bytes], int]
) -> None:
    process, port = gunicorn_outbox
    fake_api.set_faults(latency_ms=300)  # deliveries in flight and a backlog when the kill lands
    tracked = track_requests(port, range(200))
    victim = gunicorn_worker_pid(process.pid)
    fake_api.wait_for_requests(4, timeout=10)
    os.kill(victim, signal.SIGKILL)
    fake_api.set_faults(latency_ms=0)
    # gunicorn starts a new worker; its outbox takes over the dead worker's goals at once.
    tracked += track_requests(port, range(200, 250))
    deadline = time.monotonic() + 60
    while not set(tracked) <= set(delivered_ids(fake_api)) and time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):  # wakes at each new goal, or after 1 s
            fake_api.wait_for_goals(len(fake_api.goals) + 1, timeout=1)
    delivered = delivered_ids(fake_api)
    table_row("kill -9 mid-delivery, outbox", len(tracked), delivered, None)
    assert set(tracked) <= set(delivered)
    assert victim != gunicorn_worker_pid(process.pid)


@pytest.mark.parametrize("server", ["gunicorn --preload -w 4", "uvicorn --workers 2"])
def test_preforked_servers_deliver_everything_and_exit_cleanly(
    fake_api: FakeAPIServer, tmp_path: Path, server: str
) -> None:
    port = free_port()
    if server.startswith("gunicorn"):
        command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}"]
        command += ["--workers", "4", "--preload", "--graceful-timeout", "10"]
        command += ["tests.support.fault_apps:wsgi"]
    else:
        command = [sys.executable, "-m", "uvicorn", "tests.support.fault_apps:asgi", "--host"]
        command += ["127.0.0.1", "--port", str(port), "--workers", "2", "--no-access-log"]
    fake_api.set_faults(latency_ms=20)
    process = serve(command, app_env(fake_api), port, tmp_path / "server.log")
    try:
        tracked = track_requests(port, range(400))
    finally:
        stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    stopped_in = time.monotonic() - stopping
    delivered = delivered_ids(fake_api)
    table_row(f"{server}, SIGTERM", len(tracked), delivered, None)
    assert len(tracked) == 400
    assert delivered == Counter(tracked)
    assert process.returncode == 0
    assert stopped_in < 3.0 + 5.0  # shutdown_timeout plus the server's own stop


# -- an outage longer than the in-memory cap -------------------------------------------------------


@pytest.mark.parametrize("transport", ["memory", "outbox"])
def test_outage_longer_than_the_queue_cap(
    fake_api: FakeAPIServer, tmp_path: Path, transport: str
) -> None:
    cap, count = 1_000, 5_000
    options: dict[str, Any] = {"max_queue_size": cap, "backoff_max": 0.5}
    if transport == "outbox":
        options["outbox"] = str(tmp_path / "goals.sqlite3")
    fake_api.stop()  # down for as long as the producer tracks
    producer = start_producer(fake_api, count, **options)
    try:
        assert producer.stdout is not None
        assert producer.stdout.readline().strip() == "tracked"
    finally:
        fake_api.start()
    try:
        out, err = producer.communicate(timeout=120)
    finally:
        producer.kill()
    assert producer.returncode == 0, err
    stats = json.loads(out.splitlines()[-1])
    delivered = delivered_ids(fake_api)
    table_row(f"outage > queue cap, {transport}", count, delivered, stats["possible_duplicates"])
    assert set(delivered.values()) == {1}
    if transport == "outbox":
        assert len(delivered) == count
        assert stats["dropped"] == 0
        assert stats["rss_tracked_kib"] - stats["rss_early_kib"] < 4_096  # flat: not per goal
    else:
        assert stats["dropped"] == count - len(delivered) > 0
        assert len(delivered) <= cap
        assert "dropped" in err  # logged, rate-limited, with the exact count in stats


# -- outages shaped in time, with the default options ----------------------------------------------

# An API's own latency. (bench/outage.py measures at a harsher 20 ms, where the fake API's own
# work per request, about a millisecond here, weighs more in the ratio.)
LATENCY_S = 0.050
# Requests in flight as delivery starts (InFlightLimit.START_IN_FLIGHT): what a down API can
# get before the breaker opens. The limit grows past it only while the API answers, so the drain
# after an outage may go faster than this bound; the outbox keeps these 4 workers.
MAX_IN_FLIGHT = 4
DRAIN_BOUND = MAX_IN_FLIGHT / LATENCY_S  # goals/s with 4 slots busy
# Of DRAIN_BOUND, as asserted: more than one slot's worth (1 / LATENCY_S = 20 goals/s), so the
# backlog drains over several slots at once. 0.5x failed at 0.48x with the machine loaded 8x over
# (the suite's own workers and other work); the quiet-machine ratio is bench/outage.py's figure.
DRAIN_FLOOR = 0.375
# The API back -> its first goal stored: at most one probe interval (probe_interval_max, 1 s) and
# one answer; the rows print 0.25-0.86 s. 1.5 s failed once (1.68 s after a blackhole, outbox)
# with three test runs sharing the 2 cores; the bug this guards against took 30-60 s.
RECOVERY_S = 2.5
TRACKED_AT_ONCE = 300  # as the fault starts; then TRICKLE goals/s while it lasts
TRICKLE = 10.0
# One row per shape in real time. 8 s of down reaches the breaker's longest probe interval (1 s)
# that 3 s does not; what 30 s adds (the backoff and breaker over a long outage) is covered in
# seconds by the fake-clock tests of the retry state and the outbox. Three flaps show every
# transition a flapping API makes (30 s showed ten of the same); each up phase lasts 2 s, not
# 1 s: a probe is due every 0.8-1 s, so a 1 s phase could pass unprobed on a loaded machine and
# the recovery then counted from the next phase (3.3 s, failing the recovery bound for that reason).
SHAPES: dict[str, dict[str, Any]] = {
    "down 8 s": {"down_for": 8.0},
    "flapping 2 s up / 2 s down for 12 s": {"flap": [2.0, 2.0], "flap_for": 12.0},
    "blackhole 10 s": {"blackhole_for": 10.0},
}


def fault_length(shape: dict[str, Any]) -> float:
    return float(shape.get("down_for") or shape.get("flap_for") or shape["blackhole_for"])


@pytest.mark.parametrize("transport", ["memory", "outbox"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_outage_shaped_in_time_recovers_at_once_drains_fast_and_loses_nothing(
    fake_api: FakeAPIServer, tmp_path: Path, shape: str, transport: str
) -> None:
    options: dict[str, Any] = {}
    if transport == "outbox":
        options["outbox"] = str(tmp_path / "goals.sqlite3")
    length = fault_length(SHAPES[shape])
    count = TRACKED_AT_ONCE + int(TRICKLE * length)
    fake_api.set_faults(latency_ms=LATENCY_S * 1000, **SHAPES[shape])
    windows = fake_api.outage_windows()
    producer = start_producer(
        fake_api, count, rate=TRICKLE, burst=TRACKED_AT_ONCE, tuned=False, **options
    )
    try:
        out, err = producer.communicate(timeout=length + 150)
    finally:
        producer.kill()
    assert producer.returncode == 0, err
    stats = json.loads(out.splitlines()[-1])
    delivered = delivered_ids(fake_api)
    goals_at = sorted(g["received_at_epoch"] for g in fake_api.goals)
    requests_at = [r["received_at_epoch"] for r in fake_api.requests]

    recoveries = []
    for _, back in windows:
        after = [t for t in goals_at if t >= back]
        assert after, f"nothing delivered after the API was back at {back}"
        recoveries.append(after[0] - back)
    # The API is probed, not hammered. While it is down it sees: the requests in flight when it
    # went down, and the ones workers sent before three failures opened the breaker (at most
    # MAX_IN_FLIGHT + 2); then probes 0.25 s and 0.5 s apart, then at most one per 0.8 s
    # (probe_interval_max = 1 s, jittered down by 20%).
    hammering = [
        (end - start, sum(1 for t in requests_at if start <= t < end)) for start, end in windows
    ]
    last_back = windows[-1][1]
    backlog = [t for t in goals_at if t >= last_back]
    drain_rate = (len(backlog) - 1) / (backlog[-1] - backlog[0]) if len(backlog) > 1 else 0.0
    table_row(
        f"{shape}, {transport}",
        count,
        delivered,
        stats["possible_duplicates"],
        extra=(
            f"{max(recoveries):.2f} s | {drain_rate:.0f}/s = {drain_rate / DRAIN_BOUND:.2f}x "
            f"| {max(n / s for s, n in hammering):.1f}/s"
        ),
    )
    assert stats["flushed"], stats
    assert len(delivered) == count  # 0 lost
    assert sum(delivered.values()) - len(delivered) <= stats["possible_duplicates"]
    assert (stats["dropped"], stats["failed"]) == (0, 0)
    assert max(recoveries) <= RECOVERY_S, recoveries
    for seconds, requests in hammering:
        assert requests <= MAX_IN_FLIGHT + 2 + 2 + seconds / 0.8, (
            hammering,
            [
                [round(t - start, 3) for t in requests_at if start <= t < end]
                for start, end in windows
            ],
        )
    # The whole backlog is in within the recovery bound plus its drain at half the bound, and a
    # backlog worth timing drains at that rate at least. Not the 0.8x a quiet machine shows (the
    # printed row): the bound must hold with the machine loaded several times over.
    assert backlog[-1] - last_back <= RECOVERY_S + len(backlog) / (DRAIN_FLOOR * DRAIN_BOUND)
    if len(backlog) >= 100:
        assert drain_rate >= DRAIN_FLOOR * DRAIN_BOUND, drain_rate
