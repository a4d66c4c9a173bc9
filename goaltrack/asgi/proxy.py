"""The script proxy in plain ASGI: ``GET <prefix>/script.js`` and ``POST <prefix>/events``.

:class:`ScriptProxyApp` answers those two paths itself with async upstream calls (one
``httpx.AsyncClient``, made on first use, with a short timeout): no thread is held per request.
What is forwarded, where to, and the script cache are :mod:`goaltrack.script_proxy`'s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import httpx

from goaltrack.script_proxy import (
    MAX_EVENT_BODY,
    UPSTREAM_TIMEOUT,
    ScriptCache,
    TrustedProxies,
    Upstream,
    client_ip,
    event_headers,
    proxy_paths,
)

__all__ = ["UPSTREAM_TIMEOUT", "ScriptProxyApp"]

logger = logging.getLogger("goaltrack")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


class ScriptProxyApp:
    """Answers ``<prefix>/script.js`` and ``<prefix>/events``; :meth:`handles` says which
    requests are its own."""

    def __init__(
        self,
        upstream: Upstream,
        prefix: str = "/_goaltrack",
        *,
        trusted_proxies: TrustedProxies | Iterable[str] = (),
        cache: ScriptCache | None = None,
        timeout: float = UPSTREAM_TIMEOUT,
    ) -> None:
        self.upstream = upstream
        self.script_path, self.events_path = proxy_paths(prefix)
        self.trusted_proxies = TrustedProxies.of(trusted_proxies)
        self.cache = cache or ScriptCache()
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._fetching: asyncio.Lock | None = None

    def handles(self, scope: Scope) -> bool:
        return scope["type"] == "http" and scope["path"] in (self.script_path, self.events_path)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=True)
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if scope["path"] == self.script_path:
            if method not in ("GET", "HEAD"):
                await _respond(send, 405, b"method not allowed", allow="GET, HEAD")
                return
            await self._script(send, head=method == "HEAD")
        elif method == "POST":
            await self._event(scope, receive, send)
        else:
            await _respond(send, 405, b"method not allowed", allow="POST")

    # -- the script

    async def _script(self, send: Send, *, head: bool) -> None:
        url = self.upstream.script_url
        entry = self.cache.fresh(url)
        if entry is None:
            if self._fetching is None:
                self._fetching = asyncio.Lock()
            async with self._fetching:  # one fetch at a time; the others read its result
                entry = self.cache.fresh(url)
                if entry is None:
                    try:
                        response = await self._http().get(url)
                        response.raise_for_status()
                    except httpx.HTTPError as exc:
                        entry = self.cache.stale(url)
                        logger.warning(
                            "goaltrack: fetching the tracking script failed (%s); %s",
                            exc,
                            "serving the cached one" if entry else "none cached",
                        )
                    else:
                        content_type = response.headers.get("content-type", "text/javascript")
                        entry = self.cache.put(url, response.content, content_type)
        if entry is None:
            await _respond(send, 502, b"tracking script unavailable")
            return
        await _respond(
            send,
            200,
            b"" if head else entry.body,
            content_type=entry.content_type,
            cache_control="public, max-age=3600",
            length=len(entry.body),
        )

    # -- the events

    async def _event(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: dict[bytes, list[bytes]] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name, []).append(value)
        declared = headers.get(b"content-length")
        too_large = b"event too large"
        if declared and declared[0].strip().isdigit() and int(declared[0]) > MAX_EVENT_BODY:
            await _respond(send, 413, too_large, close=True)
            return
        try:
            body = await _read_body(receive, MAX_EVENT_BODY)
        except _TooLarge:
            await _respond(send, 413, too_large, close=True)
            return
        except _Disconnected:
            return

        def first(name: bytes) -> str | None:
            values = headers.get(name)
            return values[0].decode("latin-1") if values else None

        client = scope.get("client")
        peer = str(client[0]) if client else None
        forwarded = [v.decode("latin-1") for v in headers.get(b"x-forwarded-for", [])]
        origin = first(b"origin")
        if origin is None and (host := first(b"host")):
            origin = f"{scope.get('scheme', 'http')}://{host}"
        outgoing = event_headers(
            first(b"user-agent"),
            first(b"content-type"),
            origin,
            client_ip(peer, forwarded, self.trusted_proxies),
        )
        try:
            response = await self._http().post(
                self.upstream.events_url, content=body, headers=outgoing
            )
        except httpx.HTTPError as exc:
            logger.warning("goaltrack: forwarding an event failed: %s", exc)
            await _respond(send, 502, b"events endpoint unavailable")
            return
        await _respond(
            send,
            response.status_code,
            response.content,
            content_type=response.headers.get("content-type", "application/json"),
        )


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The request body, raising :class:`_TooLarge` as soon as it passes *limit* bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    *,
    content_type: str = "text/plain; charset=utf-8",
    cache_control: str = "no-store",
    allow: str | None = None,
    length: int | None = None,
    close: bool = False,
) -> None:
    headers = [
        (b"content-type", content_type.encode("latin-1")),
        (b"content-length", str(len(body) if length is None else length).encode()),
        (b"cache-control", cache_control.encode()),
    ]
    if allow is not None:
        headers.append((b"allow", allow.encode()))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
