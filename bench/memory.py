"""Memory while the API is down: the queue bound holds, and what one queued goal costs.

100,000 goals are tracked (each with a fresh visitor id and a 3-key metadata dict, as requests
would bring them) while ``api_url`` points at a closed loopback port, so nothing is delivered:

- with the default ``max_queue_size=10_000``: exactly 10,000 goals must be queued and 90,000
  dropped (asserted), and RSS grows by the queue's worth only;
- with ``max_queue_size=100_000``: all are queued; RSS growth / goals = bytes per queued goal;
- baseline: the same inputs (name, visitor id, metadata dict) kept in a ``collections.deque``,
  the least any in-memory queue of these goals could hold on to. Ratios are against it.

Each scenario runs in a fresh interpreter (this script re-runs itself with ``--scenario``), so
that one's freed memory cannot hide the next one's growth. RSS (psutil) is read after
``gc.collect()``, before and after the tracking loop; the first goal is tracked before the
"before" reading, so that starting the workers and the connection pool is not counted. Trackers
use ``flush_at_exit=False`` and are closed with ``close(timeout=0)``, so the script exits at once.

    python bench/memory.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import subprocess
import sys
import time
import uuid
from collections import deque
from typing import Any

import psutil
from _support import API_KEY, closed_port, command_line, markdown_table

from goaltrack import GoalTracker

DEFAULT_QUEUE = 10_000


def rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def scenario_baseline(goals: int) -> dict[str, Any]:
    kept: deque[tuple[str, str, dict[str, object]]] = deque()
    kept.append(("signup", str(uuid.uuid4()), {"plan": "pro", "seats": 0, "source": "pricing"}))
    before = rss()
    started = time.perf_counter()
    for i in range(1, goals):
        metadata: dict[str, object] = {"plan": "pro", "seats": i % 10, "source": "pricing"}
        kept.append(("signup", str(uuid.uuid4()), metadata))
    elapsed = time.perf_counter() - started
    after = rss()
    return {"queued": len(kept), "dropped": 0, "growth": after - before, "seconds": elapsed}


def scenario_goaltrack(goals: int, max_queue_size: int) -> dict[str, Any]:
    logging.getLogger("goaltrack").setLevel(logging.ERROR)  # the drop warning is expected here
    tracker = GoalTracker(
        API_KEY,
        provider="datafast",
        api_url=f"http://127.0.0.1:{closed_port()}",
        max_queue_size=max_queue_size,
        flush_at_exit=False,
    )
    track = tracker.track
    track(
        "signup",
        visitor_id=str(uuid.uuid4()),
        metadata={"plan": "pro", "seats": 0, "source": "pricing"},
    )
    time.sleep(0.2)  # workers started, first attempts refused, the circuit breaker open
    before = rss()
    started = time.perf_counter()
    for i in range(1, goals):
        track(
            "signup",
            visitor_id=str(uuid.uuid4()),
            metadata={"plan": "pro", "seats": i % 10, "source": "pricing"},
        )
    elapsed = time.perf_counter() - started
    after = rss()
    stats = tracker.stats
    tracker.close(timeout=0)
    return {
        "queued": stats.queued,
        "dropped": stats.dropped,
        "delivered": stats.delivered,
        "failed": stats.failed,
        "pending": stats.pending,
        "growth": after - before,
        "seconds": elapsed,
    }


def run_scenario(name: str, goals: int, max_queue_size: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--scenario", name, "--goals", str(goals)]
    command += ["--max-queue-size", str(max_queue_size)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"scenario {name} failed:\n{result.stdout}{result.stderr}")
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="25,000 goals instead of 100,000")
    parser.add_argument("--scenario", choices=["baseline", "goaltrack"], help=argparse.SUPPRESS)
    parser.add_argument("--goals", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--max-queue-size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.scenario == "baseline":
        print(json.dumps(scenario_baseline(args.goals)))
        return
    if args.scenario == "goaltrack":
        print(json.dumps(scenario_goaltrack(args.goals, args.max_queue_size)))
        return

    goals = 25_000 if args.quick else 100_000
    started = time.perf_counter()
    baseline = run_scenario("baseline", goals, 0)
    bounded = run_scenario("goaltrack", goals, DEFAULT_QUEUE)
    unbounded = run_scenario("goaltrack", goals, goals)
    elapsed = time.perf_counter() - started

    # The bound must hold exactly: every goal is either queued or dropped, never both or lost.
    assert bounded["queued"] == DEFAULT_QUEUE, bounded
    assert bounded["dropped"] == goals - DEFAULT_QUEUE, bounded
    assert unbounded["queued"] == goals, unbounded
    assert unbounded["dropped"] == 0, unbounded
    for result in (bounded, unbounded):
        assert result["delivered"] == result["failed"] == 0, result

    # Growth is measured over the goals tracked after the first one.
    base_per_goal = baseline["growth"] / (goals - 1)
    rows = []
    for label, result, kept in (
        (f"baseline: inputs kept in a deque (up to {goals:,})", baseline, goals - 1),
        (f"goaltrack, max_queue_size={DEFAULT_QUEUE:,} (default)", bounded, DEFAULT_QUEUE - 1),
        (f"goaltrack, max_queue_size={goals:,}", unbounded, goals - 1),
    ):
        per_goal = result["growth"] / kept
        rows.append(
            [
                label,
                f"{result['queued']:,}",
                f"{result['dropped']:,}",
                f"{result['growth'] / 2**20:.1f}",
                f"{per_goal:,.0f}",
                f"{per_goal / base_per_goal:.2f}x",
                f"{result['seconds'] / (goals - 1) * 1e6:.1f}",
            ]
        )
    print(f"{goals:,} goals tracked with the API down (closed port); ran in {elapsed:.1f} s\n")
    print(
        markdown_table(
            [
                "scenario",
                "queued",
                "dropped",
                "RSS growth (MB)",
                "bytes per queued goal",
                "vs baseline",
                "µs per goal (incl. uuid4)",
            ],
            rows,
        )
    )
    print(
        f"\nBound held: {DEFAULT_QUEUE:,} queued + {goals - DEFAULT_QUEUE:,} dropped of {goals:,} "
        f"(asserted). RSS grew {bounded['growth'] / 2**20:.1f} MB with the default bound vs "
        f"{unbounded['growth'] / 2**20:.1f} MB without it."
    )
    print(
        "The µs column includes making a uuid4 and, where the queue grows, faulting in fresh "
        "memory; the request-path cost of track() is bench/track_cost.py's business."
    )
    print(f"Reproduce: `{command_line('memory.py', args.quick)}`")


if __name__ == "__main__":
    main()
