"""The ``goaltrack_script()`` Jinja global for Starlette/FastAPI templates: :func:`script_global`.

``templates.env.globals["goaltrack_script"] = goaltrack.asgi.script_global()`` makes
``{{ goaltrack_script() }}`` render :func:`goaltrack.script_tag` in every template, marked safe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from goaltrack.providers import Provider
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
    its events to ``<prefix>/events`` (``src`` and ``data_api_url``, unless given).
    Needs markupsafe (installed with Jinja2).
    """
    from markupsafe import Markup

    bound: dict[str, Any] = {
        "provider": provider,
        "tracking_id": tracking_id,
        "domain": domain,
        **defaults,
    }
    if proxy_prefix is not None:
        prefix = "/" + proxy_prefix.strip("/")
        bound.setdefault("src", prefix + "/script.js")
        bound.setdefault("data_api_url", prefix + "/events")

    def goaltrack_script(**overrides: Any) -> Markup:
        return Markup(script_tag(**{**bound, **overrides}))  # noqa: S704 - escaped by script_tag

    return goaltrack_script
