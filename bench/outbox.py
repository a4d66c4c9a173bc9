"""The outbox's figures: request-path cost of ``track()`` and delivery throughput.

1. Cost per ``track()`` call (wall and process CPU, median of rounds): goaltrack with the outbox
   (a SQLite commit per goal), goaltrack in memory, and segment-analytics-python's
   ``Client.track`` with ``send=False`` (its whole capture path but the queue put). Workers are
   idle: the API URL is a closed loopback port, as in ``track_cost.py``.
2. Delivery throughput at 20 ms API latency (the fake API in a child process): goals/s from
   submit to the last delivery, outbox vs in-memory, 4 requests in flight each.

    python bench/outbox.py [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _support import API_KEY, FakeAPIProcess, closed_port, markdown_table, median
from segment.analytics import Client as SegmentClient

from goaltrack import GoalTracker

METADATA = {"plan": "pro", "seats": 3, "source": "pricing"}


def cost_goaltrack(outbox: str | None, calls: int) -> tuple[float, float]:
    tracker = GoalTracker(
        API_KEY,
        api_url=f"http://127.0.0.1:{closed_port()}/datafast",
        outbox=outbox,
        max_queue_size=calls + 100,
        flush_at_exit=False,
    )
    visitor = "b3ab2331-989f-4cfa-91c6-2461c9e3c6bd"
    tracker.track("signup", visitor_id=visitor, metadata=METADATA)  # starts the workers
    time.sleep(0.1)  # let the workers fail and wait behind the open circuit breaker
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        tracker.track("signup", visitor_id=visitor, metadata=METADATA)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    tracker.close(0)
    return wall / calls * 1e6, cpu / calls * 1e6


def cost_segment(calls: int) -> tuple[float, float]:
    client = SegmentClient("write-key", send=False, host=f"http://127.0.0.1:{closed_port()}")
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        client.track("b3ab2331-989f-4cfa-91c6-2461c9e3c6bd", "signup", METADATA)
    return (time.perf_counter() - wall) / calls * 1e6, (time.process_time() - cpu) / calls * 1e6


def throughput(api: FakeAPIProcess, outbox: str | None, goals: int) -> float:
    visitor = api.add_visitor()
    # Both at 4 in flight, the outbox's workers: in memory the limit would otherwise grow to
    # max_in_flight while these goals wait, and the rows would compare concurrency, not storage.
    tracker = GoalTracker(
        API_KEY, api_url=api.api_url, outbox=outbox, max_in_flight=4, flush_at_exit=False
    )
    started = time.perf_counter()
    for i in range(goals):
        tracker.track("signup", visitor_id=visitor, metadata={"n": i})
    assert tracker.flush(timeout=600)
    elapsed = time.perf_counter() - started
    assert tracker.stats.delivered == goals, tracker.stats
    tracker.close(1)
    return goals / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    calls, rounds, goals = (2_000, 3, 500) if args.quick else (10_000, 5, 2_000)
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        results: dict[str, list[tuple[float, float]]] = {"outbox": [], "memory": [], "seg": []}
        for r in range(rounds):
            results["outbox"].append(cost_goaltrack(str(Path(tmp, f"cost{r}.sqlite3")), calls))
            results["memory"].append(cost_goaltrack(None, calls))
            results["seg"].append(cost_segment(calls))
        seg_wall = median([w for w, _ in results["seg"]])
        seg_cpu = median([c for _, c in results["seg"]])
        for label, key in (
            ("goaltrack, outbox (SQLite commit)", "outbox"),
            ("goaltrack, in memory", "memory"),
            ("segment track (send=False)", "seg"),
        ):
            wall = median([w for w, _ in results[key]])
            cpu = median([c for _, c in results[key]])
            rows.append(
                [
                    label,
                    f"{wall:.1f}",
                    f"{cpu:.1f}",
                    f"{wall / seg_wall:.2f}x",
                    f"{cpu / seg_cpu:.2f}x",
                ]
            )
        print(f"track() cost, {calls} calls x {rounds} rounds, median (us per call)\n")
        print(
            markdown_table(
                ["contender", "wall us", "CPU us", "wall vs segment", "CPU vs segment"], rows
            )
        )

        with FakeAPIProcess(quiet=True) as api:
            api.set_latency(20)
            memory = throughput(api, None, goals)
            outbox = throughput(api, str(Path(tmp, "throughput.sqlite3")), goals)
        print(f"\ndelivery throughput, {goals} goals at 20 ms API latency, 4 in flight\n")
        print(
            markdown_table(
                ["transport", "goals/s", "vs in-memory"],
                [
                    ["in memory", f"{memory:.0f}", "1.00x"],
                    ["outbox", f"{outbox:.0f}", f"{outbox / memory:.2f}x"],
                ],
            )
        )


if __name__ == "__main__":
    main()
