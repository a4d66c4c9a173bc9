"""Load on the example apps under their real servers, every request tracking a goal.

Each example (Django shop and Flask blog under gunicorn with 2 workers, the FastAPI app under
uvicorn) is driven on loopback by a small concurrent httpx driver for a fixed time, once with
goaltrack disabled (``GOALTRACK_MODE=disabled``: goals validated, nothing queued or sent) and once
in the default background mode. Reported: requests/s, errors (non-2xx/3xx answers and transport
errors; goal: 0), the largest backlog seen (goals answered as tracked but not yet received by the
API, sampled), and whether every tracked goal was delivered once the server stopped (it flushes
on SIGTERM). The fake API runs in its own process so that it does not share the driver's GIL.

    python bench/load.py [--duration 10] [--concurrency 16] [--apps django,flask,fastapi]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.browser import BROWSER_UA  # noqa: E402
from tests.support.examples import serve_example  # noqa: E402

SAMPLE_EVERY_S = 0.25
DELIVERY_TIMEOUT_S = 60.0


class GoalSink(Protocol):
    """The fake API as the driver needs it (in-process server or child process)."""

    @property
    def api_url(self) -> str: ...

    def add_visitor(self) -> str: ...

    def goal_count(self) -> int: ...


@dataclass
class LoadResult:
    app: str
    mode: str
    duration_s: float
    requests: int  # answered as expected: each tracked one goal
    errors: int
    max_backlog: int
    delivered: int

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s

    @property
    def lost(self) -> int:
        return self.requests - self.delivered if self.mode == "background" else 0


async def _visitor_loop(
    app: str, base_url: str, visitor_id: str, deadline: float, counts: dict[str, int]
) -> None:
    cookies = {"datafast_visitor_id": visitor_id}
    headers = {"User-Agent": BROWSER_UA}
    async with httpx.AsyncClient(
        base_url=base_url, cookies=cookies, headers=headers, timeout=10
    ) as client:
        token = ""
        if app == "django":
            await client.get("/")
            token = client.cookies.get("csrftoken") or ""
        while time.monotonic() < deadline:
            try:
                if app == "django":
                    response = await client.post(
                        "/newsletter/", data={"csrfmiddlewaretoken": token}
                    )
                    ok = response.status_code == 302
                elif app == "flask":
                    response = await client.post("/subscribe", data={"email": "a@example.com"})
                    ok = response.status_code == 302
                else:
                    response = await client.post("/api/checkout", json={"plan": "pro"})
                    ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            counts["requests" if ok else "errors"] += 1


async def _drive(
    app: str, base_url: str, sink: GoalSink, duration: float, concurrency: int, before: int
) -> tuple[dict[str, int], int, float]:
    visitors = [sink.add_visitor() for _ in range(concurrency)]
    counts = {"requests": 0, "errors": 0}
    started = time.monotonic()
    deadline = started + duration
    tasks = [
        asyncio.create_task(_visitor_loop(app, base_url, v, deadline, counts)) for v in visitors
    ]
    max_backlog = 0
    while not all(task.done() for task in tasks):
        await asyncio.sleep(SAMPLE_EVERY_S)  # the sampling period, not a synchronisation
        received = await asyncio.to_thread(sink.goal_count)
        max_backlog = max(max_backlog, counts["requests"] - (received - before))
    await asyncio.gather(*tasks)
    return counts, max_backlog, time.monotonic() - started


def run_load(
    app: str,
    sink: GoalSink,
    *,
    mode: str = "background",
    duration: float = 10.0,
    concurrency: int = 16,
    workers: int = 2,
) -> LoadResult:
    """Serve *app*, drive it for *duration* seconds, stop it (flushing), count the deliveries."""
    before = sink.goal_count()
    env = {"GOALTRACK_MODE": mode, "GOALTRACK_MAX_QUEUE_SIZE": "10000"}
    with serve_example(app, sink.api_url, workers=workers, env=env) as running:
        counts, max_backlog, elapsed = asyncio.run(
            _drive(app, running.url, sink, duration, concurrency, before)
        )
    status = running.exit_status
    if status not in (0, None):
        raise RuntimeError(f"{app} exited with {status}:\n{running.output[-2000:]}")
    expected = counts["requests"] if mode == "background" else 0
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    delivered = sink.goal_count() - before
    while delivered < expected and time.monotonic() < deadline:
        time.sleep(0.1)  # polling interval of a deadline-bound wait
        delivered = sink.goal_count() - before
    return LoadResult(
        app, mode, elapsed, counts["requests"], counts["errors"], max_backlog, delivered
    )


def markdown(results: list[LoadResult]) -> str:
    lines = [
        "| app (server) | goaltrack | requests/s | requests | errors | max backlog | delivered |"
        " lost |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    servers = {"django": "Django (gunicorn, 2 workers)", "flask": "Flask (gunicorn, 2 workers)"}
    servers["fastapi"] = "FastAPI (uvicorn, 2 workers)"
    for r in results:
        delivered = str(r.delivered) if r.mode == "background" else "- (disabled)"
        lines.append(
            f"| {servers[r.app]} | {r.mode} | {r.requests_per_s:,.0f} | {r.requests:,} |"
            f" {r.errors} | {r.max_backlog if r.mode == 'background' else '-'} | {delivered} |"
            f" {r.lost} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from bench._support import FakeAPIProcess

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--apps", default="django,flask,fastapi")
    args = parser.parse_args(argv)
    results: list[LoadResult] = []
    with FakeAPIProcess(quiet=True) as api:
        for app in args.apps.split(","):
            for mode in ("disabled", "background"):
                result = run_load(
                    app, api, mode=mode, duration=args.duration, concurrency=args.concurrency
                )
                results.append(result)
                print(f"{app} {mode}: {result.requests_per_s:,.0f} req/s", file=sys.stderr)
    print(
        f"Load: {args.duration:g} s per run, {args.concurrency} concurrent clients on loopback,"
        " every request tracking one goal.\n"
    )
    print(markdown(results))
    failed = [r for r in results if r.errors or r.lost]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
