"""Request-path cost of ``track_payment`` beside ``track``'s (a goal), measured in one run.

What a request pays to record a payment (validation with the provider's payment rules: amount,
currency, transaction id, email, then the enqueue) against a goal with 3 metadata keys, through
the same background transport, in two places:

- the core: ``tracker.track_payment(Decimal("29.90"), "usd", id, visitor_id=..., email=...)``
  against ``tracker.track("signup", {...}, visitor_id=...)``;
- the adapters' shared request path (:class:`goaltrack.context.RequestGoals`, what
  ``track_goal(request, ...)`` and ``track_payment(request, ...)`` call in Django, Flask and
  ASGI once they have the request's state): the visitor from the request's cookie.

Set-up as in ``bench/track_cost.py``: the tracker's API URL is a closed loopback port, so its
workers find the API down and wait (the circuit breaker) instead of competing for the GIL. Every
slot gets a fresh tracker (the previous one closed and its workers joined, untimed), so that each
contender's calls meet the same empty queue: a backlog that grows costs more per call (the
cyclic GC walks it), and would favour whichever contender came first after a new tracker.
Rounds are interleaved (every contender once per round, the order rotating); figures are medians
of per-call process CPU and wall time, ratios medians of the per-round ratios.

    python bench/payment_cost.py [--quick] [--rounds R] [--calls N]
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from decimal import Decimal

from _support import (
    API_KEY,
    closed_port,
    command_line,
    markdown_table,
    median,
    wait_for_goaltrack_workers_to_exit,
)

from goaltrack import GoalTracker
from goaltrack.adapter import Adapter
from goaltrack.context import RequestGoals
from goaltrack.hooks import signal_sets

VISITOR = "0b7a4c36-5d1e-4a8f-9c2b-3e4f5a6b7c8d"
COOKIE = f"datafast_visitor_id={VISITOR}; theme=dark"
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0.0.0 Safari/537.36"
AMOUNT = Decimal("29.90")

Clocks = tuple[float, float]  # wall, process CPU (seconds)


class Trackers:
    """Background trackers toward a closed port: a fresh one for every slot."""

    def __init__(self) -> None:
        self.url = f"http://127.0.0.1:{closed_port()}"
        self.tracker: GoalTracker | None = None

    def take(self, calls: int) -> GoalTracker:
        self.close()
        self.tracker = GoalTracker(
            API_KEY, api_url=self.url, max_queue_size=calls * 2, flush_at_exit=False
        )
        return self.tracker

    def close(self) -> None:
        if self.tracker is not None:
            self.tracker.close(0)
            wait_for_goaltrack_workers_to_exit()
            self.tracker = None


def _timed(loop: Callable[[], None]) -> Clocks:
    wall, cpu = time.perf_counter(), time.process_time()
    loop()
    return time.perf_counter() - wall, time.process_time() - cpu


def core_goal(tracker: GoalTracker, n: int) -> Clocks:
    track = tracker.track

    def loop() -> None:
        for _ in range(n):
            track("signup", {"plan": "pro", "seats": 3, "source": "pricing"}, visitor_id=VISITOR)

    return _timed(loop)


def core_payment(tracker: GoalTracker, n: int, round_index: int) -> Clocks:
    track_payment = tracker.track_payment
    ids = [f"ch_{round_index}_{i}" for i in range(n)]

    def loop() -> None:
        for transaction_id in ids:
            track_payment(
                AMOUNT, "usd", transaction_id, visitor_id=VISITOR, email="ada@example.com"
            )

    return _timed(loop)


def request_goals(tracker: GoalTracker) -> RequestGoals:
    # A new one per request, as each adapter makes (it reads the cookie on first use).
    return RequestGoals(Adapter(signal_sets()[0], tracker), tracker.provider, COOKIE, USER_AGENT)


def adapter_goal(tracker: GoalTracker, n: int) -> Clocks:
    def loop() -> None:
        for _ in range(n):
            request_goals(tracker).track("signup", {"plan": "pro", "seats": 3, "source": "x"})

    return _timed(loop)


def adapter_payment(tracker: GoalTracker, n: int, round_index: int) -> Clocks:
    ids = [f"ch_a{round_index}_{i}" for i in range(n)]

    def loop() -> None:
        for transaction_id in ids:
            request_goals(tracker).track_payment(
                AMOUNT, "usd", transaction_id, email="ada@example.com"
            )

    return _timed(loop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and calls")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--calls", type=int, default=None, help="calls per contender per round")
    args = parser.parse_args()
    rounds = args.rounds or (5 if args.quick else 15)
    calls = args.calls or (1_000 if args.quick else 2_000)
    logging.getLogger("goaltrack").setLevel(logging.CRITICAL)  # the closed port's outage line
    import goaltrack.asgi  # noqa: F401 - registers a signal set, as an installed adapter does

    trackers = Trackers()
    contenders: dict[str, Callable[[GoalTracker, int], Clocks]] = {
        "core track (goal)": lambda t, r: core_goal(t, calls),
        "core track_payment": lambda t, r: core_payment(t, calls, r),
        "adapter track_goal": lambda t, r: adapter_goal(t, calls),
        "adapter track_payment": lambda t, r: adapter_payment(t, calls, r),
    }
    names = list(contenders)
    for name in names:  # warm-up
        contenders[name](trackers.take(calls), -1 - names.index(name))
    samples: dict[str, list[Clocks]] = {name: [] for name in names}
    for round_index in range(rounds):
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in order:
            tracker = trackers.take(calls)
            tracker.track_payment(1, "USD", "ch_start")  # starts its worker, untimed
            time.sleep(0.05)  # the same pause before every slot: the worker finds the API down
            samples[name].append(contenders[name](tracker, round_index * 10 + names.index(name)))
    trackers.close()

    def per_call_us(name: str, clock: int) -> float:
        return median([s[clock] for s in samples[name]]) / calls * 1e6

    def ratio(payment: str, goal: str, clock: int) -> float:
        return median(
            [p[clock] / g[clock] for p, g in zip(samples[payment], samples[goal], strict=True)]
        )

    rows = [[name, f"{per_call_us(name, 1):.2f}", f"{per_call_us(name, 0):.2f}"] for name in names]
    print(command_line("payment_cost.py", args.quick), f"({rounds} rounds x {calls} calls)")
    print(markdown_table(["call", "process CPU µs/call", "wall µs/call"], rows))
    for where in ("core", "adapter"):
        goal = "core track (goal)" if where == "core" else "adapter track_goal"
        payment = f"{where} track_payment"
        print(
            f"{where}: track_payment / track_goal = {ratio(payment, goal, 1):.2f}x process CPU, "
            f"{ratio(payment, goal, 0):.2f}x wall"
        )


if __name__ == "__main__":
    main()
