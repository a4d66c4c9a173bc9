"""The first-party script proxy's rules, for every adapter: no framework here.

It owns what the proxy forwards and where to, not how a framework answers:

- :func:`upstream_for`: the provider's script and events URLs (:data:`UPSTREAMS`: DataFast's;
  the docs we have give none for Faurya and Flowsery, so for them the proxy needs both URLs);
- :class:`ScriptCache`: the script, kept in memory for :data:`SCRIPT_TTL` seconds, bounded in
  entries and size, and served stale when the upstream fails;
- :func:`client_ip` and :func:`event_headers`: the headers an event is forwarded with (the
  browser's ``User-Agent``, ``Content-Type``, an ``Origin`` and the client's address as
  ``x-datafast-real-ip``; never ``Cookie``, ``Authorization`` or any other header);
- :data:`MAX_EVENT_BODY`: the largest event body forwarded.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from goaltrack.delivery import InvalidConfiguration
from goaltrack.providers import Provider, get_provider

__all__ = [
    "MAX_EVENT_BODY",
    "REAL_IP_HEADER",
    "SCRIPT_TTL",
    "UPSTREAMS",
    "CachedScript",
    "ScriptCache",
    "Upstream",
    "client_ip",
    "event_headers",
    "upstream_for",
]

#: The largest event body forwarded, in bytes; a larger one is refused (413).
MAX_EVENT_BODY = 64 * 1024
#: Seconds a fetched script is served before it is fetched again.
SCRIPT_TTL = 3600.0
#: The header carrying the visitor's address to the provider.
REAL_IP_HEADER = "x-datafast-real-ip"


@dataclass(frozen=True)
class Upstream:
    """Where the proxy fetches the script and forwards the events."""

    script_url: str
    events_url: str


#: The providers whose script and events URLs the docs we have give.
UPSTREAMS: dict[str, Upstream] = {
    "datafast": Upstream("https://datafa.st/js/script.js", "https://datafa.st/api/events"),
}


def upstream_for(provider: str | Provider, given: Upstream | None = None) -> Upstream:
    """*given*, else *provider*'s upstream; raises :class:`~goaltrack.InvalidConfiguration` for
    a provider whose URLs are unknown (Faurya, Flowsery) when none are given."""
    if given is not None:
        return given
    name = get_provider(provider).name
    try:
        return UPSTREAMS[name]
    except KeyError:
        raise InvalidConfiguration(
            f"script_proxy: the script and events URLs of {name!r} are unknown; "
            "give them (script_proxy_upstream=Upstream(script_url, events_url))"
        ) from None


# -- the script cache ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CachedScript:
    body: bytes
    content_type: str
    fetched_at: float


class ScriptCache:
    """Scripts by URL, at most *max_entries* of at most *max_bytes* each (larger: not kept).

    :meth:`fresh` gives a script fetched less than *ttl* seconds ago; :meth:`stale` any kept
    script, however old, for when the upstream fails.
    """

    def __init__(
        self,
        ttl: float = SCRIPT_TTL,
        *,
        max_entries: int = 8,
        max_bytes: int = 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, CachedScript] = OrderedDict()

    def fresh(self, url: str) -> CachedScript | None:
        entry = self._entries.get(url)
        if entry is None or self._clock() - entry.fetched_at >= self.ttl:
            return None
        return entry

    def stale(self, url: str) -> CachedScript | None:
        return self._entries.get(url)

    def put(self, url: str, body: bytes, content_type: str) -> CachedScript:
        entry = CachedScript(body, content_type, self._clock())
        if len(body) <= self.max_bytes:
            self._entries[url] = entry
            self._entries.move_to_end(url)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return entry


# -- the events' headers -------------------------------------------------------------------------


def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def client_ip(
    peer: str | None, forwarded_for: Iterable[str], trusted_proxies: frozenset[str]
) -> str | None:
    """The visitor's address: *peer* (the direct connection's), or, when *peer* is one of
    *trusted_proxies*, the last ``X-Forwarded-For`` address that is not a trusted proxy.
    *forwarded_for* are the ``X-Forwarded-For`` header values, in order."""
    if peer is None or peer not in trusted_proxies:
        return peer
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break  # a malformed hop: trust nothing left of it
        if address not in trusted_proxies:
            return address
    return peer


def event_headers(
    user_agent: str | None, content_type: str | None, origin: str | None, ip: str | None
) -> dict[str, str]:
    """The headers an event is forwarded with: these, and nothing else of the browser's."""
    headers = {"Content-Type": content_type or "application/json"}
    if user_agent:
        headers["User-Agent"] = user_agent
    if origin:
        headers["Origin"] = origin
    if ip:
        headers[REAL_IP_HEADER] = ip
    return headers
