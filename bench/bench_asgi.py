"""Overhead of GoalTrackMiddleware on a trivial endpoint, measured in one run.

Calls the ASGI apps directly in-process (no server, no sockets) with a synthetic scope carrying a
browser User-Agent and a DataFast visitor cookie, so that the figure is the middleware's own
cost: header scan, cookie parsing, bot check, scope state and the ContextVar binding. Rounds of
"without" and "with" alternate, and the fastest round of each counts, to keep machine noise out
of the ratio.

    python bench/bench_asgi.py [--requests 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from goaltrack import GoalTracker
from goaltrack.asgi import GoalTrackMiddleware

GOAL_BUDGET = 0.03


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def starlette_app(middleware: list[Middleware]) -> ASGIApp:
    return Starlette(routes=[Route("/", hello)], middleware=middleware)


async def bare_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def make_scope() -> Scope:
    cookie = f"theme=dark; datafast_visitor_id={uuid.uuid4()}; lang=en".encode()
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (
                b"user-agent",
                b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128",
            ),
            (b"accept", b"text/html"),
            (b"cookie", cookie),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def run_requests(app: ASGIApp, count: int) -> float:
    """Seconds for *count* requests through *app*."""
    template = make_scope()

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        return None

    started = time.perf_counter()
    for _ in range(count):
        await app(dict(template), receive, send)
    return time.perf_counter() - started


async def compare(without: ASGIApp, with_: ASGIApp, count: int, rounds: int) -> tuple[float, float]:
    """Fastest per-request seconds without and with the middleware."""
    await run_requests(without, count // 10)  # warm up both
    await run_requests(with_, count // 10)
    best_without = best_with = float("inf")
    for _ in range(rounds):
        best_without = min(best_without, await run_requests(without, count) / count)
        best_with = min(best_with, await run_requests(with_, count) / count)
    return best_without, best_with


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    # A real tracker (background mode) pointed at an address nothing listens on: the trivial
    # endpoint tracks no goal, so nothing is ever sent.
    tracker = GoalTracker("df_bench_key_0123456789", api_url="http://127.0.0.1:9")
    cases: dict[str, tuple[ASGIApp, ASGIApp]] = {
        "Starlette trivial endpoint": (
            starlette_app([]),
            starlette_app([Middleware(GoalTrackMiddleware, tracker=tracker)]),
        ),
        "bare ASGI app (worst case)": (
            bare_app,
            GoalTrackMiddleware(bare_app, tracker=tracker),
        ),
    }
    print(f"{args.requests} requests x {args.rounds} rounds, fastest round, in-process ASGI calls")
    print(f"{'case':<30} {'without':>10} {'with':>10} {'overhead':>10} {'ratio':>8}")
    verdicts = []
    for label, (without, with_) in cases.items():
        base, wrapped = asyncio.run(compare(without, with_, args.requests, args.rounds))
        ratio = wrapped / base
        print(
            f"{label:<30} {base * 1e6:>8.2f}us {wrapped * 1e6:>8.2f}us "
            f"{(wrapped - base) * 1e6:>8.2f}us {ratio:>8.3f}"
        )
        verdicts.append((label, ratio))
    label, ratio = verdicts[0]
    verdict = "within" if ratio - 1 <= GOAL_BUDGET else "OVER"
    print(f"{label}: +{(ratio - 1) * 100:.1f}% ({verdict} the {GOAL_BUDGET:.0%} goal)")
    tracker.close(0)


if __name__ == "__main__":
    main()
