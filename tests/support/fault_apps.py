"""Apps the fault suite runs in their own processes (not a test module).

- ``wsgi``: a WSGI app for gunicorn; ``GET /track?id=X`` tracks one ``purchase`` goal tagged with
  ``id`` on the process-wide tracker (configured from ``GOALTRACK_*``, outbox included) and
  answers 200 only once ``track()`` returned.
- ``asgi``: the same for uvicorn.
- ``python -m tests.support.fault_apps produce N RATE OPTIONS_JSON [BURST]``: tracks N tagged goals
  (the first BURST at once, the rest at RATE goals/s) in a process of its own (so the fake API's
  server never shares its GIL), then flushes and prints the tracker's stats as one JSON line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

import goaltrack

VISITOR = os.environ.get("FAULT_VISITOR", "")


def _track(query: str) -> None:
    goal_id = parse_qs(query).get("id", ["none"])[0]
    goaltrack.track("purchase", visitor_id=VISITOR, metadata={"id": goal_id})


def wsgi(environ: dict[str, Any], start_response: Callable[..., object]) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/track":
        _track(environ.get("QUERY_STRING", ""))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


async def asgi(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await goaltrack.get_tracker().aflush(5)
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["path"] == "/track":
        _track(scope["query_string"].decode())
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def produce(count: int, rate: float, options: dict[str, Any], burst: int = 0) -> dict[str, Any]:
    """Track (the first *burst* at once, then *rate*/s), say so on stdout (``tracked``), flush,
    and return the stats and RSS figures."""
    tracker = goaltrack.GoalTracker(**options)
    started = time.monotonic()
    rss_early = 0
    for i in range(count):
        tracker.track("purchase", visitor_id=VISITOR, metadata={"id": str(i)})
        if i == count // 10:
            rss_early = rss_kib()
        ahead = started + (i + 1 - burst) / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)  # pacing the producer, not synchronisation
    tracked_in = time.monotonic() - started
    rss_tracked = rss_kib()
    print("tracked", flush=True)
    flushed = tracker.flush(timeout=120)
    stats = tracker.stats
    tracker.close(1)
    return {
        "flushed": flushed,
        "tracked_in": tracked_in,
        "rss_early_kib": rss_early,
        "rss_tracked_kib": rss_tracked,
        **dataclasses.asdict(stats),
    }


if __name__ == "__main__":
    _, command, count, rate, options, *burst = sys.argv
    assert command == "produce"
    result = produce(int(count), float(rate), json.loads(options), int(burst[0]) if burst else 0)
    print(json.dumps(result), flush=True)
