"""The courier process: delivers the goals one web process hands it, and says what became of them.

Started by :class:`~goaltrack.transports.courier.CourierTransport` as
``python -m goaltrack.transports.courier``, one per web process. It reads :mod:`.wire` messages
on stdin and delivers with the rules of the in-process default
(:class:`~goaltrack.transports.background.BackgroundTransport`: retries, the circuit breaker,
the in-flight limit, the bounded queue), so the network, the HTTP parsing and the retries cost
this process's CPU and GIL, not the web process's. Two engines drive those rules:

- without a proxy (none configured, none in the environment), the usual case: one event loop
  (:class:`_LoopEngine`) reads stdin without blocking and sends every request in flight over
  :class:`~goaltrack.transports.courier.aio_http.AsyncHttpClient`'s keep-alive connections,
  settling each answer as it comes: no thread per request, so no thread wake-up and no lock
  handed over per goal, and well under the threads' CPU per goal (the courier rows of
  ``bench/delivery.py``); goals are read from the pipe every :data:`READ_WINDOW` seconds at
  most, several per wake-up;
- with a proxy: ``BackgroundTransport``'s own worker threads and
  :class:`~goaltrack.http_client.HttpClient`, which tunnels through it.

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

import asyncio
import contextlib
import functools
import logging
import os
import signal
import sys
import threading
from typing import IO, Any

from goaltrack import items
from goaltrack.delivery import DeliveryResult, Endpoint, Outcome, request_for, result_of
from goaltrack.http_client import HttpClient, HttpError, HttpResponse, proxy_from_environment
from goaltrack.items import Tracked
from goaltrack.providers import get_provider
from goaltrack.transports.background import BackgroundTransport, _Item
from goaltrack.transports.base import Settlement
from goaltrack.transports.courier import wire
from goaltrack.transports.courier.aio_http import Answer, AsyncHttpClient

__all__ = ["BATCH_WINDOW", "main"]

logger = logging.getLogger("goaltrack")

BATCH_WINDOW = 0.02
"""Seconds a settlement may wait for others to share its write (one wake-up of the web
process's reader per batch, not per goal)."""


READ_WINDOW = 0.005
"""Seconds the goals the web process sends may gather in the pipe before they are read."""


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
    fd = stdin.fileno()
    first = _read_line(fd)
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
    on_loop = not (config.proxy or proxy_from_environment(endpoint.url))
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
        threads=not on_loop,
    )
    if on_loop:
        engine = _LoopEngine(
            transport, endpoint, settlement, AsyncHttpClient(timeout=config.timeout)
        )
        asyncio.run(engine.run(fd, config.shutdown_timeout))
    else:
        for line in stdin:
            _submit(transport, settlement, line)
        transport.close(config.shutdown_timeout)
    outbound.close()


def _read_line(fd: int) -> bytes:
    """The first line on *fd*, read a byte at a time: nothing after it is taken from the pipe."""
    line = bytearray()
    while not line.endswith(b"\n"):
        byte = os.read(fd, 1)
        if not byte:
            break
        line += byte
    return bytes(line)


def _submit(transport: BackgroundTransport, settlement: _RelayedSettlement, line: bytes) -> None:
    message = wire.decode(line)
    if message[0] == "g":
        _, seq, data = message
        goal = items.from_data(data)
        settlement.number(goal, seq)
        transport.submit(goal)


class _LoopEngine:
    """Delivers on one event loop: reads stdin, and sends each goal the transport admits
    (:meth:`BackgroundTransport.take_ready`), settling its answer
    (:meth:`BackgroundTransport.finish`); the retries, the breaker and the in-flight limit stay
    the transport's. No task per goal: the client calls back with each answer."""

    def __init__(
        self,
        transport: BackgroundTransport,
        endpoint: Endpoint,
        settlement: _RelayedSettlement,
        client: AsyncHttpClient,
    ) -> None:
        self._transport = transport
        self._endpoint = endpoint
        self._settlement = settlement
        self._client = client
        self._sending = 0
        self._timer: asyncio.TimerHandle | None = None
        self._partial = b""
        self._progress: asyncio.Future[None] | None = None

    async def run(self, fd: int, shutdown_timeout: float) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        ended: asyncio.Future[None] = loop.create_future()
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._read, fd, ended)
        try:
            await ended
        finally:
            loop.remove_reader(fd)
        # Stdin ended: deliver what is held within shutdown_timeout, then drop the rest.
        deadline = loop.time() + shutdown_timeout
        while not self._transport.all_settled() and loop.time() < deadline:
            await self._progressed(deadline)
        if self._timer is not None:
            self._timer.cancel()
        self._transport.close(0)
        self._client.close()  # the requests in flight fail at once, and are settled
        while self._sending:
            await self._progressed(loop.time() + 1.0)

    async def _progressed(self, deadline: float) -> None:
        """Until the next settlement, or *deadline*."""
        self._progress = self._loop.create_future()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                await self._progress

    def _read(self, fd: int, ended: asyncio.Future[None]) -> None:
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            if self._partial.strip():  # a last line without its newline
                with contextlib.suppress(ValueError):
                    _submit(self._transport, self._settlement, self._partial)
            self._loop.remove_reader(fd)
            if not ended.done():
                ended.set_result(None)
            self._pump()
            return
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if line:
                _submit(self._transport, self._settlement, line)
        self._pump()
        # Let the next goals gather in the pipe: one wake-up for several, not one each.
        self._loop.remove_reader(fd)
        self._loop.call_later(READ_WINDOW, self._loop.add_reader, fd, self._read, fd, ended)

    def _pump(self) -> None:
        """Send each goal the transport admits now; wake when one may be."""
        while True:
            ready = self._transport.take_ready()
            if ready is None:
                return
            if isinstance(ready, float):
                self._wake_in(ready)
                return
            if ready.ticket is None:  # held by a refused key past refusal_give_up: not sent
                self._transport.finish(ready, None)
                self._settled()
                continue
            self._sending += 1
            try:
                url, headers, body = request_for(ready.goal, self._endpoint)
                self._client.send(url, headers, body, functools.partial(self._answered, ready))
            except Exception as exc:  # a bug of ours must not lose the goal
                self._answered(ready, exc)

    def _answered(self, item: _Item, answer: Answer | Exception) -> None:
        self._sending -= 1
        try:
            if not isinstance(answer, HttpResponse | HttpError):
                raise answer  # a bug of ours sending it
            result = result_of(item.goal, self._endpoint, answer)
        except Exception as exc:
            logger.exception("goaltrack: unexpected error delivering %s", item.goal.label)
            result = DeliveryResult(Outcome.RETRY, f"unexpected error: {type(exc).__name__}")
        try:
            self._transport.finish(item, result)
        except Exception:  # a bug of ours, as a worker thread's death: the goal waits again
            logger.exception(
                "goaltrack: settling %s failed (a bug in goaltrack; please report it); "
                "it will be attempted again, no goal is lost",
                item.goal.label,
            )
        self._settled()

    def _settled(self) -> None:
        if self._progress is not None and not self._progress.done():
            self._progress.set_result(None)
        self._pump()

    def _wake_in(self, delay: float) -> None:
        when = self._loop.time() + min(max(delay, 0.001), 60.0)
        if self._timer is not None:
            if self._timer.when() <= when:
                return
            self._timer.cancel()
        self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._pump()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The messages get a private copy of stdout; anything else printed goes to stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, replies)
