"""The script proxy for threaded servers (Django and Flask under WSGI): no framework here.

:class:`SyncScriptProxy` answers ``GET <prefix>/script.js`` and ``POST <prefix>/events`` from a
request given as a CGI-style mapping (a WSGI environ, Django's ``request.META``) and a body
reader, and :class:`ScriptProxyWSGI` wraps any WSGI app with it (Flask's adapter uses it). What
is forwarded, where to, and the script cache are :mod:`goaltrack.script_proxy`'s, shared with
the ASGI proxy.

**Why events are answered at once.** A sync worker (gunicorn's default, uWSGI, mod_wsgi) serves
one request at a time: a proxied event that waited for the provider would hold that worker for
as long as the provider takes, up to the timeout, and a slow provider would then take the whole
site down with it. The tracking script sends its events fire-and-forget (a ``keepalive`` fetch
or a beacon, whose answer no visitor ever sees), so the proxy answers ``202`` as soon as the
body is read and a small per-process pool (:data:`FORWARD_THREADS` threads, a queue of
:data:`FORWARD_QUEUE` events) forwards it. When the queue is full (the provider is slow and
traffic high) an event is refused with ``503`` rather than kept: memory stays bounded, and a
lost pageview costs less than a stalled site. What this gives up: the browser never sees the
provider's own answer (forwarding failures are logged, once per outage), and a pageview may
reach the provider a moment after the ``202`` (a goal tracked in the same instant could be
judged before it).

**The script.** Served from the cache (:class:`~goaltrack.script_proxy.ScriptCache`, an hour);
when stale it is still served at once, and the pool fetches a fresh copy in the background (one
at a time; after a failure, not again for :data:`REFRESH_BACKOFF` seconds), so the site serves
the script whether the provider is slow or down. Only a cold cache (a worker's first request
for the script) waits for the fetch, at most :data:`~goaltrack.script_proxy.UPSTREAM_TIMEOUT`
seconds in all; without any copy the answer is ``502``.

The pool is per process (:class:`goaltrack.process.PerProcess`): a forked worker starts its
own threads, lazily, on its first proxied request. Its HTTP client is httpx's.
"""

from __future__ import annotations

import concurrent.futures
import http
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from goaltrack.delivery import InvalidConfiguration
from goaltrack.process import PerProcess, at_fork, start_thread
from goaltrack.script_proxy import (
    MAX_EVENT_BODY,
    UPSTREAM_TIMEOUT,
    CachedScript,
    ScriptCache,
    TrustedProxies,
    Upstream,
    client_ip,
    event_headers,
    normalize_prefix,
    proxy_paths,
    upstream_for,
)

if TYPE_CHECKING:
    import httpx

    from goaltrack.tracker import GoalTracker

__all__ = [
    "FORWARD_QUEUE",
    "FORWARD_THREADS",
    "REFRESH_BACKOFF",
    "Forwarder",
    "ProxyResponse",
    "ScriptProxyWSGI",
    "SyncScriptProxy",
    "forwarder",
    "proxy_for",
]

logger = logging.getLogger("goaltrack")

#: Threads per process forwarding events and fetching the script.
FORWARD_THREADS = 2
#: Events waiting to be forwarded, per process; one more is refused (503).
FORWARD_QUEUE = 256
#: Seconds after a failed background fetch of the script before the next one.
REFRESH_BACKOFF = 60.0

Job = Callable[["httpx.Client"], None]


def _http_client(timeout: float, connections: int) -> httpx.Client:
    try:
        import httpx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("goaltrack's script proxy needs httpx: pip install httpx") from exc
    return httpx.Client(
        timeout=timeout,
        follow_redirects=True,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


def _http_client_available() -> None:
    try:
        import httpx  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        raise InvalidConfiguration(
            "the script proxy needs httpx: pip install 'goaltrack[django]' (or [flask])"
        ) from None


# -- the background pool -------------------------------------------------------------------------


class Forwarder:
    """*threads* daemon threads running jobs from a queue of at most *queue_size*; one
    ``httpx.Client`` (made on first use) shared by them. Get the process's with
    :func:`forwarder`."""

    def __init__(self, threads: int, queue_size: int, timeout: float) -> None:
        self.threads = threads
        self.timeout = timeout
        self._queue: queue.Queue[Job] = queue.Queue(queue_size)
        self._lock = threading.Lock()
        self._started = 0
        self._client: httpx.Client | None = None

    def submit(self, job: Job) -> bool:
        """Queue *job*; False (nothing queued) when the queue is full."""
        if self._started < self.threads:
            self._start_threads()
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            return False
        return True

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def _start_threads(self) -> None:
        with self._lock:
            missing = self.threads - self._started
            self._started = self.threads
        for index in range(missing):  # started outside the lock (goaltrack.process)
            name = f"goaltrack-script-proxy-{index}"
            start_thread(threading.Thread(target=self._run, name=name, daemon=True))

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = _http_client(self.timeout, self.threads)
            return self._client

    def _run(self) -> None:
        client = self._http()
        while True:
            job = self._queue.get()
            try:
                job(client)
            except Exception:
                logger.exception("goaltrack: a script proxy job failed")


_forwarders: PerProcess[tuple[int, int, float], Forwarder] = PerProcess()


def forwarder(
    threads: int = FORWARD_THREADS,
    queue_size: int = FORWARD_QUEUE,
    timeout: float = UPSTREAM_TIMEOUT,
) -> Forwarder:
    """This process's pool for these bounds (shared by every proxy asking for the same)."""
    return _forwarders.get(
        (threads, queue_size, timeout), lambda: Forwarder(threads, queue_size, timeout)
    )


# -- the proxy -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProxyResponse:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]

    @property
    def status_line(self) -> str:
        """``"202 Accepted"``, for WSGI's ``start_response``."""
        return f"{self.status} {http.HTTPStatus(self.status).phrase}"


def _response(
    status: int,
    body: bytes,
    *,
    content_type: str = "text/plain; charset=utf-8",
    cache_control: str = "no-store",
    length: int | None = None,
    **extra: str,
) -> ProxyResponse:
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body) if length is None else length)),
        ("Cache-Control", cache_control),
    ]
    headers += [(name.replace("_", "-").title(), value) for name, value in extra.items()]
    return ProxyResponse(status, body, tuple(headers))


ACCEPTED = b'{"status":"accepted"}'

# Proxies of this process, reset in a forked child (their locks may have been held at the fork).
_proxies: weakref.WeakSet[SyncScriptProxy] = weakref.WeakSet()


class SyncScriptProxy:
    """``<prefix>/script.js`` and ``<prefix>/events`` for threaded servers (see the module).

    :meth:`handles` says which paths are its own, :meth:`handle` answers one request without
    waiting for the provider (but for a cold script cache). Safe to share between threads.
    """

    def __init__(
        self,
        upstream: Upstream,
        prefix: str = "/_goaltrack",
        *,
        trusted_proxies: TrustedProxies | Iterable[str] = (),
        cache: ScriptCache | None = None,
        timeout: float = UPSTREAM_TIMEOUT,
        threads: int = FORWARD_THREADS,
        queue_size: int = FORWARD_QUEUE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.upstream = upstream
        self.script_path, self.events_path = proxy_paths(prefix)
        self.trusted_proxies = TrustedProxies.of(trusted_proxies)
        self.cache = cache or ScriptCache(clock=clock)
        self.timeout = timeout
        self._pool = (threads, queue_size, timeout)
        self._clock = clock
        self._reset()
        _proxies.add(self)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._fetching: concurrent.futures.Future[CachedScript | None] | None = None
        self._next_refresh = 0.0
        self._failing = False
        self._dropped = 0

    @property
    def forwarder(self) -> Forwarder:
        return forwarder(*self._pool)

    def handles(self, path: str) -> bool:
        return path == self.script_path or path == self.events_path

    def handle(
        self,
        method: str,
        path: str,
        meta: Mapping[str, Any],
        read: Callable[[int], bytes],
        scheme: str = "http",
    ) -> ProxyResponse:
        """Answer one request for :meth:`handles`'s paths. *meta* holds the CGI-style request
        variables (``REMOTE_ADDR``, ``CONTENT_LENGTH``, ``HTTP_USER_AGENT``, ...); *read(n)*
        returns at most *n* bytes of the body; *scheme* is the request's (for ``Origin``)."""
        if path == self.script_path:
            if method not in ("GET", "HEAD"):
                return _response(405, b"method not allowed", allow="GET, HEAD")
            return self._script(head=method == "HEAD")
        if method != "POST":
            return _response(405, b"method not allowed", allow="POST")
        return self._event(meta, read, scheme)

    # -- the script

    def _script(self, *, head: bool) -> ProxyResponse:
        url = self.upstream.script_url
        entry = self.cache.fresh(url)
        if entry is None:
            entry = self.cache.stale(url)
            if entry is not None:
                self._refresh_in_background()
            else:
                entry = self._fetch_cold()
        if entry is None:
            return _response(502, b"tracking script unavailable")
        return _response(
            200,
            b"" if head else entry.body,
            content_type=entry.content_type,
            cache_control="public, max-age=3600",
            length=len(entry.body),
        )

    def _start_fetch(self) -> concurrent.futures.Future[CachedScript | None] | None:
        """The fetch in flight (one at a time), started now if none is; None when the pool's
        queue is full."""
        with self._lock:
            if self._fetching is not None:
                return self._fetching
            future: concurrent.futures.Future[CachedScript | None] = concurrent.futures.Future()
            self._fetching = future

        def fetch(client: httpx.Client) -> None:
            try:
                future.set_result(self._fetch(client))
            except BaseException as exc:
                future.set_exception(exc)
                raise
            finally:
                with self._lock:
                    self._fetching = None

        if not self.forwarder.submit(fetch):
            with self._lock:
                self._fetching = None
            future.set_result(None)
            return None
        return future

    def _fetch(self, client: httpx.Client) -> CachedScript | None:
        import httpx

        url = self.upstream.script_url
        try:
            response = client.get(url)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            self._next_refresh = self._clock() + REFRESH_BACKOFF
            logger.warning(
                "goaltrack: fetching the tracking script failed (%s); %s",
                exc,
                "serving the cached one" if self.cache.stale(url) else "none cached",
            )
            return None
        content_type = response.headers.get("content-type", "text/javascript")
        return self.cache.put(url, response.content, content_type)

    def _refresh_in_background(self) -> None:
        if self._fetching is None and self._clock() >= self._next_refresh:
            self._start_fetch()

    def _fetch_cold(self) -> CachedScript | None:
        future = self._start_fetch()
        if future is None:
            return None
        try:
            return future.result(self.timeout + 1.0)  # httpx bounds each phase; this, the total
        except concurrent.futures.TimeoutError:
            return self.cache.stale(self.upstream.script_url)

    # -- the events

    def _event(
        self, meta: Mapping[str, Any], read: Callable[[int], bytes], scheme: str
    ) -> ProxyResponse:
        # No "Connection: close": WSGI refuses hop-by-hop headers; the server decides.
        too_large = _response(413, b"event too large")
        declared = str(meta.get("CONTENT_LENGTH") or "").strip()
        if declared.isdigit() and int(declared) > MAX_EVENT_BODY:
            return too_large  # never read: the worker is not held for a body refused anyway
        body = read(MAX_EVENT_BODY + 1)
        if len(body) > MAX_EVENT_BODY:
            return too_large

        def header(name: str) -> str | None:
            value = meta.get(name)
            return str(value) if value else None

        origin = header("HTTP_ORIGIN")
        if origin is None and (host := header("HTTP_HOST")):
            origin = f"{scheme}://{host}"
        forwarded = header("HTTP_X_FORWARDED_FOR")
        peer = header("REMOTE_ADDR")
        ip = client_ip(peer, [forwarded] if forwarded else [], self.trusted_proxies)
        outgoing = event_headers(header("HTTP_USER_AGENT"), header("CONTENT_TYPE"), origin, ip)
        events_url = self.upstream.events_url

        def forward(client: httpx.Client) -> None:
            self._forward(client, events_url, body, outgoing)

        if not self.forwarder.submit(forward):
            self._count_dropped("the queue of events to forward is full")
            return _response(503, b"busy", retry_after="5")
        return _response(202, ACCEPTED, content_type="application/json")

    def _forward(
        self, client: httpx.Client, url: str, body: bytes, headers: dict[str, str]
    ) -> None:
        import httpx

        try:
            client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            self._count_dropped(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            return
        with self._lock:
            failing, self._failing = self._failing, False
            dropped, self._dropped = self._dropped, 0
        if failing:
            logger.info(
                "goaltrack: forwarding events to the provider works again (%d not forwarded)",
                dropped,
            )

    def _count_dropped(self, reason: str) -> None:
        """Count an event not forwarded; the first of an outage is logged, not the others."""
        with self._lock:
            self._dropped += 1
            first, self._failing = not self._failing, True
        if first:
            logger.warning(
                "goaltrack: forwarding an event to the provider failed (%s); the next failures "
                "are counted, not logged, until it works again",
                reason,
            )


class ProxySettings(Protocol):
    """The options the proxy is made from (:class:`goaltrack.options.AdapterSettings`, Django's
    ``goaltrack_settings``)."""

    @property
    def script_proxy(self) -> bool: ...
    @property
    def script_proxy_prefix(self) -> str: ...
    @property
    def trusted_proxies(self) -> tuple[str, ...]: ...


def proxy_for(
    tracker: GoalTracker, settings: ProxySettings, *, development: bool
) -> SyncScriptProxy | None:
    """The proxy an adapter's *settings* ask for (``script_proxy``), for *tracker*'s provider;
    None when off. When the provider's URLs are unknown: raises
    :class:`~goaltrack.InvalidConfiguration` in *development*, else logs it once and gives
    None (the site serves, without the proxy)."""
    if not settings.script_proxy:
        return None
    try:
        upstream = upstream_for(tracker.provider, api_url=tracker.api_url)
        _http_client_available()
    except InvalidConfiguration as exc:
        if development:
            raise
        logger.error("goaltrack: the script proxy cannot run: %s", exc)
        return None
    return SyncScriptProxy(
        upstream, settings.script_proxy_prefix, trusted_proxies=settings.trusted_proxies
    )


def _reset_proxies_after_fork() -> None:
    for proxy in list(_proxies):
        proxy._reset()


at_fork(after_in_child=_reset_proxies_after_fork)


# -- WSGI ----------------------------------------------------------------------------------------

WSGIApp = Callable[..., Iterable[bytes]]


def _wsgi_reader(environ: Mapping[str, Any]) -> Callable[[int], bytes]:
    """At most *n* bytes of the request body: up to its ``Content-Length``, or, for a body
    without one (chunked), from a server that marks it terminated (``wsgi.input_terminated``);
    else nothing (reading past the body would wait for the client)."""
    stream = environ["wsgi.input"]
    declared = str(environ.get("CONTENT_LENGTH") or "").strip()

    def read(limit: int) -> bytes:
        if declared.isdigit():
            return bytes(stream.read(min(int(declared), limit)))
        if environ.get("wsgi.input_terminated"):
            chunks, size = [], 0
            while size < limit:
                chunk = stream.read(min(65536, limit - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            return b"".join(chunks)
        return b""

    return read


class ScriptProxyWSGI:
    """WSGI middleware: :class:`SyncScriptProxy`'s paths answered by *proxy* (made by
    *make_proxy* on the first request for them), every other request passed to *app*.

    *make_proxy* returns None when the proxy cannot run (its upstream URLs unknown): those
    paths then pass to *app* too.
    """

    def __init__(
        self, app: WSGIApp, prefix: str, make_proxy: Callable[[], SyncScriptProxy | None]
    ) -> None:
        self.app = app
        self.prefix = normalize_prefix(prefix) + "/"
        self._make_proxy = make_proxy
        self._proxy: SyncScriptProxy | None = None
        self._made = False

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith(self.prefix):
            proxy = self.proxy()
            if proxy is not None and proxy.handles(path):
                response = proxy.handle(
                    environ.get("REQUEST_METHOD", "GET"),
                    path,
                    environ,
                    _wsgi_reader(environ),
                    environ.get("wsgi.url_scheme", "http"),
                )
                start_response(response.status_line, list(response.headers))
                return [response.body]
        return self.app(environ, start_response)

    def proxy(self) -> SyncScriptProxy | None:
        if not self._made:
            self._proxy = self._make_proxy()
            self._made = True
        return self._proxy
