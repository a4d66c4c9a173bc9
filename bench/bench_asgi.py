"""Overhead of GoalTrackMiddleware on a trivial endpoint, measured in one run.

Calls the ASGI apps directly in-process (no server, no sockets) with a synthetic scope carrying a
browser User-Agent and DataFast visitor and session cookies, so that the figure is the
middleware's own cost: header scan, cookie parsing, bot check, scope state and the ContextVar
binding. A browser sends the same Cookie header request after request, and the middleware
remembers the visitor of the last headers it read: the "new visitor each req." row gives every
request a Cookie header never seen before, so it pays the full parse every time. Rounds of
"without", "with a no-op middleware" and "with GoalTrackMiddleware" alternate, and the fastest
round of each counts, to keep machine noise out of the ratio. The no-op column shows what adding
any middleware layer costs on that framework.

Then, unless ``--no-http``, the end-to-end figures: the Starlette and FastAPI endpoints served
by uvicorn, with vs without the middleware, over loopback HTTP (``bench/_http.py``).

    python bench/bench_asgi.py [--requests 5000] [--rounds 15] [--no-http]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import _http
from fastapi import FastAPI
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


def fastapi_app(middleware: list[Middleware]) -> ASGIApp:
    app = FastAPI(middleware=middleware, openapi_url=None)

    @app.get("/")
    async def root() -> dict[str, str]:
        return {"hello": "world"}

    return app


def starlette_app(middleware: list[Middleware]) -> ASGIApp:
    return Starlette(routes=[Route("/", hello)], middleware=middleware)


async def bare_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def make_scope() -> Scope:
    cookie = (
        f"theme=dark; datafast_visitor_id={uuid.uuid4()}; datafast_session_id=s{uuid.uuid4()}; "
        "lang=en"
    ).encode()
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


async def run_requests(app: ASGIApp, count: int, fresh: bool = False) -> float:
    """Seconds for *count* requests through *app*; *fresh*: another visitor on each one."""
    template = make_scope()

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        return None

    if fresh:
        # Made before the clock starts: new ids, never seen before, in every round.
        scopes = [make_scope() for _ in range(count)]
        started = time.perf_counter()
        for scope in scopes:
            await app(scope, receive, send)
        return time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(count):
        await app(dict(template), receive, send)
    return time.perf_counter() - started


async def compare(apps: list[ASGIApp], count: int, rounds: int, fresh: bool) -> list[float]:
    """Fastest per-request seconds of each app, rounds interleaved."""
    for app in apps:
        await run_requests(app, count // 10, fresh)  # warm up
    best = [float("inf")] * len(apps)
    for _ in range(rounds):
        for index, app in enumerate(apps):
            best[index] = min(best[index], await run_requests(app, count, fresh) / count)
    return best


class Passthrough:
    """The cheapest possible pure ASGI middleware: the floor for any middleware layer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=15)
    _http.add_arguments(parser)
    args = parser.parse_args()

    # A real tracker (background mode) pointed at an address nothing listens on: the trivial
    # endpoint tracks no goal, so nothing is ever sent.
    tracker = GoalTracker("df_bench_key_0123456789", api_url="http://127.0.0.1:9")
    goaltrack_layer = Middleware(GoalTrackMiddleware, tracker=tracker)
    passthrough_layer = Middleware(Passthrough)
    bare_bones = [bare_app, Passthrough(bare_app), GoalTrackMiddleware(bare_app, tracker=tracker)]
    cases: dict[str, tuple[list[ASGIApp], bool]] = {
        "Starlette trivial endpoint": (
            [
                starlette_app([]),
                starlette_app([passthrough_layer]),
                starlette_app([goaltrack_layer]),
            ],
            False,
        ),
        "FastAPI trivial endpoint": (
            [fastapi_app([]), fastapi_app([passthrough_layer]), fastapi_app([goaltrack_layer])],
            False,
        ),
        "bare ASGI app (worst case)": (bare_bones, False),
        "bare, new visitor each req.": (bare_bones, True),
    }
    print(f"{args.requests} requests x {args.rounds} rounds, fastest round, in-process ASGI calls")
    print("a visitor cookie and a browser User-Agent on every request; no goal tracked")
    print(
        f"{'case':<28} {'without':>9} {'no-op mw':>9} {'goaltrack':>10} "
        f"{'overhead':>9} {'ratio':>6} {'vs no-op':>8}"
    )
    for label, (apps, fresh) in cases.items():
        base, noop, wrapped = asyncio.run(compare(apps, args.requests, args.rounds, fresh))
        print(
            f"{label:<28} {base * 1e6:>7.2f}us {noop * 1e6:>7.2f}us {wrapped * 1e6:>8.2f}us "
            f"{(wrapped - base) * 1e6:>7.2f}us {wrapped / base:>6.3f} {wrapped / noop:>8.3f}"
        )
    print(f"goal: ratio <= {1 + GOAL_BUDGET:.2f}")
    tracker.close(0)
    _http.run_section(
        args,
        [
            (
                "uvicorn, Starlette",
                _http.uvicorn("starlette_plain"),
                _http.uvicorn("starlette_tracked"),
            ),
            ("uvicorn, FastAPI", _http.uvicorn("fastapi_plain"), _http.uvicorn("fastapi_tracked")),
        ],
    )


if __name__ == "__main__":
    main()
