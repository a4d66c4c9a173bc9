"""Request-path cost of ``tracker.track()`` against other analytics SDKs, measured in one run.

What a web request pays for recording one goal with 3 metadata keys: goaltrack's ``track``
(validation with the provider's rules + enqueue), segment-analytics-python's ``Client.track`` and
posthog's ``Client.capture``, and, as the floor, a bare Python function called with the same
arguments (the loop, the argument passing and the metadata dict literal, nothing else).

How the contenders are set up, so that none of them touches the network:

- goaltrack, "workers idle" (the headline figure): a real background-mode tracker whose API URL
  is a closed loopback port and whose ``max_queue_size`` is larger than the number of calls, so
  the full accept path runs and nothing is dropped. Its workers get "connection refused" on
  their first goals, the circuit breaker opens, and they wait: no network in the way and no thread
  delivering while we measure. (An in-process fake API would compete: its uvicorn thread would
  share our GIL. That is why the next row runs the fake API in a child process.)
  The queue of goals waiting grows all through the loop, and a longer queue costs more per call
  (the cyclic GC walks it), so a fresh tracker takes over every 10,000 calls and the previous
  one is closed (its queue freed): the backlog never exceeds what the default ``max_queue_size``
  allows in production (where the workers keep the queue near empty while the API is up).
- goaltrack, "workers delivering": the same, but pointed at the fake API in a child process; the
  workers deliver goals all through the measurement, in our process. Shows what the request
  thread pays while the workers are busy: its wall time includes waiting for the GIL, and our
  process's CPU includes the delivery work.
- segment and posthog: ``send=False`` (and ``host`` at the same closed port, in case). Their
  whole capture path runs (validation, message building, uuid, timestamp, size check) except the
  final ``queue.Queue.put`` into the queue their consumer thread would read; that put is timed
  as its own row, so it can be added back. Neither starts a consumer thread with ``send=False``.

Three clocks per call: wall (``perf_counter``), the CPU of our whole process (``process_time``:
every thread, so goaltrack's workers count; other processes on this shared machine do not) and
the calling thread's CPU (``thread_time``). The goal is judged on process CPU, which machine
noise does not inflate; wall ratios are printed too.

Rounds are interleaved (every contender once per round, in a rotating order), every slot lasts
about the same time and starts after the same short sleep, so machine noise and the
scheduler's treatment of a thread that just slept hit all contenders alike. Figures are
medians over rounds; ratios are medians of the per-round ratios.

    python bench/track_cost.py [--quick] [--rounds R] [--slot SECONDS]
"""

from __future__ import annotations

import argparse
import gc
import logging
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from _support import (
    API_KEY,
    FakeAPIProcess,
    closed_port,
    command_line,
    markdown_table,
    median,
    wait_for_goaltrack_workers_to_exit,
)
from posthog.client import Client as PosthogClient
from segment.analytics import Client as SegmentClient

from goaltrack import GoalTracker

GOAL_RATIO = 0.25
"""goaltrack's track() should cost at most this fraction of segment's track()."""
SETTLE = 0.05
"""Seconds every slot sleeps before its timed loop (goaltrack's workers settle meanwhile)."""
WARMUP_CALLS = 200
BACKLOG = 10_000
"""Calls per tracker: goaltrack never runs with more queued than the default max_queue_size."""
VISITORS = 256  # a power of two: the loops pick one with ``i & (VISITORS - 1)``

Clocks = tuple[float, float, float]  # wall, process CPU, calling-thread CPU (seconds)


def _clocks() -> Clocks:
    return time.perf_counter(), time.process_time(), time.thread_time()


def _since(start: Clocks) -> Clocks:
    now = _clocks()
    return now[0] - start[0], now[1] - start[1], now[2] - start[2]


def bare(
    name: str, *, visitor_id: str | None = None, metadata: dict[str, Any] | None = None
) -> None:
    return None


def loop_bare(n: int, visitors: list[str]) -> Clocks:
    mask = len(visitors) - 1
    start = _clocks()
    for i in range(n):
        bare(
            "signup",
            visitor_id=visitors[i & mask],
            metadata={"plan": "pro", "seats": 3, "source": "pricing"},
        )
    return _since(start)


def loop_goaltrack(tracker: GoalTracker, n: int, visitors: list[str]) -> Clocks:
    mask = len(visitors) - 1
    track = tracker.track
    start = _clocks()
    for i in range(n):
        track(
            "signup",
            visitor_id=visitors[i & mask],
            metadata={"plan": "pro", "seats": 3, "source": "pricing"},
        )
    return _since(start)


def loop_segment(client: SegmentClient, n: int, visitors: list[str]) -> Clocks:
    mask = len(visitors) - 1
    track = client.track
    start = _clocks()
    for i in range(n):
        track(visitors[i & mask], "signup", {"plan": "pro", "seats": 3, "source": "pricing"})
    return _since(start)


def loop_posthog(client: PosthogClient, n: int, visitors: list[str]) -> Clocks:
    mask = len(visitors) - 1
    capture = client.capture
    start = _clocks()
    for i in range(n):
        capture(
            "signup",
            distinct_id=visitors[i & mask],
            properties={"plan": "pro", "seats": 3, "source": "pricing"},
        )
    return _since(start)


def loop_queue_put(n: int, visitors: list[str]) -> Clocks:
    mask = len(visitors) - 1
    put = queue.Queue[dict[str, Any]]().put
    start = _clocks()
    for i in range(n):
        put(
            {"userId": visitors[i & mask], "event": "signup", "properties": {"plan": "pro"}},
            block=False,
        )
    return _since(start)


def settled(loop: Callable[[int], Clocks]) -> Callable[[int], Clocks]:
    def run(n: int) -> Clocks:
        time.sleep(SETTLE)
        return loop(n)

    return run


def goaltrack_run(api_url: str, visitors: list[str]) -> Callable[[int], Clocks]:
    """Fresh trackers per slot, one per BACKLOG calls, warmed up and settled before timing."""

    def run(n: int) -> Clocks:
        chunks = [BACKLOG] * (n // BACKLOG) + ([n % BACKLOG] if n % BACKLOG else [])
        trackers = [
            GoalTracker(
                API_KEY,
                provider="datafast",
                api_url=api_url,
                max_queue_size=chunk + WARMUP_CALLS + 100,
                flush_at_exit=False,
            )
            for chunk in chunks
        ]
        try:
            for tracker in trackers:
                loop_goaltrack(tracker, WARMUP_CALLS, visitors)  # starts its workers
            time.sleep(SETTLE)
            wall = cpu = thread_cpu = 0.0
            for tracker, chunk in zip(trackers, chunks, strict=True):
                clocks = loop_goaltrack(tracker, chunk, visitors)
                wall, cpu, thread_cpu = wall + clocks[0], cpu + clocks[1], thread_cpu + clocks[2]
                stats = tracker.stats
                if stats.dropped or stats.failed:
                    raise AssertionError(f"goaltrack dropped or failed goals while timed: {stats}")
                tracker.close(0)  # frees its backlog before the next tracker's turn
        finally:
            for tracker in trackers:
                tracker.close(0)  # what is still queued is dropped: not the delivery bench
            wait_for_goaltrack_workers_to_exit()
        return wall, cpu, thread_cpu

    return run


@dataclass
class Contender:
    label: str
    run: Callable[[int], Clocks]
    calls: int = 0
    samples: list[Clocks] = field(default_factory=list)  # seconds per call, one per round

    def per_call(self, clock: int) -> float:
        return median([s[clock] for s in self.samples])

    def ratio(self, other: Contender, clock: int) -> float:
        pairs = zip(self.samples, other.samples, strict=True)
        return median([mine[clock] / theirs[clock] for mine, theirs in pairs])


WALL, PROCESS, THREAD = 0, 1, 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, under 15 s")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 9, quick 5)")
    parser.add_argument(
        "--slot", type=float, help="seconds each timed loop lasts (default 0.25, quick 0.06)"
    )
    args = parser.parse_args()
    rounds = args.rounds or (5 if args.quick else 9)
    slot = args.slot or (0.06 if args.quick else 0.25)

    # Closing a tracker with goals still queued logs a (rate-limited) drop warning: expected here.
    logging.getLogger("goaltrack").setLevel(logging.ERROR)
    unreachable = f"http://127.0.0.1:{closed_port()}"
    started = time.perf_counter()

    # quiet: closing the busy tracker with close(0) abandons its requests in flight, which the
    # fake API logs as ClientDisconnect tracebacks.
    with FakeAPIProcess(quiet=True) as api:
        visitors = [api.add_visitor() for _ in range(VISITORS)]
        segment = SegmentClient("bench-write-key", send=False, host=unreachable)
        ph = PosthogClient("phc_bench_key", host=unreachable, send=False)
        idle = Contender("goaltrack track(), workers idle", goaltrack_run(unreachable, visitors))
        busy = Contender(
            "goaltrack track(), workers delivering", goaltrack_run(api.api_url, visitors)
        )
        seg = Contender(
            "segment track(), send=False", settled(lambda n: loop_segment(segment, n, visitors))
        )
        phc = Contender(
            "posthog capture(), send=False", settled(lambda n: loop_posthog(ph, n, visitors))
        )
        floor = Contender("bare function call (floor)", settled(lambda n: loop_bare(n, visitors)))
        put = Contender(
            "queue.Queue.put (what send=False skips)",
            settled(lambda n: loop_queue_put(n, visitors)),
        )
        contenders = [floor, idle, busy, seg, phc, put]

        # Two warm-up rounds, not counted; they also size each slot to last about `slot` s.
        for contender in contenders:
            contender.calls = 500
        for _ in range(2):
            for contender in contenders:
                per_call = contender.run(contender.calls)[WALL] / contender.calls
                contender.calls = max(200, min(200_000, round(slot / per_call)))
        for round_index in range(rounds):
            shift = round_index % len(contenders)
            for contender in contenders[shift:] + contenders[:shift]:
                gc.collect()
                calls = contender.calls
                wall, cpu, thread_cpu = contender.run(contender.calls)
                contender.samples.append((wall / calls, cpu / calls, thread_cpu / calls))
        fake_api_pid = api.pid
    elapsed = time.perf_counter() - started

    print(
        f"{rounds} interleaved rounds of ~{slot:g} s per contender (calls per round in brackets); "
        f"fake API in child process {fake_api_pid}; ran in {elapsed:.1f} s\n"
    )
    rows = [
        [
            f"{c.label} [{c.calls}]",
            f"{c.per_call(WALL) * 1e6:.2f}",
            f"{c.per_call(PROCESS) * 1e6:.2f}",
            f"{c.per_call(THREAD) * 1e6:.2f}",
            f"{c.ratio(seg, PROCESS):.3f}x",
            f"{c.ratio(seg, WALL):.3f}x",
            f"{c.ratio(phc, PROCESS):.3f}x",
        ]
        for c in contenders
    ]
    print(
        markdown_table(
            [
                "call, 3 metadata keys [calls/round]",
                "µs wall",
                "µs CPU, process",
                "µs CPU, thread",
                "vs segment (CPU)",
                "vs segment (wall)",
                "vs posthog (CPU)",
            ],
            rows,
        )
    )
    goal = idle.ratio(seg, PROCESS)
    verdict = "met" if goal <= GOAL_RATIO else "NOT met"
    print(
        f"\nGoal: goaltrack track() <= {GOAL_RATIO}x segment track(): {verdict} "
        f"({goal:.3f}x in CPU, {idle.ratio(seg, WALL):.3f}x in wall time, workers idle)."
    )
    print(
        "'workers delivering': wall includes waiting for the GIL while our workers deliver; "
        "process CPU includes that delivery work."
    )
    print(f"Reproduce: `{command_line('track_cost.py', args.quick)}`")


if __name__ == "__main__":
    main()
