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

__all__ = ["Visitor", "parse_cookie_header", "visitor_from_cookies"]

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
    session_cookie = spec.session_cookie
    if isinstance(cookies, (str, bytes)):
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
