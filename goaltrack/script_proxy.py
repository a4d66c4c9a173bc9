"""The first-party script proxy's rules, for every adapter: no framework here.

It owns what the proxy forwards and where to, not how a framework answers:

- :func:`upstream_for`: the provider's script and events URLs (:data:`UPSTREAMS`: DataFast's;
  the docs we have give none for Faurya and Flowsery, so for them the proxy needs both URLs;
  while goals go to the bundled fake API, its stand-in script and events endpoint);
- :class:`ScriptCache`: the script, kept in memory for :data:`SCRIPT_TTL` seconds, bounded in
  entries and size, and served stale when the upstream fails;
- :func:`client_ip` and :func:`event_headers`: the headers an event is forwarded with (the
  browser's ``User-Agent``, ``Content-Type``, an ``Origin`` and the client's address as
  ``x-datafast-real-ip``; never ``Cookie``, ``Authorization`` or any other header), the
  address from ``X-Forwarded-For`` only through :class:`TrustedProxies`;
- :data:`MAX_EVENT_BODY`: the largest event body forwarded; :data:`UPSTREAM_TIMEOUT`;
- :func:`tag_attributes`: what the script tag needs to load the script from the proxy.

How each server answers is the adapters': :mod:`goaltrack.asgi.proxy` (async) and
:mod:`goaltrack.script_proxy_sync` (threaded servers: Django, Flask).
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from goaltrack.delivery import InvalidConfiguration, is_loopback
from goaltrack.providers import Provider, get_provider

__all__ = [
    "MAX_EVENT_BODY",
    "REAL_IP_HEADER",
    "SCRIPT_TTL",
    "UPSTREAMS",
    "UPSTREAM_TIMEOUT",
    "CachedScript",
    "ScriptCache",
    "TrustedProxies",
    "Upstream",
    "client_ip",
    "event_headers",
    "fake_api_upstream",
    "normalize_prefix",
    "parse_networks",
    "proxy_paths",
    "tag_attributes",
    "upstream_for",
]

#: The largest event body forwarded, in bytes; a larger one is refused (413).
MAX_EVENT_BODY = 64 * 1024
#: Seconds a fetched script is served before it is fetched again.
SCRIPT_TTL = 3600.0
#: The header carrying the visitor's address to the provider.
REAL_IP_HEADER = "x-datafast-real-ip"
#: Seconds an upstream call may take.
UPSTREAM_TIMEOUT = 5.0
#: Where the bundled fake API serves its stand-in script and events endpoint, below its goals URL.
FAKE_SCRIPT_PATH = "/js/script.js"
FAKE_EVENTS_PATH = "/api/events"


@dataclass(frozen=True)
class Upstream:
    """Where the proxy fetches the script and forwards the events."""

    script_url: str
    events_url: str


#: The providers whose script and events URLs the docs we have give.
UPSTREAMS: dict[str, Upstream] = {
    "datafast": Upstream("https://datafa.st/js/script.js", "https://datafa.st/api/events"),
}


def fake_api_upstream(api_url: str | None) -> Upstream | None:
    """The bundled fake API's stand-in script and events endpoint, when goals go to one (plain
    HTTP on a loopback host: *api_url*); else None."""
    if not api_url:
        return None
    parts = urlsplit(api_url)
    if parts.scheme != "http" or not parts.hostname or not is_loopback(parts.hostname):
        return None
    base = api_url.rstrip("/")
    return Upstream(base + FAKE_SCRIPT_PATH, base + FAKE_EVENTS_PATH)


def upstream_for(
    provider: str | Provider, given: Upstream | None = None, *, api_url: str | None = None
) -> Upstream:
    """*given*, else the fake API's when goals go to one (*api_url*), else *provider*'s
    upstream; raises :class:`~goaltrack.InvalidConfiguration` for a provider whose URLs are
    unknown (Faurya, Flowsery) when none are given."""
    if given is not None:
        return given
    fake = fake_api_upstream(api_url)
    if fake is not None:
        return fake
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


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(label: str, entries: object) -> tuple[str, ...]:
    """Addresses and CIDR networks (``"10.0.0.1"``, ``"10.0.0.0/8"``, ``"::1"``), given as an
    iterable or one comma-separated string, normalized (``"10.0.0.0/8"``); raises
    :class:`~goaltrack.InvalidConfiguration` naming *label* for an entry that is neither."""
    if isinstance(entries, str):
        entries = entries.split(",")
    if not isinstance(entries, Iterable):
        raise InvalidConfiguration(f"{label} must be addresses or networks, not {entries!r}")
    networks = []
    for entry in entries:
        if not isinstance(entry, str):
            raise InvalidConfiguration(f"{label}: {entry!r} is not an address or a network")
        if not entry.strip():
            continue
        try:
            networks.append(str(ipaddress.ip_network(entry.strip(), strict=False)))
        except ValueError:
            raise InvalidConfiguration(
                f"{label}: {entry.strip()!r} is not an address or a network (10.0.0.0/8)"
            ) from None
    return tuple(networks)


class TrustedProxies:
    """The reverse proxies whose ``X-Forwarded-For`` names the visitor: addresses and CIDR
    networks (see :func:`parse_networks`). ``address in trusted`` tests one."""

    def __init__(self, entries: str | Iterable[str] = ()) -> None:
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(n) for n in parse_networks("trusted_proxies", entries)
        )

    @classmethod
    def of(cls, entries: TrustedProxies | str | Iterable[str]) -> TrustedProxies:
        """*entries* as a :class:`TrustedProxies` (itself, if it is one already)."""
        return entries if isinstance(entries, TrustedProxies) else cls(entries)

    def __contains__(self, address: object) -> bool:
        if not self.networks or not isinstance(address, str):
            return False
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __repr__(self) -> str:
        return f"TrustedProxies({[str(n) for n in self.networks]!r})"


def client_ip(
    peer: str | None,
    forwarded_for: Iterable[str],
    trusted_proxies: TrustedProxies | Iterable[str],
) -> str | None:
    """The visitor's address: *peer* (the direct connection's), or, when *peer* is one of
    *trusted_proxies*, the last ``X-Forwarded-For`` address that is not a trusted proxy.
    *forwarded_for* are the ``X-Forwarded-For`` header values, in order."""
    trusted_proxies = TrustedProxies.of(trusted_proxies)
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


def proxy_paths(prefix: str) -> tuple[str, str]:
    """The paths a proxy under *prefix* answers: the script's, then the events'."""
    prefix = normalize_prefix(prefix)
    return prefix + "/script.js", prefix + "/events"


def tag_attributes(prefix: str) -> dict[str, str]:
    """The script tag's ``src`` and ``data-api-url`` (as :func:`goaltrack.script_tag` keyword
    arguments) for a proxy under *prefix*: the script and its events from the site itself."""
    script, events = proxy_paths(prefix)
    return {"src": script, "data_api_url": events}


def normalize_prefix(prefix: str) -> str:
    """``"_goaltrack/"`` -> ``"/_goaltrack"``: one leading slash, none trailing."""
    return "/" + prefix.strip("/")
