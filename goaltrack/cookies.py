"""Visitor ids from the cookies the provider's tracking script sets.

Accepts a cookie mapping (Django's ``request.COOKIES``, Flask's ``request.cookies``) or a raw
``Cookie`` header (ASGI scopes). A value that is not a well-formed id for the provider (wrong
shape, over-long, control characters) is ignored, never forwarded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import AnyStr, NamedTuple

from goaltrack.providers import PROVIDERS, Provider, get_provider

__all__ = [
    "HeaderReader",
    "Visitor",
    "header_reader",
    "parse_cookie_header",
    "visitor_from_cookies",
]

#: Longer Cookie headers are not scanned: no browser sends one, and it bounds the work per request.
MAX_COOKIE_HEADER_BYTES = 16 * 1024


class Visitor(NamedTuple):
    """The ids a provider's script set for the browser making the request."""

    visitor_id: str | None
    session_id: str | None


def parse_cookie_header(header: str | bytes, names: tuple[str, ...]) -> dict[str, str]:
    """Return the first value of each cookie in *names* found in a raw ``Cookie`` header."""
    if len(header) > MAX_COOKIE_HEADER_BYTES:
        return {}
    found: dict[str, str] = {}
    for name in names:
        value = _cookie_value(header, name)
        if value is not None:
            found[name] = value
    return found


def _cookie_value(header: str | bytes, name: str) -> str | None:
    """The first value of cookie *name* in a raw header (browsers send the most specific first).

    A substring search, not a split of the whole header: this runs on every request in the ASGI
    middleware, and ``find`` is several times faster than splitting or a regex.
    """
    value: str | None
    if isinstance(header, bytes):
        raw = _find_value(header, name.encode("latin-1") + b"=", b";", b" \t")
        value = None if raw is None else raw.decode("latin-1")
    else:
        value = _find_value(header, name + "=", ";", " \t")
    if value is None:
        return None
    value = value.strip(" \t")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return value


def _find_value(header: AnyStr, key: AnyStr, separator: AnyStr, blanks: AnyStr) -> AnyStr | None:
    start = 0
    while True:
        index = header.find(key, start)
        if index < 0:
            return None
        # The key must begin a cookie: only blanks between it and the previous ";".
        before = header[:index].rstrip(blanks)
        if not before or before.endswith(separator):
            value_start = index + len(key)
            end = header.find(separator, value_start)
            return header[value_start:] if end < 0 else header[value_start:end]
        start = index + 1


def visitor_from_cookies(
    cookies: Mapping[str, str] | str | bytes | None, provider: str | Provider
) -> Visitor | None:
    """The provider's visitor (and session) ids from *cookies*, or None when there is no visitor.

    A site running the provider's cookieless script has no id cookie: then there is nothing to
    attribute a goal to, and None is returned.
    """
    spec = PROVIDERS.get(provider) if isinstance(provider, str) else None
    if spec is None:
        spec = get_provider(provider)
    if cookies is None:
        return None
    if isinstance(cookies, bytes):
        return header_reader(spec).visitor(cookies)
    if isinstance(cookies, str):
        return header_reader(spec).visitor_text(cookies)
    return _parsed(cookies, spec)


def _parsed(cookies: Mapping[str, str] | str, spec: Provider) -> Visitor | None:
    """:func:`visitor_from_cookies` for a mapping or a text header, never remembered."""
    session_cookie = spec.session_cookie
    if isinstance(cookies, str):
        if len(cookies) > MAX_COOKIE_HEADER_BYTES:
            return None
        raw_visitor = _cookie_value(cookies, spec.visitor_cookie)
        raw_session = _cookie_value(cookies, session_cookie) if session_cookie else None
    else:
        raw_visitor = cookies.get(spec.visitor_cookie)
        raw_session = cookies.get(session_cookie) if session_cookie else None
    visitor_id = _well_formed(raw_visitor, spec.visitor_id_pattern)
    session_id = None
    if raw_session is not None and spec.session_id_pattern is not None:
        session_id = _well_formed(raw_session, spec.session_id_pattern)
    if visitor_id is None and (spec.visitor_required or session_id is None):
        return None
    return Visitor(visitor_id, session_id)


def _well_formed(value: object, pattern: re.Pattern[str]) -> str | None:
    if not isinstance(value, str) or not value or len(value) > 128:
        return None
    return value if pattern.fullmatch(value) is not None else None


#: Headers up to this size have their result remembered (a browser sends the same Cookie header
#: on request after request), at most this many per provider: at worst 1024 x 2 KiB of memory.
REMEMBERED_HEADER_BYTES = 2048
REMEMBERED_HEADERS = 1024


class HeaderReader:
    """One provider's visitor lookup in raw ``bytes`` Cookie headers, prepared once.

    ``reader.visitor(header)`` is ``visitor_from_cookies(header, provider)`` for a bytes header,
    made for the ASGI middleware, which runs it on every request: the cookie names are encoded
    once, only the matched values are decoded (never the whole header), and the results for the
    last headers seen are remembered, so a browser's next request with the same cookies costs a
    dict lookup. The result is a function of the header alone: remembering it changes nothing.
    :meth:`visitor_text` does the same for text headers (WSGI's ``HTTP_COOKIE``).
    """

    __slots__ = (
        "_seen",
        "_seen_text",
        "provider",
        "session_key",
        "session_pattern",
        "visitor_key",
        "visitor_pattern",
        "visitor_required",
    )

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.visitor_key = provider.visitor_cookie.encode("latin-1") + b"="
        self.visitor_pattern = provider.visitor_id_pattern
        self.visitor_required = provider.visitor_required
        # A session id the provider has no pattern for is never forwarded: not looked for.
        self.session_pattern = provider.session_id_pattern
        self.session_key = (
            provider.session_cookie.encode("latin-1") + b"="
            if provider.session_cookie and self.session_pattern is not None
            else None
        )
        self._seen: dict[bytes, Visitor | None] = {}
        self._seen_text: dict[str, Visitor | None] = {}

    def visitor(self, header: bytes) -> Visitor | None:
        """The provider's visitor (and session) ids in a raw header, or None (no visitor)."""
        seen = self._seen
        found = seen.get(header, _UNSEEN)
        if found is not _UNSEEN:
            return found  # type: ignore[return-value]
        visitor = self.read(header)
        if len(header) <= REMEMBERED_HEADER_BYTES:
            if len(seen) >= REMEMBERED_HEADERS:
                seen.clear()  # cheaper than an LRU's bookkeeping on every hit; refills at once
            seen[header] = visitor
        return visitor

    def visitor_text(self, header: str) -> Visitor | None:
        """:meth:`visitor` for a text header (WSGI's ``HTTP_COOKIE``), remembered alike."""
        seen = self._seen_text
        found = seen.get(header, _UNSEEN)
        if found is not _UNSEEN:
            return found  # type: ignore[return-value]
        visitor = _parsed(header, self.provider)
        if len(header) <= REMEMBERED_HEADER_BYTES:
            if len(seen) >= REMEMBERED_HEADERS:
                seen.clear()
            seen[header] = visitor
        return visitor

    def read(self, header: bytes) -> Visitor | None:
        """:meth:`visitor` without the memory of the last headers: always parses *header*."""
        if len(header) > MAX_COOKIE_HEADER_BYTES:
            return None
        visitor_id = _header_id(header, self.visitor_key, self.visitor_pattern)
        if visitor_id is None and self.visitor_required:
            return None
        session_id = None
        if self.session_key is not None and self.session_pattern is not None:
            session_id = _header_id(header, self.session_key, self.session_pattern)
        if visitor_id is None and session_id is None:
            return None
        # Visitor(visitor_id, session_id) without the generated __new__'s Python call.
        return _new_tuple(Visitor, (visitor_id, session_id))


_READERS: dict[str, HeaderReader] = {}


def header_reader(provider: Provider) -> HeaderReader:
    """The :class:`HeaderReader` of *provider*, built on first use."""
    reader = _READERS.get(provider.name)
    if reader is None or reader.provider is not provider:
        reader = _READERS[provider.name] = HeaderReader(provider)
    return reader


def _header_id(header: bytes, key: bytes, pattern: re.Pattern[str]) -> str | None:
    """The first value of the cookie *key* (``name=``) if it is a well-formed id, else None.

    The same rules as ``_cookie_value`` then ``_well_formed`` on the decoded header: the key
    must begin a cookie, blanks around the value and one pair of double quotes are dropped.
    """
    find = header.find
    index = find(key)
    while index >= 0:
        # The key must begin a cookie: only blanks between it and the previous ";".
        before = index - 1
        while before >= 0 and header[before] in _BLANKS:
            before -= 1
        if before < 0 or header[before] == _SEMICOLON:
            start = index + len(key)
            end = find(b";", start)
            raw = (header[start:] if end < 0 else header[start:end]).strip(b" \t")
            if len(raw) >= 2 and raw[0] == raw[-1] == _QUOTE:
                raw = raw[1:-1]
            if not raw or len(raw) > 128:
                return None
            value = raw.decode("latin-1")
            return value if pattern.fullmatch(value) is not None else None
        index = find(key, index + 1)
    return None


_UNSEEN = object()
_new_tuple = tuple.__new__
_BLANKS = frozenset(b" \t")
_SEMICOLON = ord(";")
_QUOTE = ord('"')
