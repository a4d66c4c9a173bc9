"""The Celery transport's figures: delivery throughput through a real broker and worker.

Sets up, and tears down on every exit path:

- ``redis-server`` on a free 127.0.0.1 port, in a temporary directory, without persistence
  (``--save "" --appendonly no``);
- the bundled fake API in a child process (no latency injected);
- ONE ``celery worker`` process (``--pool=solo`` by default, as in the tests; ``--pool threads``
  runs ``--pool=threads --concurrency=4``, slower on a 2-CPU machine), whose Celery app is this
  module's ``app`` and whose goaltrack account comes from ``GOALTRACK_API_KEY`` /
  ``GOALTRACK_API_URL``, as in a real deployment.

One warm-up goal goes through first (it proves the worker consumes, and opens the producer's
broker connection); the fake API is then reset. Measured, for N goals (default 2,000;
``--quick`` 300) with distinct metadata:

1. Throughput: from the first ``track()`` until the fake API received the N-th goal (the latest
   ``received_at`` it recorded, same host clock, ms resolution; the count is polled with a
   deadline), as goals/s.
2. Request-path cost of ``track()``: per call (median and p99), publishing the task to Redis,
   while the worker delivers (the calls of step 1) and, uncontended, to a queue no worker
   consumes; against the in-memory (background) transport in the same run, whose workers are
   idle behind a closed loopback port (as in ``track_cost.py``).

Then checks that the fake API received exactly the N goals, each once; exits non-zero if not.

    python bench/celery_transport.py [--quick] [--goals N] [--pool solo|threads]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
from _support import API_KEY, FakeAPIProcess, closed_port, markdown_table, median
from celery import Celery

from goaltrack import GoalTracker

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
QUEUE = "goaltrack-bench"
IDLE_QUEUE = "goaltrack-bench-unconsumed"
BROKER_ENV = "GOALTRACK_BENCH_BROKER"
NO_DISK = ("--save", "", "--appendonly", "no")
QUIET_WORKER = ("--without-gossip", "--without-mingle", "--without-heartbeat")
METADATA = {"plan": "pro", "seats": "3", "source": "pricing"}

# The Celery app of both sides: this process publishes with it, the worker imports this module.
app = Celery(
    "goaltrack_bench",
    broker=os.environ.get(BROKER_ENV, "redis://127.0.0.1:6379/0"),
    include=["goaltrack.transports.celery"],
)
app.conf.update(
    broker_connection_retry_on_startup=True,
    task_default_queue=QUEUE,
    worker_hijack_root_logger=False,
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", data_dir, *NO_DISK],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:  # wait for the port (redis answers PING with +PONG)
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                        sock.sendall(b"PING\r\n")
                        if sock.recv(16).startswith(b"+PONG"):
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            stop(process)


@contextlib.contextmanager
def celery_worker(broker: str, api_url: str, pool: str) -> Iterator[subprocess.Popen[bytes]]:
    """One ``celery worker`` process running this module's app; its log shown on failure."""
    env = {
        **os.environ,
        BROKER_ENV: broker,
        "GOALTRACK_API_KEY": API_KEY,
        "GOALTRACK_API_URL": api_url,
        "PYTHONPATH": os.pathsep.join([str(BENCH), str(REPO)]),
    }
    env.pop("GOALTRACK_MODE", None)
    pool_args = ["--pool=solo"] if pool == "solo" else ["--pool=threads", "--concurrency=4"]
    command = [sys.executable, "-m", "celery", "-A", Path(__file__).stem, "worker"]
    with tempfile.TemporaryFile("w+b") as log:
        process = subprocess.Popen(
            [*command, *pool_args, "-Q", QUEUE, "--loglevel=WARNING", *QUIET_WORKER],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        ok = False
        try:
            yield process
            ok = True
        finally:
            stop(process, 15)
            if not ok:
                log.seek(0)
                sys.stderr.write(log.read()[-20_000:].decode(errors="replace"))


def fetch_goals(api: FakeAPIProcess) -> list[dict[str, object]]:
    response = httpx.get(api.url + "/_fake/goals", timeout=30)
    response.raise_for_status()
    goals: list[dict[str, object]] = response.json()
    return goals


def wait_for_count(
    api: FakeAPIProcess, count: int, deadline: float, worker: subprocess.Popen[bytes]
) -> int:
    """Poll the fake API's goal count until it reaches *count* or the deadline passes."""
    while True:
        seen = api.goal_count()
        if seen >= count or time.monotonic() > deadline:
            return seen
        if worker.poll() is not None:
            raise RuntimeError(f"the Celery worker exited with status {worker.returncode}")
        time.sleep(0.2)  # coarse: each poll deep-copies every goal in the fake API


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def time_calls(tracker: GoalTracker, visitor: str, goals: int) -> tuple[float, list[float]]:
    """Track *goals* goals; return the wall clock at the first call and each call's cost (us)."""
    costs: list[float] = []
    clock = time.perf_counter_ns
    started = time.time()
    for i in range(goals):
        before = clock()
        tracker.track("signup", visitor_id=visitor, metadata={**METADATA, "n": str(i)})
        costs.append((clock() - before) / 1000)
    return started, costs


def in_memory_costs(goals: int) -> list[float]:
    tracker = GoalTracker(
        API_KEY,
        api_url=f"http://127.0.0.1:{closed_port()}/datafast",
        max_queue_size=goals + 100,
        flush_at_exit=False,
    )
    visitor = "b3ab2331-989f-4cfa-91c6-2461c9e3c6bd"
    tracker.track("signup", visitor_id=visitor, metadata=METADATA)  # starts the workers
    time.sleep(0.1)  # let them fail and wait behind the open circuit breaker
    try:
        return time_calls(tracker, visitor, goals)[1]
    finally:
        logger = logging.getLogger("goaltrack")
        level = logger.level
        logger.setLevel(logging.ERROR)  # its undelivered goals are dropped on purpose
        try:
            tracker.close(0)
        finally:
            logger.setLevel(level)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 goals instead of 2,000")
    parser.add_argument("--goals", type=int, help="number of goals (overrides --quick)")
    parser.add_argument("--pool", choices=["solo", "threads"], default="solo")
    parser.add_argument("--deadline", type=float, default=40.0, help="seconds to wait (40)")
    args = parser.parse_args()
    goals = args.goals or (300 if args.quick else 2_000)
    pool = "threads, concurrency 4" if args.pool == "threads" else "solo"

    memory = in_memory_costs(goals)
    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(redis_server())
        app.conf.broker_url = broker
        api = stack.enter_context(FakeAPIProcess(quiet=True))
        worker = stack.enter_context(celery_worker(broker, api.api_url, args.pool))
        tracker = GoalTracker(
            API_KEY, api_url=api.api_url, mode="celery", celery_app=app, flush_at_exit=False
        )
        stack.callback(app.close)

        # Warm-up: the worker is up and consuming, the producer's connection is open.
        tracker.track("warmup", visitor_id=api.add_visitor())
        if wait_for_count(api, 1, time.monotonic() + 30, worker) != 1:
            raise RuntimeError("the warm-up goal did not arrive within 30 s")
        api.reset()
        visitor = api.add_visitor()

        # The publish alone, uncontended: a queue no worker consumes (Redis is thrown away).
        idle = GoalTracker(
            API_KEY,
            api_url=api.api_url,
            mode="celery",
            celery_app=app,
            celery_queue=IDLE_QUEUE,
            flush_at_exit=False,
        )
        uncontended = time_calls(idle, visitor, goals)[1]

        started, celery = time_calls(tracker, visitor, goals)
        seen = wait_for_count(api, goals, time.monotonic() + args.deadline, worker)
        time.sleep(0.5)  # late duplicates, if any, get a chance to show up
        received = fetch_goals(api)
        stats = tracker.stats

    last = max(
        (datetime.fromisoformat(str(g["received_at"])).timestamp() for g in received),
        default=float("nan"),
    )
    elapsed = last - started
    counts = Counter(str(g["metadata"]["n"]) for g in received)  # type: ignore[index]
    lost = goals - len(set(counts) & {str(i) for i in range(goals)})
    duplicated = sum(c - 1 for c in counts.values() if c > 1)

    floor = median(memory)

    def cost(values: list[float]) -> str:
        p50, p99 = median(values), percentile(values, 0.99)
        return f"{p50:.1f} / {p99:.1f} us ({p50 / floor:.0f}x)"

    print(
        f"Celery transport: {goals} goals, redis-server + 1 Celery worker"
        f" (pool {pool}), fake API without latency, {os.cpu_count()} CPUs\n"
    )
    print(
        markdown_table(
            ["figure", "value"],
            [
                ["goals received / sent (each once)", f"{len(received)} / {goals}"],
                ["first track() -> last goal received", f"{elapsed:.2f} s"],
                ["throughput", f"{goals / elapsed:.0f} goals/s"],
                ["track() celery, worker delivering: p50 / p99", cost(celery)],
                ["track() celery, queue not consumed: p50 / p99", cost(uncontended)],
                [
                    "track() in memory (workers idle): p50 / p99",
                    f"{floor:.1f} / {percentile(memory, 0.99):.1f} us (1x)",
                ],
            ],
        )
    )
    print(
        f"\n    python bench/celery_transport.py{' --quick' if args.quick else ''}"
        + (f" --goals {args.goals}" if args.goals else "")
        + (" --pool threads" if args.pool == "threads" else "")
    )
    if lost or duplicated or len(received) != goals or seen < goals or stats.dropped:
        print(
            f"\nFAILED: {lost} lost, {duplicated} duplicated, {len(received)} received,"
            f" {stats.dropped} dropped at publish",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
