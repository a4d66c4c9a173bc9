"""Django adapter costs, measured in one run: the middleware's overhead and track_goal's price.

1. ``GoalTrackMiddleware`` on a trivial view: two ``WSGIHandler`` instances, one with an empty
   middleware stack and one with only goaltrack's (the least favourable comparison: nothing
   else dilutes the overhead), called directly with the same WSGI environ, alternating in many
   short batches and keeping each handler's fastest batch. Goal: at most +3 %.
2. The request-path cost of ``track_goal(request, "signup", {...})`` against
   segment-analytics-python's ``Client.track`` with the same three properties. goaltrack runs a
   real background tracker whose API URL is a closed loopback port: the full accept path runs
   (validation with the provider's rules, enqueue), its workers get "connection refused" once
   and then wait, so no network and no delivery run while we measure. Goals pile up in its queue
   meanwhile, and a longer queue costs more per call (the cyclic GC walks it), so, as in
   ``track_cost.py``, a fresh process-wide tracker (``configure_from_settings()``, what the app
   does) takes over every 10,000 calls, warmed up and settled before the timing: the backlog
   never exceeds the default ``MAX_QUEUE_SIZE`` (where production workers keep the queue near
   empty while the API is up). segment runs with ``send=False`` (its whole ``track`` but the
   final queue put, and no consumer thread: it keeps nothing). Rounds are interleaved; figures
   are medians of process CPU time per call. Goal: at most 0.25x segment.

3. Unless ``--no-http``: the end-to-end figure, the trivial view served by gunicorn (one sync
   worker, bare stack), with vs without the middleware, over loopback HTTP (``bench/_http.py``).

    python bench/bench_django.py [--batches 30] [--batch-size 2000] [--calls 20000] [--no-http]
"""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import _http
import django
from _support import closed_port, wait_for_goaltrack_workers_to_exit
from django.conf import settings

BROWSER_UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15"
)
MIDDLEWARE_GOAL = 0.03
TRACK_GOAL_RATIO = 0.25
BACKLOG = 10_000
"""Goals a goaltrack tracker may hold while timed; then a fresh one takes over."""
WARMUP_CALLS = 200
SETTLE = 0.05
"""Seconds for a fresh tracker's workers to meet the closed port and wait, before the timing."""
METADATA = {"plan": "pro", "amount": 29, "currency": "usd"}

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def configure_django() -> None:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["django.contrib.sessions", "goaltrack.django"],
        SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
        MIDDLEWARE=[],
        DATABASES={},
        LOGGING_CONFIG=None,
        GOALTRACK={
            "API_KEY": "df_bench_0123456789abcdef",
            "API_URL": f"http://127.0.0.1:{closed_port()}",
            "MAX_QUEUE_SIZE": BACKLOG + WARMUP_CALLS + 100,
            "FLUSH_AT_EXIT": False,
            "SHUTDOWN_TIMEOUT": 0,  # a tracker replaced by the next one drops its backlog at once
        },
    )
    django.setup()


def trivial_view(request: Any) -> Any:
    from django.http import HttpResponse

    return HttpResponse("ok")


def _urlpatterns() -> list[Any]:
    from django.urls import path

    return [path("", trivial_view)]


def __getattr__(name: str) -> Any:
    # ROOT_URLCONF is this module; its urlpatterns can only be built once Django is set up.
    if name == "urlpatterns":
        return _urlpatterns()
    raise AttributeError(name)


def wsgi_environ(cookies: bool) -> dict[str, Any]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_USER_AGENT": BROWSER_UA,
        "HTTP_ACCEPT": "text/html",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(),
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if cookies:
        environ["HTTP_COOKIE"] = (
            f"datafast_visitor_id={uuid.uuid4()}; datafast_session_id=s{uuid.uuid4()}; theme=dark"
        )
    return environ


def run_batch(app: WsgiApp, environ: dict[str, Any], requests: int) -> float:
    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        pass

    started = time.perf_counter()
    for _ in range(requests):
        body = app(dict(environ), start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()
    return (time.perf_counter() - started) / requests


#: What ``django-admin startproject`` lists, minus what needs the database or templates.
STARTPROJECT_STACK = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
GOALTRACK_MIDDLEWARE = "goaltrack.django.middleware.GoalTrackMiddleware"


def middleware_overhead(
    label: str, cookies: bool, batches: int, batch_size: int, stack: list[str]
) -> float:
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import override_settings

    with override_settings(MIDDLEWARE=stack):
        plain = WSGIHandler()
    with override_settings(MIDDLEWARE=[*stack, GOALTRACK_MIDDLEWARE]):
        tracked = WSGIHandler()
    environ = wsgi_environ(cookies)
    run_batch(plain, environ, batch_size // 10)  # warm up
    run_batch(tracked, environ, batch_size // 10)
    best_plain = best_tracked = float("inf")
    for _ in range(batches):
        best_plain = min(best_plain, run_batch(plain, environ, batch_size))
        best_tracked = min(best_tracked, run_batch(tracked, environ, batch_size))
    overhead = best_tracked / best_plain - 1
    print(
        f"  {label:<52} {best_plain * 1e6:7.1f} µs -> {best_tracked * 1e6:7.1f} µs"
        f"  overhead {overhead * 100:+5.1f}%"
    )
    return overhead


def track_goal_cost(calls: int, rounds: int) -> tuple[float, dict[str, float]]:
    from django.core.handlers.wsgi import WSGIRequest
    from segment.analytics import Client as SegmentClient

    from goaltrack.django import track_goal
    from goaltrack.django.wiring import configure_from_settings

    request = WSGIRequest(wsgi_environ(cookies=True))
    visitor_id = request.COOKIES["datafast_visitor_id"]
    segment = SegmentClient("bench-write-key", send=False, host=f"http://127.0.0.1:{closed_port()}")

    def goaltrack_cached(n: int) -> None:  # with the middleware: the visitor is read already
        for _ in range(n):
            track_goal(request, "signup", {"plan": "pro", "amount": 29, "currency": "usd"})

    def goaltrack_first(n: int) -> None:  # without it: each call reads the cookies first
        state = request.__dict__
        for _ in range(n):
            state.pop("goaltrack", None)
            state.pop("COOKIES", None)
            track_goal(request, "signup", {"plan": "pro", "amount": 29, "currency": "usd"})

    def segment_track(n: int) -> None:
        for _ in range(n):
            segment.track(
                anonymous_id=visitor_id,
                event="signup",
                properties={"plan": "pro", "amount": 29, "currency": "usd"},
            )

    def fresh_tracker() -> None:
        # The app's own way to (re)build the process-wide tracker; the previous one (closed
        # with SHUTDOWN_TIMEOUT 0) drops its backlog, and its workers exit before the timing.
        configure_from_settings()
        wait_for_goaltrack_workers_to_exit()
        goaltrack_cached(WARMUP_CALLS)  # starts the new tracker's workers
        time.sleep(SETTLE)

    contenders = {
        "track_goal(request, ...), middleware installed": goaltrack_cached,
        "track_goal(request, ...), no middleware": goaltrack_first,
        "segment Client.track(), send=False": segment_track,
    }
    uses_tracker = {run: run is not segment_track for run in contenders.values()}
    for run in contenders.values():
        run(WARMUP_CALLS)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for index in range(rounds):
        names = list(contenders)
        names = names[index % len(names) :] + names[: index % len(names)]
        for name in names:
            run = contenders[name]
            elapsed = 0.0
            for start in range(0, calls, BACKLOG):
                chunk = min(BACKLOG, calls - start)
                if uses_tracker[run]:
                    fresh_tracker()
                else:
                    time.sleep(SETTLE)  # every slot starts after the same short sleep
                started = time.process_time()
                run(chunk)
                elapsed += time.process_time() - started
            times[name].append(elapsed / calls)
    medians = {name: statistics.median(values) for name, values in times.items()}
    segment_time = medians["segment Client.track(), send=False"]
    for name, value in medians.items():
        print(f"  {name:<46} {value * 1e6:6.2f} µs  ({value / segment_time:.2f}x segment)")
    worst = max(
        medians["track_goal(request, ...), middleware installed"],
        medians["track_goal(request, ...), no middleware"],
    )
    return worst / segment_time, medians


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    _http.add_arguments(parser)
    args = parser.parse_args()
    configure_django()
    # Replacing a tracker with goals still queued logs a (rate-limited) drop warning: expected.
    logging.getLogger("goaltrack").setLevel(logging.ERROR)
    print(
        f"Django {django.get_version()}: GoalTrackMiddleware on a trivial view, WSGIHandler called"
        f" directly, {args.batches} alternating batches of {args.batch_size}, fastest batch each"
    )
    overheads = []
    for stack_name, stack in (("bare stack", []), ("startproject stack", STARTPROJECT_STACK)):
        for cookies in (False, True):
            what = "browser with the visitor cookie" if cookies else "request without cookies"
            overheads.append(
                middleware_overhead(
                    f"{stack_name}, {what}", cookies, args.batches, args.batch_size, stack
                )
            )
    worst = max(overheads)
    verdict = "within" if worst <= MIDDLEWARE_GOAL else "OVER"
    goal = f"{MIDDLEWARE_GOAL:.0%}"
    print(f"  worst middleware overhead {worst * 100:+.1f}% ({verdict} the {goal} goal)")
    print(
        f"\nRequest-path cost per goal (process CPU, median of {args.rounds} interleaved rounds"
        f" of {args.calls} calls)"
    )
    ratio, _ = track_goal_cost(args.calls, args.rounds)
    verdict = "within" if ratio <= TRACK_GOAL_RATIO else "OVER"
    print(f"  track_goal / segment: {ratio:.2f}x ({verdict} the {TRACK_GOAL_RATIO}x goal)")
    _http.run_section(
        args,
        [
            (
                "gunicorn sync, Django",
                _http.gunicorn("django_plain"),
                _http.gunicorn("django_tracked"),
            )
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
