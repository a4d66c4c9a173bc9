"""Shared helpers for the benchmark scripts (not a benchmark: run_all skips ``_*.py``).

- :class:`ServerProcess`: a server in a child process, so that its work never shares the
  benchmark's GIL; :class:`FakeAPIProcess`, the bundled fake API, with the ``/_fake/`` control
  endpoints wrapped.
- :func:`closed_port`: a loopback port nothing listens on (connections are refused at once).
- :func:`markdown_table`, :func:`median`, :func:`wait_for_goaltrack_workers_to_exit`.
"""

from __future__ import annotations

import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

import httpx

API_KEY = "df_bench_0123456789abcdef"
"""A well-formed DataFast key: the fake accepts any key with the right prefix."""

_URL_LINE = re.compile(r"listening on (http://\S+)")


class ServerProcess:
    """A server in a child process that prints ``listening on <url>`` once ready, stopped on
    exit, with an HTTP client for its control endpoints.

    ``quiet=True`` keeps the child's stderr in a temporary file, shown only if the benchmark
    fails: for benchmarks that abandon requests in flight on purpose, which uvicorn reports as
    ``ClientDisconnect`` tracebacks.
    """

    command: list[str]
    name: str

    def __init__(self, *, quiet: bool = False) -> None:
        self._process: subprocess.Popen[str] | None = None
        self.url = ""
        self._control = httpx.Client(timeout=30.0)
        # Closed in __exit__: it must outlive this method.
        self._stderr = tempfile.TemporaryFile("w+") if quiet else None  # noqa: SIM115

    def __enter__(self) -> Self:
        process = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stderr=self._stderr, text=True
        )
        self._process = process
        assert process.stdout is not None
        line = process.stdout.readline()  # the one line the server prints: its URL
        match = _URL_LINE.search(line)
        if match is None:
            self.stop()
            raise RuntimeError(f"{self.name} did not start: {line!r}")
        self.url = match.group(1)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self._stderr is not None:
            if exc is not None:
                self._stderr.seek(0)
                sys.stderr.write(self._stderr.read()[-20_000:])
            self._stderr.close()

    def stop(self) -> None:
        self._control.close()
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        if process.stdout is not None:
            process.stdout.close()

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        response = self._control.post(self.url + path, json=body)
        response.raise_for_status()
        return response.json()


class FakeAPIProcess(ServerProcess):
    """``python -m goaltrack.testing --port 0`` as a child process, with the ``/_fake/`` control
    endpoints wrapped."""

    command = [sys.executable, "-m", "goaltrack.testing", "--port", "0"]
    name = "the fake API"

    @property
    def api_url(self) -> str:
        """The base URL for a DataFast GoalTracker (it appends /api/v1/goals)."""
        return f"{self.url}/datafast"

    @property
    def goals_url(self) -> str:
        return f"{self.url}/datafast/api/v1/goals"

    def reset(self, *, keep_pageviews: bool = False) -> None:
        """Forget goals, requests, faults and, unless *keep_pageviews*, the visitors."""
        self._post("/_fake/reset", {"keep_pageviews": True} if keep_pageviews else {})

    def add_visitor(self) -> str:
        """Register a DataFast pageview by a fresh visitor; return the visitor id."""
        visitor_id = self._post("/_fake/pageviews", {"provider": "datafast"})["visitor_id"]
        assert isinstance(visitor_id, str)
        return visitor_id

    def set_latency(self, latency_ms: float) -> None:
        self._post("/_fake/faults", {"latency_ms": latency_ms})

    def goal_count(self) -> int:
        """How many goals the fake API accepted (``/_fake/counts``: cheap enough to poll)."""
        response = self._control.get(self.url + "/_fake/counts")
        response.raise_for_status()
        count: int = response.json()["goals"]
        return count


def closed_port() -> int:
    """A loopback port that was free a moment ago and that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_for_goaltrack_workers_to_exit(timeout: float = 5.0) -> None:
    """Join the worker threads of closed trackers, so they cannot run into the next measurement."""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread.name.startswith("goaltrack-worker"):
            thread.join(max(0.0, deadline - time.monotonic()))


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, left: int = 1) -> str:
    """A GitHub-flavoured markdown table; the first *left* columns left-aligned, others right."""
    cells = [list(headers), *[list(row) for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        padded = [
            row[i].ljust(widths[i]) if i < left else row[i].rjust(widths[i])
            for i in range(len(row))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * w if i < left else "-" * (w - 1) + ":" for i, w in enumerate(widths)]
    return "\n".join([line(cells[0]), line(rule), *(line(row) for row in cells[1:])])


def command_line(script: str, quick: bool) -> str:
    return f"python bench/{script}" + (" --quick" if quick else "")
