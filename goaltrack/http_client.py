"""HTTP for goal delivery: the one module that knows how a request goes over the wire.

Each delivery thread keeps one keep-alive connection per origin (it only ever has one request in
flight), built on the standard library's ``http.client``. Two bounds protect the worker from an
API (or a proxy in front of it) that misbehaves:

- a total deadline per request: connecting, sending and reading the answer take at most
  ``timeout`` seconds together, not per read, so a server that accepts and never answers, or
  answers a byte a second, holds a worker for ``timeout`` and no longer (a watchdog thread shuts
  the socket down at the deadline; the blocked read then returns at once);
- at most ``MAX_RESPONSE_BYTES`` of a response body are read (the API's answers are tiny); the
  rest is never read and the connection is closed.

The API takes one goal per request, so the cost per request is what counts: in
``bench/delivery.py`` (its "ref: goaltrack HttpClient.post loop" row) a loop of this client's
``post`` takes well under half the CPU per goal of the same loop over ``httpx.Client.post``.
Redirects are never followed, so the API key is never re-sent elsewhere. TLS uses certifi's CA
bundle when it is installed (as httpx does), else the system's.
"""

from __future__ import annotations

import contextlib
import http.client
import math
import select
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Mapping
from typing import NamedTuple, Protocol
from urllib.parse import urlsplit

from goaltrack.process import at_fork, start_thread

__all__ = ["MAX_RESPONSE_BYTES", "HttpClient", "HttpError", "HttpPoster", "HttpResponse"]

MAX_RESPONSE_BYTES = 64 * 1024


class HttpResponse(NamedTuple):
    status: int
    headers: dict[str, str]
    """Lower-cased header names."""
    body: bytes


class HttpError(Exception):
    """The request got no complete response.

    ``may_have_arrived`` is True when the request may have reached the API before the failure
    (a read timeout, a connection dropped mid-response): retrying it may then duplicate the goal.
    """

    def __init__(self, message: str, *, may_have_arrived: bool) -> None:
        super().__init__(message)
        self.may_have_arrived = may_have_arrived


class HttpPoster(Protocol):
    """What goal delivery needs of an HTTP client: :class:`HttpClient` (the default), or a
    user's httpx client adapted by :class:`goaltrack.httpx_client.HttpxPoster`."""

    def post(
        self,
        url: str,
        request_headers: Mapping[str, str],
        body: bytes,
        *,
        deadline: float | None = None,
    ) -> HttpResponse:
        """POST; raise :class:`HttpError` when no complete response came back."""

    def close(self) -> None:
        """Release connections (a later ``post`` may open new ones)."""


class _Target(NamedTuple):
    scheme: str
    host: str
    port: int
    path: str
    """Path and query, as sent in the request line."""


class HttpClient:
    """Keep-alive connections to the API, one per calling thread; safe to share between threads."""

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        proxy: str | None = None,
        target_url: str | None = None,
    ) -> None:
        # One connection per calling thread: the number of delivery threads is the bound.
        self._timeout = timeout
        self._proxy = proxy if proxy is not None else proxy_from_environment(target_url)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[http.client.HTTPConnection] = set()
        self._targets: dict[str, _Target] = {}
        self._ssl_context: ssl.SSLContext | None = None
        self._generation = 0  # +1 at each close(): connections of an earlier one are not kept

    def post(
        self,
        url: str,
        request_headers: Mapping[str, str],
        body: bytes,
        *,
        deadline: float | None = None,
    ) -> HttpResponse:
        """POST *body* to *url*; raise :class:`HttpError` when no complete response came back.

        The whole request takes at most ``timeout`` seconds, or until *deadline* (a
        ``time.monotonic()`` value) if that comes first.
        """
        started = time.monotonic()
        ends_at = started + self._timeout
        if deadline is not None:
            ends_at = min(ends_at, deadline)
        target = self._targets.get(url) or self._parse(url)
        generation = self._generation
        connection = self._connection(target)
        watch = _watchdog().watch(connection, ends_at)
        try:
            if connection.sock is None:
                connection.timeout = max(0.001, ends_at - started)
                try:
                    connection.connect()
                except OSError as exc:  # TimeoutError included
                    self._discard(connection)
                    if watch.fired or isinstance(exc, TimeoutError):
                        raise HttpError("connect timeout", may_have_arrived=False) from None
                    message = f"connection failed: {exc}"
                    raise HttpError(message, may_have_arrived=False) from None
                watch.sock = _socket(connection)
                watch.sock.settimeout(self._timeout)  # per read; the watchdog bounds the total
                with self._lock:
                    self._open.add(connection)
            if not watch.watched:  # no watchdog (interpreter exit): bound each read instead
                _socket(connection).settimeout(max(0.001, ends_at - time.monotonic()))
            try:
                connection.request("POST", target.path, body=body, headers=dict(request_headers))
                response = connection.getresponse()
                content = response.read(MAX_RESPONSE_BYTES)
                if response.length and len(content) < MAX_RESPONSE_BYTES:
                    # read(n) returns short, without raising, when the connection closes early
                    raise http.client.IncompleteRead(content, response.length)
            except (http.client.HTTPException, OSError) as exc:  # TimeoutError included
                self._discard(connection)
                if watch.interrupted:
                    raise HttpError(
                        "interrupted: the client closed", may_have_arrived=True
                    ) from None
                if watch.fired or isinstance(exc, TimeoutError):
                    message = f"no complete response within {ends_at - started:.3g} s"
                    raise HttpError(message, may_have_arrived=True) from None
                message = f"connection broken ({type(exc).__name__}: {exc})"
                raise HttpError(message, may_have_arrived=True) from None
        finally:
            watch.end()
        if (
            response.will_close
            or not response.isclosed()
            or not watch.watched
            or watch.fired
            or generation != self._generation
        ):
            # Closing, or a body longer than we read (never read further), or a socket whose
            # timeout was shortened or that the watchdog shut, or a client closed meanwhile.
            self._discard(connection)
        headers = {name.lower(): value for name, value in response.getheaders()}
        return HttpResponse(response.status, headers, content)

    def close(self) -> None:
        """Close every open connection; a later ``post`` opens a new one.

        A request in flight on another thread fails at once (its socket is shut down; that
        thread closes its connection): closing never waits for the network.
        """
        with self._lock:
            connections, self._open = self._open, set()
            self._generation += 1
        busy = _watchdog().interrupt(connections)
        for connection in connections - busy:
            connection.close()

    # -- connections ------------------------------------------------------------------------

    def _parse(self, url: str) -> _Target:
        target = self._targets[url] = parse_target(url)
        return target

    def _connection(self, target: _Target) -> http.client.HTTPConnection:
        connections: dict[_Target, http.client.HTTPConnection] | None = getattr(
            self._local, "connections", None
        )
        if connections is None:
            connections = self._local.connections = {}
        connection = connections.get(target)
        if connection is not None and connection.sock is not None and _closed_by_peer(connection):
            # The server closed the idle keep-alive connection: reconnect before sending, so
            # that an ordinary idle close is never mistaken for a possibly delivered goal.
            connection.close()
        if connection is None:
            connection = connections[target] = self._new_connection(target)
        return connection

    def _new_connection(self, target: _Target) -> http.client.HTTPConnection:
        if target.scheme == "http":
            return http.client.HTTPConnection(target.host, target.port, timeout=self._timeout)
        context = self._ssl_context or self._make_ssl_context()
        if self._proxy:
            proxy = urlsplit(self._proxy)
            connection = http.client.HTTPSConnection(
                proxy.hostname or "", proxy.port or 8080, timeout=self._timeout, context=context
            )
            connection.set_tunnel(target.host, target.port)
            return connection
        return http.client.HTTPSConnection(
            target.host, target.port, timeout=self._timeout, context=context
        )

    def _make_ssl_context(self) -> ssl.SSLContext:
        context = self._ssl_context = make_ssl_context()
        return context

    def _discard(self, connection: http.client.HTTPConnection) -> None:
        connection.close()  # the next request on this thread reconnects


def parse_target(url: str) -> _Target:
    """Where a request to *url* goes: scheme, host, port and the request line's target."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpError(f"unsupported URL: {url!r}", may_have_arrived=False)
    default_port = 443 if parts.scheme == "https" else 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(parts.scheme, parts.hostname, parts.port or default_port, path)


def make_ssl_context() -> ssl.SSLContext:
    """The TLS context of requests to the API: certifi's CAs if installed, else the system's."""
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi is a dependency
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


class _Watch:
    """One request's deadline, from :meth:`_Watchdog.watch` until :meth:`end`."""

    __slots__ = ("connection", "deadline", "fired", "interrupted", "sock", "watchdog")

    def __init__(
        self,
        connection: http.client.HTTPConnection,
        deadline: float,
        watchdog: _Watchdog | None,
    ) -> None:
        self.connection = connection
        self.deadline = deadline
        self.fired = False
        """The deadline passed: the watchdog shut the socket down."""
        self.interrupted = False
        """The client was closed mid-request: its socket was shut down."""
        self.sock: socket.socket | None = connection.sock
        """Captured, since closing the connection forgets it (and the watchdog needs it)."""
        self.watchdog = watchdog

    @property
    def watched(self) -> bool:
        return self.watchdog is not None

    def end(self) -> None:
        if self.watchdog is not None:
            self.watchdog.unwatch(self)


class _Watchdog:
    """Ends requests that outlive their deadline by shutting their socket down.

    One daemon thread per process, started with the first request. It sleeps until the earliest
    deadline it watches; as every request of a client has the same timeout, a new request rarely
    needs to wake it, so watching costs a lock and a set entry per request.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._start_lock = threading.Lock()
        self._watched: set[_Watch] = set()
        self._wakes_at = math.inf
        self._thread: threading.Thread | None = None

    def watch(self, connection: http.client.HTTPConnection, deadline: float) -> _Watch:
        if self._thread is None and not self._start():
            return _Watch(connection, deadline, None)  # interpreter exit: the caller bounds reads
        with self._cond:
            watch = _Watch(connection, deadline, self)
            self._watched.add(watch)
            if deadline < self._wakes_at:
                self._cond.notify()
        return watch

    def unwatch(self, watch: _Watch) -> None:
        with self._cond:
            self._watched.discard(watch)

    def interrupt(
        self, connections: set[http.client.HTTPConnection]
    ) -> set[http.client.HTTPConnection]:
        """Shut down the requests in flight on *connections*; return the connections they use."""
        busy = set()
        with self._cond:
            for watch in self._watched:
                if watch.connection in connections:
                    watch.interrupted = True
                    _shut_down(watch)
                    busy.add(watch.connection)
        return busy

    def _start(self) -> bool:
        # Not under self._cond: under gevent, start() switches to the new greenlet at once, and
        # it takes self._cond first thing.
        with self._start_lock:
            if self._thread is not None:
                return True
            thread = threading.Thread(target=self._run, name="goaltrack-deadlines", daemon=True)
            if not start_thread(thread):  # interpreter shutting down, or uWSGI's master
                return False
            self._thread = thread
            return True

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                earliest = math.inf
                for watch in list(self._watched):
                    if watch.deadline > now:
                        earliest = min(earliest, watch.deadline)
                        continue
                    self._watched.discard(watch)
                    watch.fired = True
                    _shut_down(watch)
                self._wakes_at = earliest
                self._cond.wait(None if earliest == math.inf else earliest - now)


def _shut_down(watch: _Watch) -> None:
    """Make the blocked read (or write) of *watch*'s request return at once."""
    sock = watch.sock or watch.connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):  # closed meanwhile
            sock.shutdown(socket.SHUT_RDWR)


_the_watchdog: _Watchdog | None = None
_watchdog_lock = threading.Lock()


def _watchdog() -> _Watchdog:
    global _the_watchdog
    watchdog = _the_watchdog
    if watchdog is None:
        with _watchdog_lock:
            if _the_watchdog is None:
                _the_watchdog = _Watchdog()
            watchdog = _the_watchdog
    return watchdog


def _forget_watchdog_after_fork() -> None:
    # The parent's watchdog thread does not exist in the child, and its locks may be held.
    global _the_watchdog, _watchdog_lock
    _the_watchdog = None
    _watchdog_lock = threading.Lock()


at_fork(after_in_child=_forget_watchdog_after_fork)


def _socket(connection: http.client.HTTPConnection) -> socket.socket:
    sock: socket.socket = connection.sock
    return sock


def _closed_by_peer(connection: http.client.HTTPConnection) -> bool:
    """An idle keep-alive socket that is readable has been closed (or spoke out of turn)."""
    sock = connection.sock
    if not isinstance(sock, socket.socket):
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def proxy_from_environment(target_url: str | None) -> str | None:
    """The proxy the standard environment variables ask for, as httpx's ``trust_env`` would."""
    if not target_url:
        return None
    parts = urlsplit(target_url)
    if parts.scheme != "https":
        return None  # plain http is only ever allowed to loopback hosts: never proxied
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get("https")
