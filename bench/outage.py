"""Recovery and drain after an outage: goals tracked into a down API, then the API comes back.

The fake API runs in a child process (its own GIL) answering every goal request with 20 ms of
latency; at the start of each run it is told to answer 503 for the next N seconds
(``down_for``). goaltrack, with its default options (4 in flight to begin with, the circuit
breaker's defaults), tracks 1,000 goals (``--goals``) at once into the down API, in memory or
with the outbox, and the fake API's own records give, per run:

- requests the API received while down (probed, not hammered: about one per
  ``probe_interval_max``, plus the first requests in flight when it went down);
- recovery: the API back (the end of its outage window) -> the first goal it stored;
- drain: the backlog / (last goal stored - first goal stored after the API was back), in goals/s
  and as a fraction of the transport's in-flight bound, ``requests in flight / latency``: in
  memory the ceiling ``max_in_flight`` (128 / 20 ms = 6,400 goals/s; delivery starts at 4 in
  flight and grows while goals wait), with the outbox its 4 workers (200 goals/s); and as a
  multiple of 4 in flight (the in-memory default before the limit grew with the backlog);
- lost: goals tracked and never stored (must be 0).

    python bench/outage.py [--quick] [--latency-ms 20] [--goals 1000]   # --quick: 8 s only
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from _support import API_KEY, FakeAPIProcess, command_line, markdown_table

from goaltrack import GoalTracker
from goaltrack.options import OPTIONS
from goaltrack.retry import InFlightLimit

GOALS = 1_000
LATENCY_S = 0.020
_CEILING = OPTIONS["max_in_flight"].default
assert isinstance(_CEILING, int)
IN_FLIGHT = {
    "memory": _CEILING,  # the ceiling the limit grows to
    "outbox": InFlightLimit(_CEILING).start,  # the outbox keeps the limit's starting 4 workers
}
OUTAGES_S = (8.0, 60.0)


def run(
    api: FakeAPIProcess, outage: float, transport: str, latency: float, count: int = GOALS
) -> list[str]:
    api.reset()
    visitor = api.add_visitor()
    faults = api._post("/_fake/faults", {"latency_ms": latency * 1000, "down_for": outage})
    [window] = faults["outages"]
    options: dict[str, Any] = {"flush_at_exit": False}
    with tempfile.TemporaryDirectory() as directory:
        if transport == "outbox":
            options["outbox"] = str(Path(directory) / "goals.sqlite3")
        tracker = GoalTracker(API_KEY, api_url=api.api_url, **options)
        for i in range(count):
            tracker.track("purchase", visitor_id=visitor, metadata={"id": str(i)})
        flushed = tracker.flush(timeout=outage + 120 + count * latency)  # the outbox: 4 at a time
        stats = tracker.stats
        tracker.close(timeout=2)
    goals = api._control.get(api.url + "/_fake/goals").json()
    requests = api._control.get(api.url + "/_fake/requests").json()
    back = window["end"]
    during = sum(1 for r in requests if window["start"] <= r["received_at_epoch"] < back)
    stored = sorted(g["received_at_epoch"] for g in goals)
    after = [t for t in stored if t >= back]
    ids = {g["metadata"]["id"] for g in goals}
    lost = count - len(ids)
    recovery = after[0] - back if after else float("nan")
    drain = len(after) / (after[-1] - after[0]) if len(after) > 1 else float("nan")
    assert flushed, stats
    return [
        f"{outage:g} s",
        transport,
        f"{during}",
        f"{during / outage:.2f}",
        f"{recovery:.2f} s",
        f"{drain:.0f}",
        f"{IN_FLIGHT[transport]}",
        f"{drain / (IN_FLIGHT[transport] / latency):.2f}x",
        f"{drain / (InFlightLimit.START_IN_FLIGHT / latency):.2f}x",
        f"{lost}",
        f"{stats.possible_duplicates}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the 8 s outage only")
    parser.add_argument("--latency-ms", type=float, default=LATENCY_S * 1000)
    parser.add_argument("--goals", type=int, default=GOALS, help="tracked into the down API")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the 503s are expected: no per-goal noise
    outages = OUTAGES_S[:1] if arguments.quick else OUTAGES_S
    rows = []
    with FakeAPIProcess(quiet=True) as api:
        for outage in outages:
            for transport in ("memory", "outbox"):
                started = time.monotonic()
                rows.append(
                    run(api, outage, transport, arguments.latency_ms / 1000, arguments.goals)
                )
                print(
                    f"  {outage:g} s, {transport}: {time.monotonic() - started:.0f} s", flush=True
                )
    headers = [
        "outage",
        "transport",
        "requests while down",
        "per second",
        "recovery",
        "drain goals/s",
        "in flight at most",
        "x its bound",
        "x 4 in flight",
        "lost",
        "flagged duplicates",
    ]
    print()
    print(markdown_table(headers, rows, left=2))
    print(f"\n{arguments.goals} goals, {arguments.latency_ms:g} ms latency, default options.")
    command = command_line("outage.py", arguments.quick)
    if arguments.latency_ms != LATENCY_S * 1000:
        command += f" --latency-ms {arguments.latency_ms:g}"
    if arguments.goals != GOALS:
        command += f" --goals {arguments.goals}"
    print(f"Reproduce: `{command}`")


if __name__ == "__main__":
    main()
