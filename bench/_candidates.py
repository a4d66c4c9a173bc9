"""Prototype delivery paths measured by ``bench/delivery.py`` (not a benchmark: run_all skips it).

None of this is in the product: these are the candidates for a cheaper default delivery path,
kept as small as a fair measurement allows. Each takes the JSON body of a goal from the web
thread (``submit``), delivers it with 4 requests in flight, counts what the API answered with
200, and lets the web thread wait for everything submitted so far (``flush``):

- :class:`ThreadPool` with :class:`HttptoolsPoster`: one keep-alive socket per worker thread,
  the request head encoded once, one ``sendall`` per goal, the response parsed by
  ``httptools.HttpResponseParser`` (at most ``MAX_RESPONSE_BYTES`` of body); the total deadline
  per request is kept by giving every blocking call only the time left, so no watchdog thread;
- :class:`ThreadPool` with goaltrack's own ``HttpClient``: the same minimal pool over today's
  HTTP layer, to tell what the pool saves from what the parser saves;
- :class:`AiohttpPipeline`: one asyncio event loop thread, one ``aiohttp.ClientSession``
  (connector limit = in-flight count, total timeout per request); the web thread appends to a
  deque and wakes the loop only when no wake-up is pending;
- :class:`ProcessPipeline`: a child process (spawned) fed by a pipe, delivering with a
  :class:`ThreadPool` over goaltrack's ``HttpClient``; the web process only writes to the pipe.

What the product adds around delivery (retries, the circuit breaker, stats, hooks, fork and exit
handling) is left out: the figures are a lower bound for each path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httptools

from goaltrack.http_client import MAX_RESPONSE_BYTES, HttpClient, HttpError

IN_FLIGHT = 4
TIMEOUT = 5.0


# -- (a) httptools over a keep-alive socket --------------------------------------------------


class _Response:
    """httptools' callbacks for one response."""

    __slots__ = ("body", "complete", "headers", "headers_complete", "too_long")

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.headers_complete = False
        self.complete = False
        self.too_long = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.headers_complete = True

    def on_body(self, chunk: bytes) -> None:
        room = MAX_RESPONSE_BYTES - len(self.body)
        if len(chunk) > room:
            self.too_long = True
            chunk = chunk[:room]
        self.body += chunk

    def on_message_complete(self) -> None:
        self.complete = True


class HttptoolsPoster:
    """POST to one URL over one keep-alive socket per calling thread, parsed by httptools."""

    def __init__(self, url: str, headers: Mapping[str, str], *, timeout: float = TIMEOUT) -> None:
        parts = urlsplit(url)
        assert parts.hostname is not None
        self._tls = parts.scheme == "https"
        self._address = (parts.hostname, parts.port or (443 if self._tls else 80))
        self._timeout = timeout
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self._head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")
        self._ssl_context = ssl.create_default_context() if self._tls else None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()

    def post(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """POST *body*; raise :class:`HttpError` unless a complete response came back in time."""
        ends_at = time.monotonic() + self._timeout
        sock: socket.socket | None = getattr(self._local, "sock", None)
        if sock is not None and _readable(sock):  # closed by the server while idle
            self._drop(sock)
            sock = None
        if sock is None:
            sock = self._connect(ends_at)
        response = _Response()
        parser = httptools.HttpResponseParser(response)
        try:
            sock.settimeout(max(0.001, ends_at - time.monotonic()))
            sock.sendall(self._head + b"%d\r\n\r\n" % len(body) + body)
            while not response.complete:
                left = ends_at - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                sock.settimeout(left)  # the time left, so the deadline bounds the whole request
                data = sock.recv(65536)
                if not data:
                    if response.headers_complete and "content-length" not in response.headers:
                        break  # a body delimited by the end of the connection
                    raise ConnectionError("closed before the response was complete")
                parser.feed_data(data)
                if response.too_long:
                    break  # never read further: the connection is closed below
        except (OSError, httptools.HttpParserError) as exc:
            self._drop(sock)
            timed_out = isinstance(exc, TimeoutError)
            message = "timeout" if timed_out else f"connection broken ({type(exc).__name__})"
            raise HttpError(message, may_have_arrived=True) from None
        if not response.complete or not parser.should_keep_alive():
            self._drop(sock)
        return parser.get_status_code(), response.headers, bytes(response.body)

    def _connect(self, ends_at: float) -> socket.socket:
        try:
            sock = socket.create_connection(
                self._address, timeout=max(0.001, ends_at - time.monotonic())
            )
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl_context is not None:
                sock = self._ssl_context.wrap_socket(sock, server_hostname=self._address[0])
        except OSError as exc:
            raise HttpError(f"connection failed: {exc}", may_have_arrived=False) from None
        self._local.sock = sock
        with self._lock:
            self._open.add(sock)
        return sock

    def _drop(self, sock: socket.socket) -> None:
        self._local.sock = None
        with self._lock:
            self._open.discard(sock)
        sock.close()

    def close(self) -> None:
        """Shut every socket down: a request in flight on another thread fails at once."""
        with self._lock:
            sockets, self._open = self._open, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def _readable(sock: socket.socket) -> bool:
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


# -- a minimal pool of delivery threads ------------------------------------------------------


class _Settlements:
    """The counts of bodies submitted, delivered and failed, and a ``flush`` that waits for
    them to meet: what the in-process candidates share. ``_lock`` guards the counts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._all_settled = threading.Condition(self._lock)
        self._waiting = 0
        self.submitted = 0
        self.delivered = 0
        self.failed = 0

    def _settled(self, ok: bool) -> None:
        with self._lock:
            if ok:
                self.delivered += 1
            else:
                self.failed += 1
            if self._waiting:
                self._all_settled.notify_all()

    def flush(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            self._waiting += 1
            try:
                while self.delivered + self.failed < self.submitted:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._all_settled.wait(left)
                return True
            finally:
                self._waiting -= 1


class ThreadPool(_Settlements):
    """*in_flight* threads taking bodies from a deque, each delivering them with *post*."""

    def __init__(
        self,
        post: Callable[[bytes], bool],
        close: Callable[[], None],
        in_flight: int = IN_FLIGHT,
    ) -> None:
        super().__init__()
        self._post = post
        self._close_poster = close
        self._work_ready = threading.Condition(self._lock)
        self._queue: deque[bytes] = deque()
        self._idle = 0
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"bench-pool-{i}", daemon=True)
            for i in range(in_flight)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, body: bytes) -> None:
        with self._lock:
            self._queue.append(body)
            self.submitted += 1
            if self._idle:
                self._work_ready.notify()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._work_ready.notify_all()
        self._close_poster()
        for thread in self._threads:
            thread.join(5)

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._idle += 1
                    self._work_ready.wait()
                    self._idle -= 1
                if self._closed:
                    return
                body = self._queue.popleft()
            self._settled(self._post(body))


def httptools_pool(url: str, headers: Mapping[str, str]) -> ThreadPool:
    poster = HttptoolsPoster(url, headers)

    def post(body: bytes) -> bool:
        try:
            return poster.post(body)[0] == 200
        except HttpError:
            return False

    return ThreadPool(post, poster.close)


def http_client_pool(
    url: str, headers: Mapping[str, str], in_flight: int = IN_FLIGHT
) -> ThreadPool:
    client = HttpClient(timeout=TIMEOUT)

    def post(body: bytes) -> bool:
        try:
            return client.post(url, headers, body).status == 200
        except HttpError:
            return False

    return ThreadPool(post, client.close, in_flight)


# -- (b) aiohttp on one event loop thread ----------------------------------------------------


class AiohttpPipeline(_Settlements):
    """One asyncio loop thread with one ``aiohttp.ClientSession`` and *in_flight* workers."""

    def __init__(self, url: str, headers: Mapping[str, str], in_flight: int = IN_FLIGHT) -> None:
        super().__init__()
        self._url = url
        self._headers = dict(headers)
        self._in_flight = in_flight
        self._incoming: deque[bytes] = deque()
        self._wake_pending = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bench-aiohttp")
        self._thread.daemon = True
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    async def _start(self) -> None:
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._in_flight),
            timeout=aiohttp.ClientTimeout(total=TIMEOUT),
        )
        self._workers = [asyncio.create_task(self._work()) for _ in range(self._in_flight)]

    def submit(self, body: bytes) -> None:
        with self._lock:
            self.submitted += 1
        self._incoming.append(body)  # deque.append is atomic
        if not self._wake_pending:  # a wake-up already scheduled will take this body too
            self._wake_pending = True
            self._loop.call_soon_threadsafe(self._take_incoming)

    def _take_incoming(self) -> None:
        self._wake_pending = False  # first: a body appended from now on schedules a new wake-up
        while self._incoming:
            self._queue.put_nowait(self._incoming.popleft())

    async def _work(self) -> None:
        while True:
            body = await self._queue.get()
            self._settled(await self._post(body))

    async def _post(self, body: bytes) -> bool:
        try:
            async with self._session.post(self._url, data=body, headers=self._headers) as resp:
                content = b""
                while len(content) < MAX_RESPONSE_BYTES:
                    chunk = await resp.content.read(MAX_RESPONSE_BYTES - len(content))
                    if not chunk:
                        break
                    content += chunk
                if not resp.content.at_eof():
                    resp.close()  # longer than we read: never read further, drop the connection
                return resp.status == 200
        except (TimeoutError, aiohttp.ClientError):
            return False

    async def _stop(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        await self._session.close()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


# -- (c) a delivery process fed by a pipe ----------------------------------------------------

_FLUSH = b"F"
_QUIT = b"Q"


def _deliver_from_pipe(
    conn: Any, url: str, headers: dict[str, str], in_flight: int
) -> None:  # pragma: no cover - runs in the child process
    pool = http_client_pool(url, headers, in_flight)
    try:
        while True:
            message = conn.recv_bytes()
            if message == _QUIT:
                return
            if message == _FLUSH:
                flushed = pool.flush(120)
                counts = {"flushed": flushed, "delivered": pool.delivered, "failed": pool.failed}
                conn.send_bytes(json.dumps(counts).encode())
            else:
                pool.submit(message)
    finally:
        pool.close()


class ProcessPipeline:
    """A spawned child process that delivers the bodies the web process writes to a pipe."""

    def __init__(self, url: str, headers: Mapping[str, str], in_flight: int = IN_FLIGHT) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe(duplex=True)
        self._process = context.Process(
            target=_deliver_from_pipe,
            args=(child_conn, url, dict(headers), in_flight),
            name="bench-delivery-process",
            daemon=True,
        )
        self._process.start()
        child_conn.close()
        self.submitted = 0
        self.delivered = 0
        self.failed = 0

    @property
    def pid(self) -> int:
        assert self._process.pid is not None
        return self._process.pid

    def submit(self, body: bytes) -> None:
        self._conn.send_bytes(body)
        self.submitted += 1

    def flush(self, timeout: float) -> bool:
        self._conn.send_bytes(_FLUSH)
        if not self._conn.poll(timeout):
            return False
        counts = json.loads(self._conn.recv_bytes())
        self.delivered, self.failed = counts["delivered"], counts["failed"]
        return bool(counts["flushed"])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send_bytes(_QUIT)
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        self._conn.close()


# -- raw aiohttp, for reference --------------------------------------------------------------


def aiohttp_loop(
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    n: int,
    timed: Callable[[], AbstractContextManager[object]],
) -> int:
    """POST *body* once (warm-up), then *n* times in sequence inside ``timed()``, from one
    session; return how many got 200."""

    async def run() -> int:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

            async def post() -> bool:
                async with session.post(url, data=body, headers=dict(headers)) as resp:
                    await resp.read()
                    return resp.status == 200

            ok = int(await post())
            with timed():
                for _ in range(n):
                    ok += await post()
        return ok

    return asyncio.run(run())
