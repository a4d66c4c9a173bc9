"""HTTP for the courier's event loop: POSTs over a pool of keep-alive connections.

The asyncio counterpart of :class:`goaltrack.http_client.HttpClient`, with its guarantees, for
the courier process alone (:mod:`.child`): one thread drives every request in flight, so a
delivery costs no thread wake-up and no lock handed between threads. Responses are parsed by
``httptools`` (llhttp, in C); only the request head is written here.

- The URL is read by :func:`~goaltrack.http_client.parse_target` and TLS set up by
  :func:`~goaltrack.http_client.make_ssl_context`, as the threads' client does.
- A total deadline per request: connecting, sending and reading the answer take at most
  ``timeout`` seconds together.
- At most :data:`~goaltrack.http_client.MAX_RESPONSE_BYTES` of a body are kept: past that the
  answer is what came (as ``HttpClient`` returns it) and the connection is closed unread.
- An idle connection the server closed (or that spoke out of turn) is noticed as the loop reads
  the close, or, past :data:`_IDLE_CHECK_AFTER` seconds idle, asked just before it is used, and
  never used: the request goes on a new one, so an ordinary idle close is never mistaken for a
  possibly delivered goal.
- ``may_have_arrived`` as ``HttpClient`` sets it: False when no connection could be made, True
  for anything that went wrong once the request may have been sent.
- Errors name the failure, never a header (the key is one).
"""

from __future__ import annotations

import asyncio
import functools
import select
import ssl
from collections import deque
from collections.abc import Callable, Mapping

import httptools

from goaltrack.http_client import (
    MAX_RESPONSE_BYTES,
    HttpError,
    HttpResponse,
    make_ssl_context,
    parse_target,
)

__all__ = ["Answer", "AsyncHttpClient"]

_Origin = tuple[str, str, int]


Answer = HttpResponse | HttpError
"""What a request came to: the response, or why there was none."""

_IDLE_CHECK_AFTER = 1.0
"""Seconds idle after which a connection is asked, just before it is used, whether the server
closed it (the loop may not have read that yet): a server closes idle connections after
seconds, never within one, so a busy pool pays no system call for this."""

_SWEEP_SLACK = 0.05
"""Seconds a deadline may be overrun, so that one timer ends the requests of many."""


class AsyncHttpClient:
    """Keep-alive connections to the API, for one event loop.

    :meth:`send` calls back with the answer (no task per request); :meth:`post` awaits it.
    """

    def __init__(self, *, timeout: float = 5.0) -> None:
        self._timeout = timeout
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._busy: set[_Connection] = set()
        self._connecting: set[asyncio.Task[None]] = set()
        self._heads: dict[str, tuple[_Origin, bytes]] = {}
        self._ssl_context: ssl.SSLContext | None = None
        self._deadlines: deque[tuple[float, _Connection, int]] = deque()
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False
        self._last_headers: Mapping[str, str] | None = None
        self._last_lines = b""

    async def post(self, url: str, request_headers: Mapping[str, str], body: bytes) -> HttpResponse:
        """POST *body* to *url*; raise :class:`HttpError` when no complete response came back
        within ``timeout`` seconds."""
        answered: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self.send(url, request_headers, body, answered.set_result)
        answer = await answered
        if isinstance(answer, HttpError):
            raise answer
        return answer

    def send(
        self,
        url: str,
        request_headers: Mapping[str, str],
        body: bytes,
        done: Callable[[Answer], None],
    ) -> None:
        """POST *body* to *url*; *done* is called once, from the loop, never from this call."""
        loop = asyncio.get_running_loop()
        try:
            origin, head = self._heads.get(url) or self._head(url)
            request = b"".join((head, self._headers(request_headers, len(body)), body))
        except HttpError as exc:
            loop.call_soon(done, exc)
            return
        ends_at = loop.time() + self._timeout
        if self._closed:
            loop.call_soon(
                done, HttpError("interrupted: the client closed", may_have_arrived=False)
            )
            return
        connection = self._idle_connection(origin)
        if connection is None:
            task = loop.create_task(self._connect_and_send(origin, request, ends_at, done))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)
            return
        self._start(connection, request, ends_at, done)

    def close(self) -> None:
        """Close every connection; the requests in flight fail at once ("interrupted")."""
        self._closed = True
        for connections in self._idle.values():
            for connection in connections:
                connection.abort()
        self._idle.clear()
        for connection in list(self._busy):
            connection.interrupt()
        for task in list(self._connecting):
            task.cancel()
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None

    # -- requests -----------------------------------------------------------------------------

    def _start(
        self,
        connection: _Connection,
        request: bytes,
        ends_at: float,
        done: Callable[[Answer], None],
    ) -> None:
        self._busy.add(connection)
        exchange = connection.start(request, functools.partial(self._finished, connection, done))
        self._deadlines.append((ends_at, connection, exchange))
        if self._sweep is None:
            self._arm(ends_at)

    def _finished(
        self, connection: _Connection, done: Callable[[Answer], None], answer: Answer
    ) -> None:
        self._busy.discard(connection)
        if connection.reusable and not self._closed:
            self._idle.setdefault(connection.origin, []).append(connection)
        else:
            connection.abort()
        done(answer)

    async def _connect_and_send(
        self, origin: _Origin, request: bytes, ends_at: float, done: Callable[[Answer], None]
    ) -> None:
        try:
            async with asyncio.timeout_at(ends_at):
                connection = await self._connect(origin)
        except TimeoutError:
            done(HttpError("connect timeout", may_have_arrived=False))
            return
        except OSError as exc:
            done(HttpError(f"connection failed: {exc}", may_have_arrived=False))
            return
        except asyncio.CancelledError:
            done(HttpError("interrupted: the client closed", may_have_arrived=False))
            return
        if self._closed:
            connection.abort()
            done(HttpError("interrupted: the client closed", may_have_arrived=False))
            return
        self._start(connection, request, ends_at, done)

    def _arm(self, ends_at: float) -> None:
        loop = asyncio.get_running_loop()
        self._sweep = loop.call_at(max(ends_at, loop.time() + _SWEEP_SLACK), self._end_overdue)

    def _end_overdue(self) -> None:
        """End the requests past their deadline; then wait for the next deadline."""
        self._sweep = None
        now = asyncio.get_running_loop().time()
        deadlines = self._deadlines
        while deadlines:
            ends_at, connection, exchange = deadlines[0]
            if connection.exchange != exchange or not connection.waiting:
                deadlines.popleft()  # answered already
                continue
            if ends_at > now:
                self._arm(ends_at)
                return
            deadlines.popleft()
            connection.time_out(f"no complete response within {self._timeout:.3g} s")

    # -- connections --------------------------------------------------------------------------

    def _headers(self, request_headers: Mapping[str, str], length: int) -> bytes:
        # The endpoint passes the same mapping each time: its lines are encoded once.
        if request_headers is not self._last_headers:
            self._last_lines = _header_lines(request_headers)
            self._last_headers = request_headers
        return b"Content-Length: %d\r\n%s\r\n" % (length, self._last_lines)

    def _head(self, url: str) -> tuple[_Origin, bytes]:
        target = parse_target(url)
        host = f"[{target.host}]" if ":" in target.host else target.host
        if target.port != (443 if target.scheme == "https" else 80):
            host += f":{target.port}"
        head = f"POST {target.path} HTTP/1.1\r\nHost: {host}\r\n".encode("ascii")
        entry = self._heads[url] = ((target.scheme, target.host, target.port), head)
        return entry

    def _idle_connection(self, origin: _Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()  # the most recent: the least likely to be timed out
            if not connection.reusable or connection.closing:
                continue
            if connection.loop.time() - connection.idle_since > _IDLE_CHECK_AFTER and (
                connection.closed_by_peer()
            ):
                connection.abort()
                continue
            return connection
        return None

    async def _connect(self, origin: _Origin) -> _Connection:
        scheme, host, port = origin
        context = None
        if scheme == "https":
            context = self._ssl_context or make_ssl_context()
            self._ssl_context = context
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            lambda: _Connection(loop, origin), host, port, ssl=context
        )
        return connection


def _header_lines(request_headers: Mapping[str, str]) -> bytes:
    lines = []
    for name, value in request_headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            # Never the value in the message: it may be the key.
            raise HttpError(f"invalid value for the {name!r} header", may_have_arrived=False)
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("latin-1")


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one exchange at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, origin: _Origin) -> None:
        self.loop = loop
        self.origin = origin
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._done: Callable[[Answer], None] | None = None
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._messages = 0
        self._answer: HttpResponse | None = None
        self._keep_alive = False
        self._interrupted = False
        self.idle_since = 0.0
        self.exchange = 0
        """Numbers this connection's exchanges (a deadline names the one it bounds)."""
        self.reusable = False
        """Open, idle, and its last answer let it be kept alive."""

    @property
    def waiting(self) -> bool:
        return self._done is not None

    # -- asyncio ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self.reusable = True

    def data_received(self, data: bytes) -> None:
        if self._done is None:  # spoke out of turn: never use it again
            self.abort()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            message = f"malformed response ({type(exc).__name__})"
            self._fail(HttpError(message, may_have_arrived=True))
            self.abort()
            return
        # Said once the parser is done with this data: the callback may send on this connection.
        answer, self._answer = self._answer, None
        if answer is not None:
            self._fail_or_answer(answer)

    def eof_received(self) -> bool:
        # Not kept from here on: between the close and connection_lost, nothing may be sent.
        self.reusable = False
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        if self._interrupted:
            self._fail(HttpError("interrupted: the client closed", may_have_arrived=True))
        else:
            reason = f"{type(exc).__name__}: {exc}" if exc else "closed by the server"
            self._fail(HttpError(f"connection broken ({reason})", may_have_arrived=True))

    # -- httptools ----------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._messages += 1
        if self._messages > 1:  # a second answer to one request: out of turn
            self.reusable = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        if self._done is None or self._answer is not None:
            return
        room = MAX_RESPONSE_BYTES - self._size
        if len(body) >= room:
            # Never read further: the answer is what came, and the connection goes.
            self._body.append(body[:room])
            self._size = MAX_RESPONSE_BYTES
            self._answered(keep_alive=False)
            self.abort()
            return
        self._body.append(body)
        self._size += len(body)

    def on_message_complete(self) -> None:
        if self._messages == 1:
            self._answered(keep_alive=self._parser.should_keep_alive())

    # -- the exchange -------------------------------------------------------------------------

    def start(self, request: bytes, done: Callable[[Answer], None]) -> int:
        """Send *request*; *done* gets the answer. Returns the exchange's number."""
        assert self._transport is not None
        self.reusable = False
        self._headers = {}
        self._body = []
        self._size = 0
        self._messages = 0
        self._answer = None
        self._parser = httptools.HttpResponseParser(self)
        self._done = done
        self.exchange += 1
        self._transport.write(request)
        return self.exchange

    def time_out(self, message: str) -> None:
        self._fail(HttpError(message, may_have_arrived=True))
        self.abort()

    def abort(self) -> None:
        self.reusable = False
        if self._transport is not None:
            self._transport.abort()

    def interrupt(self) -> None:
        self._interrupted = True
        self.abort()

    def _answered(self, *, keep_alive: bool) -> None:
        """The parser read the whole answer (or all of it we read): kept until it returns."""
        if self._done is None or self._answer is not None:
            return
        self._keep_alive = keep_alive
        self.idle_since = self.loop.time()
        status = self._parser.get_status_code()
        self._answer = HttpResponse(status, self._headers, b"".join(self._body))

    def _fail(self, error: HttpError) -> None:
        self._answer = None
        self._fail_or_answer(error)

    def _fail_or_answer(self, answer: Answer) -> None:
        done, self._done = self._done, None
        if done is None:
            return
        self.reusable = (
            isinstance(answer, HttpResponse)
            and self._keep_alive
            and not self._interrupted
            and not self.closing
        )
        done(answer)

    def closed_by_peer(self) -> bool:
        """Readable while idle: closed by the server (or it spoke out of turn)."""
        sock = None if self._transport is None else self._transport.get_extra_info("socket")
        if sock is None:
            return True
        try:
            readable, _, _ = select.select([sock.fileno()], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    @property
    def closing(self) -> bool:
        return self._transport is None or self._transport.is_closing()
