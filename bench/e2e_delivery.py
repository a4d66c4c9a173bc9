"""End to end under real servers: server CPU per request with one goal (or event) per request,
and whether delivery keeps pace with the app, for goaltrack's courier and threads, segment and
posthog, measured in one run.

The apps (``bench/_e2e_apps.py``): a minimal Django app under gunicorn (2 sync workers) and a
minimal FastAPI app under uvicorn (one process), each with goaltrack's middleware and the routes
``/`` (trivial: tracks nothing), ``/goal`` (one goal through the adapter's ``track_goal``),
``/segment`` and ``/posthog`` (one event through each SDK's default background consumer, which
batches). Each app runs twice side by side: with goaltrack's default options (delivery from a
courier process per web process) and with ``delivery_process=False`` (delivery from worker
threads in the web process); the routes "trivial", "segment" and "posthog" are driven on the
first. goaltrack delivers to the fake API (``python -m goaltrack.testing``), segment and posthog
to a stand-in that answers 200 to any POST and counts the events (``bench/_sink.py``), each in
its own process, with the same injected latency (0 ms, then 20 ms). With ``--receiver sink``
goaltrack delivers to that stand-in too: a provider's API does not run on the web host, and the
fake API's own work per goal (about 0.6 ms of CPU, a contract check per request) would otherwise
take the cores the app and its courier share.

The load generator (``bench/_loadgen.py``) runs in its own process: a fixed number of keep-alive
connections, one visitor each, for a fixed time, one route at a time. Per round every route is
driven once, in a rotating order; after each the script waits until the sink has every event
answered as accepted. Reported per server and route (medians over rounds):

- requests/s; server CPU per request (psutil, user + system, over the drive and the drain):
  the server's whole process tree, couriers included, then its web processes alone (gunicorn's
  master and workers, or uvicorn's process), then the couriers alone; each against the trivial
  route's in the same round;
- the backlog: requests answered as tracked minus events the sink received, sampled every
  0.25 s while driving; its max, and its trend (least-squares slope after the first quarter:
  "growing" above 5% of the request rate); delivered/s during the drive;
- whether every event arrived once the drive stopped, and how long the drain took.

    python bench/e2e_delivery.py [--quick] [--rounds 3] [--duration 2] [--concurrency 8]
                                 [--receiver fake|sink]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import _http
import psutil
from _support import FakeAPIProcess, ServerProcess, command_line, markdown_table, median

BENCH = Path(__file__).resolve().parent
LATENCIES_MS = (0, 20)
SAMPLE_EVERY_S = 0.25
TREND_AFTER = 0.25
"""The backlog's trend is fitted over the samples after this fraction of the drive."""
GROWING = 0.05
"""A backlog growing faster than this fraction of the request rate is "growing"."""
DRAIN_TIMEOUT_S = 90.0
WARM_UP_S = 0.5
COURIER_MARK = "goaltrack.transports.courier"


@dataclass(frozen=True)
class Route:
    name: str
    path: str
    flavor: str  # which server instance: "courier" (default options) or "threads"
    sink: str  # "fake API", "sink" or "" (nothing sent)


ROUTES = (
    Route("trivial", "/", "courier", ""),
    Route("goaltrack courier", "/goal", "courier", "fake API"),
    Route("goaltrack threads", "/goal", "threads", "fake API"),
    Route("segment", "/segment", "courier", "sink"),
    Route("posthog", "/posthog", "courier", "sink"),
)
SERVERS: dict[str, tuple[str, _http.Command]] = {
    "gunicorn": (
        "gunicorn (2 sync workers), Django",
        _http.gunicorn("django_app", "bench._e2e_apps", workers=2),
    ),
    "uvicorn": ("uvicorn (1 process), FastAPI", _http.uvicorn("fastapi_app", "bench._e2e_apps")),
}


class SinkProcess(ServerProcess):
    """``python bench/_sink.py`` as a child process: the stand-in ingestion API."""

    command = [sys.executable, str(BENCH / "_sink.py")]
    name = "the sink"

    def reset(self) -> None:
        self._post("/_sink/reset", {})

    def set_latency(self, latency_ms: float) -> None:
        self._post("/_sink/latency", {"ms": latency_ms})

    def event_count(self) -> int:
        response = self._control.get(self.url + "/_sink/counts")
        response.raise_for_status()
        count: int = response.json()["events"]
        return count


@dataclass
class Cpu:
    total: float = 0.0
    web: float = 0.0
    courier: float = 0.0


class ProcessTree:
    """CPU time (user + system) of a server and its descendants, couriers told apart."""

    def __init__(self, pid: int) -> None:
        self._root = psutil.Process(pid)
        self._known: dict[int, tuple[psutil.Process, bool]] = {}

    def _processes(self) -> Iterator[tuple[psutil.Process, bool]]:
        for process in [self._root, *self._root.children(recursive=True)]:
            known = self._known.get(process.pid)
            if known is None:
                with contextlib.suppress(psutil.Error):
                    courier = COURIER_MARK in " ".join(process.cmdline())
                    self._known[process.pid] = known = (process, courier)
            if known is not None:
                yield known

    def cpu(self) -> dict[int, tuple[float, bool]]:
        """Seconds used so far, by pid, and whether that process is a courier."""
        used = {}
        for process, courier in self._processes():
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                used[process.pid] = (times.user + times.system, courier)
        return used

    @staticmethod
    def spent(before: dict[int, tuple[float, bool]], after: dict[int, tuple[float, bool]]) -> Cpu:
        spent = Cpu()
        for pid, (seconds, courier) in after.items():
            delta = seconds - before.get(pid, (0.0, courier))[0]
            spent.total += delta
            if courier:
                spent.courier += delta
            else:
                spent.web += delta
        return spent


@dataclass
class Phase:
    """One route driven once: what the load generator saw, the server spent, the sink got."""

    requests: int
    errors: int
    elapsed: float
    cpu: Cpu
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # t, answered, backlog
    delivered: int = 0
    drain_s: float = 0.0
    sink_busy: float = 0.0  # the receiving process's CPU over the drive, fraction of one core

    @property
    def rate(self) -> float:
        return self.requests / self.elapsed

    def per_request(self, seconds: float) -> float:
        return seconds / max(1, self.requests)

    @property
    def max_backlog(self) -> int:
        return max((backlog for _, _, backlog in self.samples), default=0)

    @property
    def slope(self) -> float:
        """The backlog's growth, events/s, after the first quarter of the drive (least squares)."""
        start = TREND_AFTER * self.elapsed
        late = [(t, backlog) for t, _, backlog in self.samples if t >= start]
        if len(late) < 3:
            return 0.0
        times, backlogs = zip(*late, strict=True)
        return statistics.linear_regression(times, backlogs).slope

    @property
    def delivered_rate(self) -> float:
        """Events the sink received per second while driving."""
        if not self.samples:
            return 0.0
        t, answered, backlog = self.samples[-1]
        return (answered - backlog) / t


def drive(
    url: str,
    route: Route,
    duration: float,
    visitors: list[str],
    tree: ProcessTree,
    counter: Callable[[], int] | None,
    receiver: psutil.Process | None,
) -> Phase:
    """Drive *route* for *duration*; wait for the sink to have every event; measure."""
    before = tree.cpu()
    receiver_before = sum(receiver.cpu_times()[:2]) if receiver is not None else 0.0
    command = [sys.executable, str(BENCH / "_loadgen.py"), url, route.path]
    command += ["--duration", str(duration), "--visitors", ",".join(visitors)]
    command += ["--every", str(SAMPLE_EVERY_S)]
    samples: list[tuple[float, int, int]] = []
    result: dict[str, float] = {}
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as loadgen:
        assert loadgen.stdout is not None
        for line in loadgen.stdout:
            if line.startswith("{"):
                result = json.loads(line)
                break
            elapsed, answered, _ = line.split()
            if counter is not None:
                samples.append((float(elapsed), int(answered), int(answered) - counter()))
    if loadgen.returncode != 0 or not result:
        raise RuntimeError(f"the load generator failed (exit {loadgen.returncode})")
    sink_busy = 0.0
    if receiver is not None:
        sink_busy = (sum(receiver.cpu_times()[:2]) - receiver_before) / result["elapsed"]
    requests = int(result["ok"])
    delivered = 0
    drain_started = time.monotonic()
    if counter is not None:
        deadline = drain_started + DRAIN_TIMEOUT_S
        delivered = counter()
        while delivered < requests and time.monotonic() < deadline:
            time.sleep(0.05)  # polling interval of a deadline-bound wait for the sink
            delivered = counter()
    drain_s = time.monotonic() - drain_started
    cpu = ProcessTree.spent(before, tree.cpu())
    return Phase(
        requests,
        int(result["errors"]),
        result["elapsed"],
        cpu,
        samples,
        delivered,
        drain_s,
        sink_busy,
    )


@dataclass
class Server:
    url: str
    tree: ProcessTree


def measure_server(
    server: str,
    latencies_ms: list[int],
    api: FakeAPIProcess,
    sink: SinkProcess,
    visitors: list[str],
    rounds: int,
    duration: float,
    goaltrack_receiver: str = "fake",
) -> dict[tuple[int, str], list[Phase]]:
    """At each latency, every route of *server* *rounds* times interleaved; the phases by
    (latency, route name). The servers start once, warmed up at the first latency."""
    _, command = SERVERS[server]
    goaltrack_url = sink.url if goaltrack_receiver == "sink" else api.api_url
    env = {"E2E_API_URL": goaltrack_url, "E2E_SINK_URL": sink.url}
    phases: dict[tuple[int, str], list[Phase]] = {
        (latency_ms, route.name): [] for latency_ms in latencies_ms for route in ROUTES
    }
    latency_ms = latencies_ms[0]
    receivers = {"fake API": psutil.Process(api.pid), "sink": psutil.Process(sink.pid)}
    with contextlib.ExitStack() as stack:
        servers = {}
        for flavor in ("courier", "threads"):
            served = stack.enter_context(_http.serve(command, {**env, "E2E_DELIVERY": flavor}))
            servers[flavor] = Server(
                f"http://127.0.0.1:{served.port}", ProcessTree(served.process.pid)
            )

        def run(route: Route, seconds: float) -> Phase:
            counter: Callable[[], int] | None = None
            if route.sink == "fake API" and goaltrack_receiver == "sink":
                route = dataclasses.replace(route, sink="sink")
            if route.sink == "fake API":
                api.reset(keep_pageviews=True)
                api.set_latency(latency_ms)
                counter = api.goal_count
            elif route.sink == "sink":
                sink.reset()
                counter = sink.event_count
            target = servers[route.flavor]
            receiver = receivers.get(route.sink)
            phase = drive(target.url, route, seconds, visitors, target.tree, counter, receiver)
            if counter is not None and phase.delivered != phase.requests:
                print(
                    f"  {server} {route.name} at {latency_ms} ms: {phase.delivered} of"
                    f" {phase.requests} events arrived within {DRAIN_TIMEOUT_S:g} s",
                    file=sys.stderr,
                )
            return phase

        sink.set_latency(latency_ms)
        for route in ROUTES:  # warm up: imports, couriers, consumer threads, connections
            run(route, WARM_UP_S)
        for latency_ms in latencies_ms:
            sink.set_latency(latency_ms)
            for index in range(rounds):
                order = list(ROUTES[index % len(ROUTES) :] + ROUTES[: index % len(ROUTES)])
                for route in order:
                    phase = run(route, duration)
                    phases[latency_ms, route.name].append(phase)
                    print(
                        f"  {latency_ms} ms {server} round {index + 1} {route.name}:"
                        f" {phase.rate:,.0f} req/s,"
                        f" {phase.per_request(phase.cpu.total) * 1e6:,.0f} µs CPU/req, max"
                        f" backlog {phase.max_backlog}, drain {phase.drain_s:.1f} s",
                        file=sys.stderr,
                        flush=True,
                    )
    return phases


@dataclass
class Row:
    latency_ms: int
    server: str
    route: Route
    rate: float
    cpu_total: float
    cpu_web: float
    cpu_courier: float
    total_ratio: float
    web_ratio: float
    max_backlog: int
    slope: float
    delivered_rate: float
    drain_s: float
    sink_busy: float
    sent: int
    delivered: int
    errors: int

    @property
    def growing(self) -> bool:
        return self.slope > GROWING * self.rate

    @property
    def all_arrived(self) -> bool:
        return self.delivered == self.sent


def summarize(
    latency_ms: int, server: str, phases: dict[tuple[int, str], list[Phase]]
) -> list[Row]:
    trivial = phases[latency_ms, "trivial"]
    rows = []
    for route in ROUTES:
        runs = phases[latency_ms, route.name]

        def ratio(part: Callable[[Phase], float], runs: list[Phase] = runs) -> float:
            return median(
                [
                    run.per_request(part(run)) / base.per_request(part(base))
                    for run, base in zip(runs, trivial, strict=True)
                ]
            )

        rows.append(
            Row(
                latency_ms,
                server,
                route,
                rate=median([run.rate for run in runs]),
                cpu_total=median([run.per_request(run.cpu.total) for run in runs]),
                cpu_web=median([run.per_request(run.cpu.web) for run in runs]),
                cpu_courier=median([run.per_request(run.cpu.courier) for run in runs]),
                total_ratio=ratio(lambda run: run.cpu.total),
                web_ratio=ratio(lambda run: run.cpu.web),
                max_backlog=max(run.max_backlog for run in runs),
                slope=median([run.slope for run in runs]),
                delivered_rate=median([run.delivered_rate for run in runs]),
                drain_s=median([run.drain_s for run in runs]),
                sink_busy=median([run.sink_busy for run in runs]),
                sent=sum(run.requests for run in runs),
                delivered=sum(run.delivered for run in runs),
                errors=sum(run.errors for run in runs),
            )
        )
    return rows


def table(rows: list[Row]) -> str:
    headers = [
        "latency",
        "server, app",
        "route",
        "req/s",
        "errors",
        "CPU µs/req (tree)",
        "vs trivial",
        "web processes",
        "vs trivial",
        "couriers",
        "max backlog",
        "backlog trend",
        "delivered/s while driven",
        "receiver busy",
        "drain",
        "all arrived",
    ]
    body = []
    for row in rows:
        sends = bool(row.route.sink)
        trend = f"{'growing' if row.growing else 'flat'} ({row.slope:+,.0f}/s)"
        body.append(
            [
                f"{row.latency_ms} ms",
                SERVERS[row.server][0],
                row.route.name,
                f"{row.rate:,.0f}",
                f"{row.errors:,}",
                f"{row.cpu_total * 1e6:,.0f}",
                f"{row.total_ratio:.2f}x",
                f"{row.cpu_web * 1e6:,.0f}",
                f"{row.web_ratio:.2f}x",
                f"{row.cpu_courier * 1e6:,.0f}" if row.cpu_courier else "-",
                f"{row.max_backlog:,}" if sends else "-",
                trend if sends else "-",
                f"{row.delivered_rate:,.0f}" if sends else "-",
                f"{row.sink_busy:.0%}" if sends else "-",
                f"{row.drain_s:.1f} s" if sends else "-",
                (
                    f"yes ({row.delivered:,})"
                    if row.all_arrived
                    else f"NO ({row.delivered:,} of {row.sent:,})"
                )
                if sends
                else "-",
            ]
        )
    return markdown_table(headers, body, left=3)


def goal_lines(rows: list[Row]) -> list[str]:
    lines = []
    by_key = {(row.latency_ms, row.server, row.route.name): row for row in rows}
    for latency_ms in LATENCIES_MS:
        for server in SERVERS:
            got = [by_key.get((latency_ms, server, route.name)) for route in ROUTES[1:]]
            if None in got:
                continue
            parts = ", ".join(
                f"{row.route.name} {row.web_ratio:.2f}x" for row in got if row is not None
            )
            lines.append(
                f"Goal (1), {SERVERS[server][0]}, {latency_ms} ms: web-process CPU per request"
                f" with one goal/event vs the trivial route: {parts}."
            )
    for latency_ms in LATENCIES_MS:
        row = by_key.get((latency_ms, "uvicorn", "goaltrack courier"))
        if row is None:
            continue
        kept = not row.growing and row.all_arrived
        lines.append(
            f"Goal (2), uvicorn, {latency_ms} ms: the courier keeps pace with the app's own rate:"
            f" {'met' if kept else 'NOT met'} (app {row.rate:,.0f} req/s, delivered"
            f" {row.delivered_rate:,.0f}/s while driven, backlog"
            f" {'growing' if row.growing else 'flat'} at {row.slope:+,.0f}/s, max"
            f" {row.max_backlog:,}; {'every goal arrived' if row.all_arrived else 'goals missing'},"
            f" drained in {row.drain_s:.1f} s)."
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s per route")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per route and round")
    parser.add_argument("--concurrency", type=int, default=8, help="connections")
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--latencies", default=",".join(map(str, LATENCIES_MS)))
    parser.add_argument(
        "--receiver",
        choices=("fake", "sink"),
        default="fake",
        help="where goaltrack delivers: the fake API, or the stand-in segment and posthog use",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration = 1, 1.0
    started = time.monotonic()
    rows: list[Row] = []
    with FakeAPIProcess(quiet=True) as api, SinkProcess() as sink:
        visitors = [api.add_visitor() for _ in range(args.concurrency)]
        latencies_ms = [int(latency) for latency in args.latencies.split(",")]
        for server in args.servers.split(","):
            phases = measure_server(
                server,
                latencies_ms,
                api,
                sink,
                visitors,
                args.rounds,
                args.duration,
                args.receiver,
            )
            rows += [row for ms in latencies_ms for row in summarize(ms, server, phases)]
    rows.sort(key=lambda row: (row.latency_ms, list(SERVERS).index(row.server)))
    print(
        f"{command_line('e2e_delivery.py', args.quick)}: {args.rounds} interleaved round(s) of"
        f" {args.duration:g} s per route, {args.concurrency} keep-alive connections; goaltrack"
        f" delivers to {'the stand-in' if args.receiver == 'sink' else 'the fake API'}; medians;"
        f" {time.monotonic() - started:.0f} s\n"
    )
    print(table(rows))
    print()
    for line in goal_lines(rows):
        print(f"- {line}")
    failed = [row for row in rows if row.errors or (row.route.sink and not row.all_arrived)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
