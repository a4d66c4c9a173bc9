"""End-to-end overhead under a real server, over loopback HTTP (not a benchmark: a helper).

:func:`http_overhead` starts the plain and the goaltrack variant of a trivial app from
``bench/_apps.py`` side by side, each under its real server (uvicorn, or gunicorn with one sync
worker) on a free 127.0.0.1 port, then sends them the same GET request, with a visitor cookie
and a browser User-Agent, from one keep-alive ``http.client`` connection each, in alternating
batches (ABBA order) so that machine noise hits both alike. It prints and returns the median
time per request of each and the overhead ratio. The client is ``http.client``, the cheapest
there is, so that client work dilutes the ratio as little as possible. gunicorn's sync worker
closes the connection after each response: its figures include a TCP connect per request.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BROWSER_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
START_TIMEOUT_S = 30.0
GOAL_RATIO = 1.03

Command = Callable[[int], list[str]]


def uvicorn(factory: str, module: str = "bench._apps") -> Command:
    """``uvicorn --factory bench._apps:<factory>``: one process, access log off."""

    def command(port: int) -> list[str]:
        return [
            *(sys.executable, "-m", "uvicorn", "--factory", f"{module}:{factory}"),
            *("--host", "127.0.0.1", "--port", str(port)),
            *("--no-access-log", "--log-level", "warning"),
        ]

    return command


def gunicorn(factory: str, module: str = "bench._apps", workers: int = 1) -> Command:
    """``gunicorn 'bench._apps:<factory>()'``: sync workers, one unless told."""

    def command(port: int) -> list[str]:
        return [
            *(sys.executable, "-m", "gunicorn", f"{module}:{factory}()"),
            *("--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--worker-class", "sync"),
            *("--log-level", "warning"),
        ]

    return command


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


HEADERS = {
    "User-Agent": BROWSER_UA,
    "Accept": "text/html",
    "Cookie": (
        f"theme=dark; datafast_visitor_id={uuid.uuid4()}; "
        f"datafast_session_id=s{uuid.uuid4()}; lang=en"
    ),
}


class Served:
    """A running server: its port, and the CPU time its processes have used so far."""

    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self.process = process
        self.port = port
        self._pids: list[int] = []

    def cpu_seconds(self) -> float:
        """CPU time of the server and its workers (all threads), from the scheduler, in ns."""
        if not self._pids:
            pid = self.process.pid
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            self._pids = [pid, *map(int, children)]
        total = 0
        for pid in self._pids:
            for task in Path(f"/proc/{pid}/task").iterdir():
                total += int((task / "schedstat").read_text().split()[0])
        return total / 1e9


@contextlib.contextmanager
def serve(command: Command, env: dict[str, str] | None = None) -> Iterator[Served]:
    """Run the server on a free port until the block ends; yield it once it answers.
    *env*: variables added to this process's environment for the server."""
    port = free_port()
    env = {
        **os.environ,
        **(env or {}),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            command(port), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, text=True
        )
        try:
            _wait_until_serving(process, port, log)
            yield Served(process, port)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)


def _wait_until_serving(process: subprocess.Popen[str], port: int, log: object) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)  # type: ignore[attr-defined]
            raise RuntimeError(f"the server exited early:\n{log.read()}")  # type: ignore[attr-defined]
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", "/")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.05)  # polling interval of a deadline-bound wait for the port to open
    raise RuntimeError(f"the server did not answer within {START_TIMEOUT_S:g} s")


def run_batch(
    server: Served, connection: http.client.HTTPConnection, count: int
) -> tuple[float, float]:
    """Seconds per request for *count* sequential GET / on *connection*: wall clock, server CPU."""
    request_headers = HEADERS
    cpu = server.cpu_seconds()
    started = time.perf_counter()
    for _ in range(count):
        connection.request("GET", "/", headers=request_headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"GET / answered {response.status}")
    wall = time.perf_counter() - started
    return wall / count, (server.cpu_seconds() - cpu) / count


def http_overhead(
    label: str, plain: Command, tracked: Command, pairs: int, batches: int, batch_size: int
) -> tuple[float, float]:
    """Print and return the ratios goaltrack / plain under real servers: wall clock, server CPU.

    *pairs* times, a fresh pair of servers (started in swapped order every other time, so that
    neither variant keeps the luck of its process) serves *batches* alternating batches. Each
    ratio is that of the medians, over all batches, of the time per request.
    """
    walls: list[list[float]] = [[], []]
    cpus: list[list[float]] = [[], []]
    for pair in range(pairs):
        with contextlib.ExitStack() as stack:
            started = {}
            for side in (0, 1) if pair % 2 == 0 else (1, 0):
                started[side] = stack.enter_context(serve((plain, tracked)[side]))
            servers = (started[0], started[1])
            connections = [
                stack.enter_context(
                    contextlib.closing(http.client.HTTPConnection("127.0.0.1", s.port, timeout=10))
                )
                for s in servers
            ]
            for server, connection in zip(servers, connections, strict=True):
                run_batch(server, connection, batch_size)  # warm up
            for index in range(batches):
                # ABBA: neither side always goes first after the other's batch.
                for side in (0, 1) if index % 2 == 0 else (1, 0):
                    wall, cpu = run_batch(servers[side], connections[side], batch_size)
                    walls[side].append(wall)
                    cpus[side].append(cpu)
    base, wrapped = (statistics.median(side) for side in walls)
    base_cpu, wrapped_cpu = (statistics.median(side) for side in cpus)
    print(
        f"{label:<26} {base * 1e6:>7.1f}us {wrapped * 1e6:>7.1f}us {wrapped / base:>6.3f}"
        f"  {base_cpu * 1e6:>7.1f}us {wrapped_cpu * 1e6:>7.1f}us {wrapped_cpu / base_cpu:>6.3f}",
        flush=True,
    )
    return wrapped / base, wrapped_cpu / base_cpu


def print_header(pairs: int, batches: int, batch_size: int) -> None:
    print(
        f"\nEnd to end over loopback HTTP: {pairs} server pairs x {batches} alternating batches of"
        f" {batch_size} requests per server, median batch;\na visitor cookie and a browser"
        " User-Agent on every request; server CPU from the kernel's scheduler statistics"
    )
    print(f"{'':<26} {'wall clock per request':^25}  {'server CPU per request':^25}")
    print(
        f"{'server, app':<26} {'without':>9} {'goaltrack':>9} {'ratio':>6}"
        f"  {'without':>9} {'goaltrack':>9} {'ratio':>6}"
    )


def verdict(ratios: list[tuple[float, float]]) -> str:
    wall = max(ratio[0] for ratio in ratios)
    cpu = max(ratio[1] for ratio in ratios)
    within = "within" if max(wall, cpu) <= GOAL_RATIO else "OVER"
    return (
        f"worst end-to-end ratio: wall clock {wall:.3f}, server CPU {cpu:.3f}"
        f" ({within} the {GOAL_RATIO:.2f} goal)"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The end-to-end options every adapter benchmark takes."""
    parser.add_argument(
        "--http",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after the in-process figures, measure under the real server (default: yes)",
    )
    parser.add_argument("--http-pairs", type=int, default=2, help="fresh server pairs")
    parser.add_argument("--http-batches", type=int, default=12, help="batches per pair and side")
    parser.add_argument("--http-batch-size", type=int, default=200, help="requests per batch")


def run_section(args: argparse.Namespace, cases: list[tuple[str, Command, Command]]) -> None:
    """The end-to-end section of an adapter benchmark: one row per (label, plain, tracked)."""
    if not args.http:
        return
    print_header(args.http_pairs, args.http_batches, args.http_batch_size)
    ratios = [
        http_overhead(
            label, plain, tracked, args.http_pairs, args.http_batches, args.http_batch_size
        )
        for label, plain, tracked in cases
    ]
    print(verdict(ratios))
