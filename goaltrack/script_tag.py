"""The provider's tracking script tag, for pages: :func:`script_tag`.

This module owns the HTML of the ``<script>`` tag that loads the provider's tracking script (the
script sets the visitor cookie server-side goals are attributed with): its attributes, their
escaping, and where omitted values come from. The framework helpers (Django's
``{% goaltrack_script %}``, Flask's and Starlette's ``goaltrack_script()`` Jinja global) only
pass their app's settings to it and mark the result safe.

Omitted values come from the process-wide settings: ``tracking_id`` and ``domain`` from the
``GOALTRACK_TRACKING_ID`` / ``GOALTRACK_DOMAIN`` environment variables, the provider from the
tracker ``goaltrack.configure()`` set up, else ``GOALTRACK_PROVIDER``, else DataFast.

Only DataFast's snippet is documented in what goaltrack was written from
(``<script defer data-website-id="dfid_…" data-domain="example.com"
src="https://datafa.st/js/script.js"></script>``); the docs we have do not give Faurya's or
Flowsery's snippet, so for them ``src=`` is required: pass it, and any other attribute, as your
dashboard shows them. Against the bundled fake API (goals to plain HTTP on a loopback host) every
provider's tag loads the fake API's stand-in script instead.
"""

from __future__ import annotations

import html
import logging
import os
import threading

from goaltrack.options import DEFAULT_PROVIDER, env_name
from goaltrack.providers import Provider, get_provider
from goaltrack.script_proxy import fake_api_upstream

__all__ = ["SCRIPT_URLS", "script_tag"]

logger = logging.getLogger("goaltrack")

#: Provider name -> the URL of its tracking script, where the docs we have give it.
SCRIPT_URLS: dict[str, str] = {"datafast": "https://datafa.st/js/script.js"}

_warned_lock = threading.Lock()
_warned: set[str] = set()


def _warn_once(reason: str, message: str) -> None:
    with _warned_lock:
        if reason in _warned:
            return
        _warned.add(reason)
    logger.warning(message)


def _warn_once_without_tracking_id() -> None:
    _warn_once(
        "tracking_id",
        "goaltrack: no tracking id for the script tag (GOALTRACK_TRACKING_ID, or tracking_id=): "
        "it renders nothing, so visitors get no cookie and goals cannot be attributed",
    )


def _process_provider() -> str | Provider:
    from goaltrack import tracker as tracker_module

    configured = tracker_module._process_tracker
    if configured is not None:
        return configured.provider
    return os.environ.get(env_name("provider")) or DEFAULT_PROVIDER


def _process_api_url() -> str | None:
    from goaltrack import tracker as tracker_module

    configured = tracker_module._process_tracker
    if configured is not None:
        return configured.api_url
    return os.environ.get(env_name("api_url")) or None


def _fake_api_script(api_url: str | None) -> str | None:
    """The fake API's stand-in script, when goals go to one (plain HTTP on a loopback host)."""
    upstream = fake_api_upstream(api_url)
    return None if upstream is None else upstream.script_url


def script_tag(
    provider: str | Provider | None = None,
    tracking_id: str | None = None,
    domain: str | None = None,
    *,
    nonce: str | None = None,
    src: str | None = None,
    api_url: str | None = None,
    **attributes: str,
) -> str:
    """The ``<script>`` tag loading *provider*'s tracking script, every value HTML-escaped.

    ``<script defer data-website-id="…" data-domain="…" [nonce="…"] [data-…="…"] src="…">
    </script>``: *tracking_id* is the script's website id (DataFast's ``dfid_…``, not the API's
    ``website_id``), *domain* the site's domain; *nonce* a Content-Security-Policy nonce; *src*
    the script's URL instead of the provider's (a proxy, a CDN). When goals go to the bundled
    fake API (*api_url*, else the configured tracker's or ``GOALTRACK_API_URL``: plain HTTP on a
    loopback host), the tag loads the fake API's stand-in script, which sets the cookie and
    records the pageview as the provider's does, so a local page works as in production. Extra
    *attributes* are added with ``_`` written ``-`` (``data_api_url="/x"`` gives
    ``data-api-url="/x"``). Omitted values come from the process-wide settings (see the module).

    Without a tracking id, returns ``""`` (nothing rather than a broken tag) and logs one
    WARNING per process; so does a provider whose script URL the docs we have do not give
    (Faurya, Flowsery) when *src* is not given. A page renders whatever the settings.
    """
    described = get_provider(provider if provider is not None else _process_provider())
    tracking_id = tracking_id or os.environ.get(env_name("tracking_id")) or None
    domain = domain or os.environ.get(env_name("domain")) or None
    if not tracking_id:
        _warn_once_without_tracking_id()
        return ""
    url = src or _fake_api_script(api_url or _process_api_url()) or SCRIPT_URLS.get(described.name)
    if url is None:  # a page must render whatever the settings: nothing, and one warning
        _warn_once(
            f"src:{described.name}",
            f"goaltrack: the docs goaltrack was written from do not give {described.name}'s "
            "script snippet, so the script tag renders nothing: pass src= (and any other "
            "attribute) as your dashboard shows them",
        )
        return ""
    pairs: list[tuple[str, str]] = [("data-website-id", tracking_id)]
    if domain:
        pairs.append(("data-domain", domain))
    if nonce:
        pairs.append(("nonce", nonce))
    pairs.extend((name.replace("_", "-"), str(value)) for name, value in attributes.items())
    pairs.append(("src", url))
    rendered = "".join(
        f' {html.escape(name, quote=True)}="{html.escape(value, quote=True)}"'
        for name, value in pairs
    )
    return f"<script defer{rendered}></script>"
