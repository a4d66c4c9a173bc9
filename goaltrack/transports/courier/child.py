"""The courier process: delivers the goals one web process hands it, and says what became of them.

Started by :class:`~goaltrack.transports.courier.CourierTransport` as
``python -m goaltrack.transports.courier``, one per web process. It reads :mod:`.wire` messages
on stdin and delivers with the same machinery as the in-process default
(:class:`~goaltrack.transports.background.BackgroundTransport`: workers, keep-alive connections,
retries, the circuit breaker, the bounded queue), so the network, the HTTP parsing and the
retries cost this process's CPU and GIL, not the web process's.

What it says goes back on stdout: each goal's settlement, batched (one waits at most
:data:`BATCH_WINDOW` seconds for others to share its write), and its log lines, at once, for
the web process's logging to emit. It counts nothing and calls no hook itself: the web
process does, with its own settings.

It ends when its stdin does, which happens however the web process ends (even killed): it then
delivers what it holds within ``shutdown_timeout`` and exits. Ctrl-C in a terminal and a
SIGTERM sent to the whole group (systemd's default) are ignored for that reason: the web
process's exit is what ends the courier, after the web process's own exit flush.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import threading
from typing import IO, Any

from goaltrack import items
from goaltrack.delivery import DeliveryResult, Endpoint
from goaltrack.http_client import HttpClient
from goaltrack.items import Tracked
from goaltrack.providers import get_provider
from goaltrack.transports.background import BackgroundTransport
from goaltrack.transports.base import Settlement
from goaltrack.transports.courier import wire

__all__ = ["BATCH_WINDOW", "main"]

BATCH_WINDOW = 0.02
"""Seconds a settlement may wait for others to share its write (one wake-up of the web
process's reader per batch, not per goal)."""


class _Outbound:
    """What goes back to the web process: batched settlements and log lines."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._cond = threading.Condition()
        self._events: list[list[Any]] = []
        self._urgent: list[bytes] = []
        self._closed = False
        self._broken = False
        self._thread = threading.Thread(target=self._run, name="goaltrack-courier-out", daemon=True)
        self._thread.start()

    def event(self, event: list[Any]) -> None:
        with self._cond:
            self._events.append(event)
            if len(self._events) == 1:
                self._cond.notify()

    def urgent(self, message: list[Any]) -> None:
        """Sent after the settlements waiting, without waiting for the batch window; the ones
        that come after it are sent after it (a log line and the settlement it precedes, such
        as "the API is back" and the delivery that follows, arrive in that order)."""
        with self._cond:
            if self._events:
                self._urgent.append(wire.encode(["s", self._events]))
                self._events = []
            self._urgent.append(wire.encode(message))
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._events or self._urgent or self._closed):
                    self._cond.wait()
                if not (self._urgent or self._closed):
                    self._cond.wait(BATCH_WINDOW)  # let more settle into this write
                data = b"".join(self._urgent)  # in order, before the settlements since
                self._urgent.clear()
                if self._events:
                    data += wire.encode(["s", self._events])
                    self._events = []
                done = self._closed
            self._write(data)
            if done:
                with self._cond:
                    if not (self._events or self._urgent):
                        return

    def _write(self, data: bytes) -> None:
        if not data or self._broken:
            return
        try:
            self._stream.write(data)
            self._stream.flush()
        except OSError:  # the web process is gone: deliver anyway, say nothing
            self._broken = True


class _RelayedSettlement(Settlement):
    """Sends each settlement to the web process instead of counting, logging or calling hooks."""

    def __init__(self, outbound: _Outbound) -> None:
        super().__init__()
        self._outbound = outbound
        self._seqs: dict[int, int] = {}  # id(goal) -> the web process's number for it
        self._seqs_lock = threading.Lock()

    def number(self, goal: Tracked, seq: int) -> None:
        with self._seqs_lock:
            self._seqs[id(goal)] = seq

    def _seq(self, goal: Tracked, *, final: bool) -> int:
        with self._seqs_lock:
            return self._seqs.pop(id(goal)) if final else self._seqs[id(goal)]

    def retrying(self, goal: Tracked, result: DeliveryResult, delay: float) -> None:
        seq = self._seq(goal, final=False)
        self._outbound.event(["y", seq, wire.result_to_list(result), delay])

    def delivered(self, goal: Tracked, result: DeliveryResult, *, maybe_duplicate: bool) -> None:
        seq = self._seq(goal, final=True)
        self._outbound.event(["d", seq, wire.result_to_list(result), maybe_duplicate])

    def failed(self, goal: Tracked, result: DeliveryResult) -> None:
        self._outbound.event(["x", self._seq(goal, final=True), wire.result_to_list(result)])

    def dropped(self, goal: Tracked, reason: str, *, log: bool = True) -> None:
        self._outbound.event(["o", self._seq(goal, final=True), reason])

    def flush_summaries(self) -> None:
        pass


class _RelayedLog(logging.Handler):
    def __init__(self, outbound: _Outbound) -> None:
        super().__init__()
        self._outbound = outbound

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            self._outbound.urgent(["l", record.levelno, record.name, text])
        except Exception:  # never let a log line stop a delivery
            self.handleError(record)


def serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """Deliver what *stdin* brings until it ends; report on *stdout*."""
    first = stdin.readline()
    if not first:
        return
    kind, data = wire.decode(first)
    if kind != "hello":
        raise ValueError("the courier's first message must be its configuration")
    config = wire.CourierConfig.from_json(data)
    outbound = _Outbound(stdout)
    logger = logging.getLogger("goaltrack")
    logger.handlers[:] = [_RelayedLog(outbound)]
    logger.setLevel(config.log_level)
    logger.propagate = False
    settlement = _RelayedSettlement(outbound)
    endpoint = Endpoint(
        get_provider(config.provider), config.api_key, config.api_url, config.website_id
    )
    transport = BackgroundTransport(
        endpoint,
        settlement,
        retry=config.retry,
        max_queue_size=config.max_queue_size,
        max_in_flight=config.max_in_flight,
        shutdown_timeout=config.shutdown_timeout,
        flush_at_exit=False,
        http=functools.partial(
            HttpClient, timeout=config.timeout, proxy=config.proxy, target_url=endpoint.url
        ),
    )
    for line in stdin:
        message = wire.decode(line)
        if message[0] == "g":
            _, seq, data = message
            goal = items.from_data(data)
            settlement.number(goal, seq)
            transport.submit(goal)
    transport.close(config.shutdown_timeout)
    outbound.close()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The messages get a private copy of stdout; anything else printed goes to stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, replies)
