"""HTTP for goal delivery: the one module that knows how a request goes over the wire.

Each delivery thread keeps one keep-alive connection per origin (it only ever has one request in
flight), built on the standard library's ``http.client``. Measured in ``bench/delivery.py``, that
costs about half the CPU per goal of httpx's connection pool (httpcore), which itself costs about
two thirds of the full httpx client: the API takes one goal per request, so the per-request cost
is what counts. Redirects are never followed, so the API key is never re-sent elsewhere. TLS uses
certifi's CA bundle when it is installed (as httpx does), else the system's.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import urllib.request
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import urlsplit

__all__ = ["HttpClient", "HttpError", "HttpResponse"]


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
        self._proxy = proxy if proxy is not None else _proxy_from_environment(target_url)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[http.client.HTTPConnection] = set()
        self._targets: dict[str, _Target] = {}
        self._ssl_context: ssl.SSLContext | None = None
        self._closed = False

    def post(self, url: str, request_headers: Mapping[str, str], body: bytes) -> HttpResponse:
        """POST *body* to *url*; raise :class:`HttpError` when no complete response came back."""
        target = self._targets.get(url) or self._parse(url)
        connection = self._connection(target)
        if connection.sock is None:
            try:
                connection.connect()
            except TimeoutError:
                self._discard(connection)
                raise HttpError("connect timeout", may_have_arrived=False) from None
            except OSError as exc:
                self._discard(connection)
                raise HttpError(f"connection failed: {exc}", may_have_arrived=False) from None
            with self._lock:
                self._open.add(connection)
        try:
            connection.request("POST", target.path, body=body, headers=dict(request_headers))
            response = connection.getresponse()
            content = response.read()
        except TimeoutError:
            self._discard(connection)
            raise HttpError("timed out waiting for the response", may_have_arrived=True) from None
        except (http.client.HTTPException, OSError) as exc:
            self._discard(connection)
            message = f"connection broken ({type(exc).__name__}: {exc})"
            raise HttpError(message, may_have_arrived=True) from None
        if response.will_close:
            self._discard(connection)
        headers = {name.lower(): value for name, value in response.getheaders()}
        return HttpResponse(response.status, headers, content)

    def close(self) -> None:
        """Close every open connection; a later ``post`` opens a new one."""
        with self._lock:
            connections, self._open = self._open, set()
        for connection in connections:
            connection.close()

    # -- connections ------------------------------------------------------------------------

    def _parse(self, url: str) -> _Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HttpError(f"unsupported URL: {url!r}", may_have_arrived=False)
        default_port = 443 if parts.scheme == "https" else 80
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        target = _Target(parts.scheme, parts.hostname, parts.port or default_port, path)
        self._targets[url] = target
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
        try:
            import certifi
        except ImportError:  # pragma: no cover - certifi comes with httpx
            context = ssl.create_default_context()
        else:
            context = ssl.create_default_context(cafile=certifi.where())
        self._ssl_context = context
        return context

    def _discard(self, connection: http.client.HTTPConnection) -> None:
        connection.close()  # the next request on this thread reconnects


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


def _proxy_from_environment(target_url: str | None) -> str | None:
    """The proxy the standard environment variables ask for, as httpx's ``trust_env`` would."""
    if not target_url:
        return None
    parts = urlsplit(target_url)
    if parts.scheme != "https":
        return None  # plain http is only ever allowed to loopback hosts: never proxied
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get("https")
