"""The first-party script proxy: the events per second it passes and the latency it adds.

Each example (Django shop and Flask blog under one gunicorn sync worker, the FastAPI app under
one uvicorn worker) runs with ``GOALTRACK_SCRIPT_PROXY=1`` against the fake API (in its own
process). The driver posts the tracking script's pageview event either through the site
(``/_goaltrack/events``) or straight to the fake API's events endpoint, the baseline, in the same
run:

- latency: one request at a time, proxied and direct alternating, the median and 90th
  percentile of the answer as the browser sees it (Django and Flask answer 202 before
  forwarding; ASGI relays the provider's answer), and the ratio proxied / direct;
- throughput: *concurrency* clients for *duration* seconds, events answered per second, proxied
  and direct, and their ratio; ``refused`` counts the 503s of a full forwarding queue.

    python bench/proxy.py [--quick] [--duration 5] [--concurrency 8] [--apps django,flask,fastapi]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench._support import FakeAPIProcess, markdown_table  # noqa: E402
from tests.support.browser import BROWSER_UA  # noqa: E402
from tests.support.examples import serve_example  # noqa: E402

SERVERS = {"django": "gunicorn, 1 sync worker", "flask": "gunicorn, 1 sync worker"}
SERVERS["fastapi"] = "uvicorn, 1 worker"


def event() -> bytes:
    visitor = str(uuid.uuid4())
    return (
        f'{{"type":"pageview","visitorId":"{visitor}","sessionId":"s{uuid.uuid4()}",'
        '"url":"http://127.0.0.1/bench"}'
    ).encode()


HEADERS = {"Content-Type": "application/json", "User-Agent": BROWSER_UA}


def latencies(proxied_url: str, direct_url: str, count: int) -> tuple[list[float], list[float]]:
    """*count* events each way, alternating, one at a time; seconds per answer."""
    proxied: list[float] = []
    direct: list[float] = []
    with httpx.Client(timeout=10, headers=HEADERS) as client:
        for _ in range(5):  # warm-up: connections, the proxy's pool
            client.post(proxied_url, content=event())
            client.post(direct_url, content=event())
        for _ in range(count):
            for url, into in ((proxied_url, proxied), (direct_url, direct)):
                started = time.perf_counter()
                response = client.post(url, content=event())
                into.append(time.perf_counter() - started)
                if response.status_code not in (200, 202):
                    raise RuntimeError(f"{url} answered {response.status_code}")
    return proxied, direct


@dataclass
class Throughput:
    answered: int = 0
    refused: int = 0
    errors: int = 0
    seconds: float = 0.0

    @property
    def per_second(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0


def throughput(url: str, concurrency: int, duration: float) -> Throughput:
    result = Throughput()
    lock = threading.Lock()
    body = event()  # the same visitor over and over: the fake API only records it
    deadline = time.perf_counter() + duration

    def drive() -> None:
        answered = refused = errors = 0
        with httpx.Client(timeout=10, headers=HEADERS) as client:
            while time.perf_counter() < deadline:
                try:
                    status = client.post(url, content=body).status_code
                except httpx.TransportError:
                    errors += 1
                    continue
                if status in (200, 202):
                    answered += 1
                elif status == 503:
                    refused += 1
                else:
                    errors += 1
        with lock:
            result.answered += answered
            result.refused += refused
            result.errors += errors

    started = time.perf_counter()
    drivers = [threading.Thread(target=drive) for _ in range(concurrency)]
    for driver in drivers:
        driver.start()
    for driver in drivers:
        driver.join()
    result.seconds = time.perf_counter() - started
    return result


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests, shorter runs")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per throughput run")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent clients")
    parser.add_argument("--apps", default="django,flask,fastapi")
    args = parser.parse_args()
    count = 100 if args.quick else 400
    duration = 2.0 if args.quick else args.duration

    latency_rows: list[list[str]] = []
    throughput_rows: list[list[str]] = []
    with FakeAPIProcess(quiet=True) as fake:
        direct_url = f"{fake.api_url}/api/events"
        for name in args.apps.split(","):
            environment = {"GOALTRACK_SCRIPT_PROXY": "1", "GOALTRACK_MODE": "disabled"}
            with serve_example(name, fake.api_url, env=environment) as site:
                proxied_url = f"{site.url}/_goaltrack/events"
                proxied, direct = latencies(proxied_url, direct_url, count)
                through = throughput(proxied_url, args.concurrency, duration)
                straight = throughput(direct_url, args.concurrency, duration)
            label = f"{name} ({SERVERS[name]})"
            added = statistics.median(proxied) - statistics.median(direct)
            latency_rows.append(
                [
                    label,
                    f"{statistics.median(proxied) * 1000:.2f}",
                    f"{p90(proxied) * 1000:.2f}",
                    f"{statistics.median(direct) * 1000:.2f}",
                    f"{statistics.median(proxied) / statistics.median(direct):.2f}x",
                    f"{added * 1000:+.2f}",
                ]
            )
            throughput_rows.append(
                [
                    label,
                    f"{through.per_second:.0f}",
                    f"{straight.per_second:.0f}",
                    f"{through.per_second / straight.per_second:.2f}x",
                    str(through.refused),
                    str(through.errors + straight.errors),
                ]
            )
    quick = " --quick" if args.quick else ""
    print(f"python bench/proxy.py{quick}: {count} events each way, one at a time")
    print(
        markdown_table(
            ["app", "proxied ms", "proxied p90", "direct ms", "proxied/direct", "added ms"],
            latency_rows,
        )
    )
    print(f"\n{args.concurrency} concurrent clients, {duration:g} s each way")
    print(
        markdown_table(
            ["app", "proxied events/s", "direct events/s", "proxied/direct", "refused", "errors"],
            throughput_rows,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
