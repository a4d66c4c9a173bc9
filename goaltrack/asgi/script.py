"""The ``goaltrack_script()`` Jinja global for Starlette/FastAPI templates: :func:`script_global`.

``templates.env.globals["goaltrack_script"] = goaltrack.asgi.script_global()`` makes
``{{ goaltrack_script() }}`` render :func:`goaltrack.script_tag` in every template, marked safe.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from goaltrack.delivery import InvalidConfiguration
from goaltrack.options import OPTIONS, env_name, parse_bool
from goaltrack.providers import Provider
from goaltrack.script_proxy import tag_attributes
from goaltrack.script_tag import script_tag

__all__ = ["script_global"]


def script_global(
    provider: str | Provider | None = None,
    tracking_id: str | None = None,
    domain: str | None = None,
    *,
    proxy_prefix: str | None = None,
    **defaults: Any,
) -> Callable[..., Any]:
    """A Jinja global rendering the provider's script tag as ``markupsafe.Markup``.

    The arguments (and ``src=``, ``nonce=``, extra attributes) are :func:`goaltrack.script_tag`'s,
    given once; each call may override them (``goaltrack_script(nonce=request.state.nonce)``).
    Omitted, they come from the process-wide settings: ``GOALTRACK_TRACKING_ID``,
    ``GOALTRACK_DOMAIN`` and the provider of ``goaltrack.configure()`` / ``GOALTRACK_PROVIDER``.
    *proxy_prefix*: the prefix of ``GoalTrackMiddleware(script_proxy=True)``'s script proxy
    (``middleware.script_proxy_prefix``); the tag then loads ``<prefix>/script.js`` and sends
    its events to ``<prefix>/events`` (``src`` and ``data_api_url``, unless given). Omitted:
    the proxy's prefix when ``GOALTRACK_SCRIPT_PROXY`` turns it on (and
    ``GOALTRACK_SCRIPT_PROXY_PREFIX`` moves it), else no proxy.
    Needs markupsafe (installed with Jinja2).
    """
    from markupsafe import Markup

    bound: dict[str, Any] = {
        "provider": provider,
        "tracking_id": tracking_id,
        "domain": domain,
        **defaults,
    }
    if proxy_prefix is None and _proxy_on_in_environment():
        proxy_prefix = os.environ.get(env_name("script_proxy_prefix")) or str(
            OPTIONS["script_proxy_prefix"].default
        )
    if proxy_prefix is not None:
        for name, value in tag_attributes(proxy_prefix).items():
            bound.setdefault(name, value)

    def goaltrack_script(**overrides: Any) -> Markup:
        return Markup(script_tag(**{**bound, **overrides}))  # noqa: S704 - escaped by script_tag

    return goaltrack_script


def _proxy_on_in_environment() -> bool:
    """``GOALTRACK_SCRIPT_PROXY`` is true (a bad value reads as off: the middleware reports
    it)."""
    name = env_name("script_proxy")
    try:
        return parse_bool(name, os.environ.get(name, ""))
    except InvalidConfiguration:
        return False
