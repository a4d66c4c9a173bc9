"""Visitor ids from the cookies the provider's tracking script sets.

Accepts a cookie mapping (Django's ``request.COOKIES``, Flask's ``request.cookies``) or a raw
``Cookie`` header (ASGI scopes). A value that is not a well-formed id for the provider (wrong
shape, over-long, control characters) is ignored, never forwarded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

from goaltrack.providers import Provider, get_provider

__all__ = ["Visitor", "parse_cookie_header", "visitor_from_cookies"]

#: Longer Cookie headers are not scanned: no browser sends one, and it bounds the work per request.
MAX_COOKIE_HEADER_BYTES = 16 * 1024


class Visitor(NamedTuple):
    """The ids a provider's script set for the browser making the request."""

    visitor_id: str | None
    session_id: str | None


def parse_cookie_header(header: str | bytes, names: tuple[str, ...]) -> dict[str, str]:
    """Return the first value of each cookie in *names* found in a raw ``Cookie`` header."""
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    if len(header) > MAX_COOKIE_HEADER_BYTES:
        return {}
    found: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.partition("=")
        if not sep:
            continue
        name = name.strip()
        # Browsers send the most specific cookie first: the first value wins.
        if name in names and name not in found:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            found[name] = value
    return found


def visitor_from_cookies(
    cookies: Mapping[str, str] | str | bytes | None, provider: str | Provider
) -> Visitor | None:
    """The provider's visitor (and session) ids from *cookies*, or None when there is no visitor.

    A site running the provider's cookieless script has no id cookie: then there is nothing to
    attribute a goal to, and None is returned.
    """
    spec = get_provider(provider)
    if cookies is None:
        return None
    if isinstance(cookies, (str, bytes)):
        names = (spec.visitor_cookie, spec.session_cookie or spec.visitor_cookie)
        cookies = parse_cookie_header(cookies, names)
    visitor_id = _well_formed(cookies.get(spec.visitor_cookie), spec.visitor_id_pattern)
    session_id = None
    if spec.session_cookie is not None and spec.session_id_pattern is not None:
        session_id = _well_formed(cookies.get(spec.session_cookie), spec.session_id_pattern)
    if visitor_id is None and (spec.visitor_required or session_id is None):
        return None
    return Visitor(visitor_id, session_id)


def _well_formed(value: object, pattern: re.Pattern[str]) -> str | None:
    if not isinstance(value, str) or not value or len(value) > 128:
        return None
    return value if pattern.fullmatch(value) is not None else None
