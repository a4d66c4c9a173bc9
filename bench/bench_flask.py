"""Overhead of the Flask extension on a trivial view, measured in one run.

Calls each app's WSGI callable directly (no server, no test client: Flask's own work is all the
baseline has) with the same request, alternating between the two apps in many short batches and
keeping each app's fastest batch, which filters out the noise of a busy machine. Prints the time
per request and the overhead relative to the plain app.

Then, unless ``--no-http``, the end-to-end figure: the trivial view served by gunicorn (one sync
worker), with vs without the extension, over loopback HTTP (``bench/_http.py``).

    python bench/bench_flask.py [--batches 40] [--batch-size 1000] [--no-http]
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import _http
from flask import Flask
from werkzeug.test import EnvironBuilder

from goaltrack.flask import GoalTrack, track_goal

BROWSER_UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15"
)
GOAL_LIMIT = 0.03

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def make_app(*, with_extension: bool) -> Flask:
    """The same app twice, routes included (routing cost grows with the rules)."""
    # Not Flask("bench"): with the repository on sys.path "bench" is a namespace package, whose
    # location Flask cannot find (StopIteration at Flask()).
    app = Flask(__name__)
    if with_extension:
        # Disabled: validates and sends nothing, so only the extension's own work counts.
        app.config["GOALTRACK_MODE"] = "disabled"
        GoalTrack(app)
    tracked = track_goal("signup", metadata={"plan": "pro"}) if with_extension else None

    @app.get("/")
    def index() -> str:
        return "ok"

    def goal() -> str:
        return "ok"

    app.add_url_rule("/goal", view_func=tracked(goal) if tracked else goal)
    return app


def environ(path: str, cookies: bool) -> dict[str, Any]:
    headers = {"User-Agent": BROWSER_UA, "Accept": "text/html"}
    if cookies:
        headers["Cookie"] = (
            f"datafast_visitor_id={uuid.uuid4()}; datafast_session_id=s{uuid.uuid4()}; theme=dark"
        )
    return EnvironBuilder(path=path, headers=list(headers.items())).get_environ()


def run_round(app: WsgiApp, env: dict[str, Any], requests: int) -> float:
    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        pass

    started = time.perf_counter()
    for _ in range(requests):
        body = app(dict(env), start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return (time.perf_counter() - started) / requests


def compare(
    label: str,
    baseline: tuple[WsgiApp, dict[str, Any]],
    candidate: tuple[WsgiApp, dict[str, Any]],
    requests: int,
    rounds: int,
) -> float:
    best_base = best_cand = float("inf")
    run_round(*baseline, requests // 10)  # warm up
    run_round(*candidate, requests // 10)
    for _ in range(rounds):
        best_base = min(best_base, run_round(*baseline, requests))
        best_cand = min(best_cand, run_round(*candidate, requests))
    ratio = best_cand / best_base - 1
    print(
        f"{label:<52} {best_base * 1e6:7.1f} µs -> {best_cand * 1e6:7.1f} µs  "
        f"overhead {ratio * 100:+5.1f}%"
    )
    return ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=1000)
    _http.add_arguments(parser)
    args = parser.parse_args()
    plain = make_app(with_extension=False).wsgi_app
    tracked = make_app(with_extension=True).wsgi_app
    print(
        f"Flask trivial view via WSGI, {args.batches} alternating batches of {args.batch_size}"
        " requests per app, fastest batch each"
    )
    overheads = [
        compare(
            "extension installed, request without cookies",
            (plain, environ("/", cookies=False)),
            (tracked, environ("/", cookies=False)),
            args.batches,
            args.batch_size,
        ),
        compare(
            "extension installed, browser with the visitor cookie",
            (plain, environ("/", cookies=True)),
            (tracked, environ("/", cookies=True)),
            args.batches,
            args.batch_size,
        ),
    ]
    compare(
        "@track_goal view (goal validated and queued)",
        (plain, environ("/", cookies=True)),
        (tracked, environ("/goal", cookies=True)),
        args.batches,
        args.batch_size,
    )
    worst = max(overheads)
    verdict = "within" if worst <= GOAL_LIMIT else "OVER"
    print(f"worst extension overhead {worst * 100:+.1f}% ({verdict} the {GOAL_LIMIT:.0%} goal)")
    _http.run_section(
        args,
        [("gunicorn sync, Flask", _http.gunicorn("flask_plain"), _http.gunicorn("flask_tracked"))],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
