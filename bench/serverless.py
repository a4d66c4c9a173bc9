"""What delivering before the freeze costs a Lambda invocation that tracked goals.

On a serverless platform goaltrack makes a request that tracked goals wait for their delivery
before the response is handed back (``docs/serverless.md``): the invocation is longer by about
one API round trip (several goals go out together, ``max_in_flight`` at a time). Measured here
in one run, against the bundled fake API in a child process answering each goal after 20 ms:
FastAPI under Mangum and Flask under apig-wsgi, invoked in this process with an API Gateway
event, as Lambda's runtime would, each variant in turn in every round:

- without goaltrack (the baseline: the same app, no middleware or extension, tracking nothing);
- goaltrack on a serverless platform (its default there) with 0, 1 and 10 goals tracked;
- for comparison: ``mode="sync"`` (each ``track()`` delivers before returning) with 1 and 10
  goals, and ``serverless=False`` with 1 goal (no wait: the goal is in flight at the freeze).

Printed: the median invocation in ms, what goaltrack adds to the baseline's median, and the
ratio to it.

    python bench/serverless.py [--quick]      # --quick: fewer rounds
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from apig_wsgi import make_lambda_handler  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from flask import Flask, request  # noqa: E402
from mangum import Mangum  # noqa: E402

import goaltrack.flask  # noqa: E402
from bench._support import (  # noqa: E402
    API_KEY,
    FakeAPIProcess,
    command_line,
    markdown_table,
    median,
)
from goaltrack import GoalTracker  # noqa: E402
from goaltrack.asgi import GoalTrackMiddleware, track_goal  # noqa: E402
from tests.support.lambda_runtime import Context, http_event  # noqa: E402

LATENCY_MS = 20
ROUNDS = 60
QUICK_ROUNDS = 15
WARMUP = 3

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
Closer = Callable[[], bool]

#: (label, goals tracked, tracker options; None: the app without goaltrack)
VARIANTS: tuple[tuple[str, int, dict[str, Any] | None], ...] = (
    ("without goaltrack", 0, None),
    ("goaltrack, serverless", 0, {"serverless": True}),
    ("goaltrack, serverless", 1, {"serverless": True}),
    ("goaltrack, serverless", 10, {"serverless": True}),
    ('mode="sync"', 1, {"mode": "sync", "serverless": True}),
    ('mode="sync"', 10, {"mode": "sync", "serverless": True}),
    ("serverless=False (goal lost at the freeze)", 1, {"serverless": False}),
)


def fastapi_handler(api_url: str, options: dict[str, Any] | None) -> tuple[Handler, Closer]:
    app = FastAPI()
    tracker = None
    if options is not None:
        tracker = GoalTracker(API_KEY, api_url=api_url, **options)
        app.add_middleware(GoalTrackMiddleware, tracker=tracker)

    @app.get("/track")
    async def track(request: Request, goals: int = 0) -> dict[str, int]:
        for n in range(goals):
            track_goal(request, "purchase", {"n": n})
        return {"tracked": goals}

    handler: Handler = Mangum(app, lifespan="off")
    return handler, (tracker.close if tracker is not None else lambda: True)


def flask_handler(api_url: str, options: dict[str, Any] | None) -> tuple[Handler, Closer]:
    app = Flask(__name__)
    if options is not None:
        goaltrack.flask.GoalTrack(app, api_key=API_KEY, api_url=api_url, **options)

    @app.get("/track")
    def track() -> dict[str, int]:
        goals = int(request.args.get("goals", "0"))
        for n in range(goals):
            goaltrack.flask.track_goal(request, "purchase", {"n": n})
        return {"tracked": goals}

    handler: Handler = make_lambda_handler(app)
    if options is None:
        return handler, lambda: True
    return handler, goaltrack.flask.get_tracker(app).close


FRAMEWORKS: dict[str, Callable[[str, dict[str, Any] | None], tuple[Handler, Closer]]] = {
    "FastAPI under Mangum": fastapi_handler,
    "Flask under apig-wsgi": flask_handler,
}


def measure(api: FakeAPIProcess, rounds: int) -> list[list[str]]:
    visitor = api.add_visitor()
    cookies = {"datafast_visitor_id": visitor}
    rows = []
    for framework, build in FRAMEWORKS.items():
        closers: list[Closer] = []
        runs: list[tuple[Handler, dict[str, Any], list[float]]] = []
        for _label, goals, options in VARIANTS:
            handler, close = build(api.api_url, options)
            closers.append(close)
            event = http_event("/track", query=f"goals={goals}", cookies=cookies)
            runs.append((handler, event, []))
        for round_number in range(WARMUP + rounds):
            for handler, event, times in runs:
                started = time.perf_counter()
                answer = handler(event, Context(30_000))
                took = time.perf_counter() - started
                assert answer["statusCode"] == 200, answer
                if round_number >= WARMUP:
                    times.append(took)
        for close in closers:
            close()
        baseline = median(runs[0][2])
        for (label, goals, _options), (_handler, _event, times) in zip(VARIANTS, runs, strict=True):
            taken = median(times)
            rows.append(
                [
                    framework,
                    label,
                    str(goals),
                    f"{taken * 1000:.2f}",
                    f"{(taken - baseline) * 1000:+.2f}",
                    f"{taken / baseline:.1f}x",
                ]
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROUNDS} rounds")
    args = parser.parse_args()
    logging.getLogger("goaltrack").setLevel(logging.ERROR)  # the INFO line, once per tracker
    rounds = QUICK_ROUNDS if args.quick else ROUNDS
    with FakeAPIProcess() as api:
        api.set_latency(LATENCY_MS)
        rows = measure(api, rounds)
    print(
        f"Lambda invocations that tracked goals, the API answering after {LATENCY_MS} ms "
        f"(median of {rounds} rounds; {command_line('serverless.py', args.quick)}):\n"
    )
    headers = ["app", "variant", "goals", "invocation ms", "added ms", "vs without"]
    print(markdown_table(headers, rows, left=2))


if __name__ == "__main__":
    main()
