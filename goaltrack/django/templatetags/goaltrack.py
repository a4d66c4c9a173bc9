"""``{% load goaltrack %}{% goaltrack_script %}``: the provider's tracking script tag.

The tag renders :func:`goaltrack.script_tag` with the ``GOALTRACK`` setting's ``PROVIDER``,
``API_URL`` (the bundled fake API's stand-in script when goals go there), ``TRACKING_ID`` and
``DOMAIN`` (the ``GOALTRACK_*`` environment variables filling in what the
setting leaves out), the script proxy's ``src`` and ``data-api-url`` with ``SCRIPT_PROXY``,
the request's ``csp_nonce`` when there is one (django-csp), and keyword
overrides: ``{% goaltrack_script domain="example.com" src="/js/script.js" %}``.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.safestring import SafeString, mark_safe

from goaltrack.django.conf import goaltrack_settings
from goaltrack.options import DEFAULT_PROVIDER
from goaltrack.script_proxy import tag_attributes
from goaltrack.script_tag import script_tag

__all__ = ["goaltrack_script"]

register = template.Library()


@register.simple_tag(takes_context=True)
def goaltrack_script(context: template.Context, **overrides: Any) -> SafeString:
    """The script tag for this site; empty without a tracking id (one warning per process)."""
    request = context.get("request")
    nonce = getattr(request, "csp_nonce", None) if request is not None else None
    account = goaltrack_settings.effective_account()
    values: dict[str, Any] = {
        "provider": account.get("provider") or DEFAULT_PROVIDER,
        "api_url": account.get("api_url"),
        "tracking_id": goaltrack_settings.tracking_id,
        "domain": goaltrack_settings.domain,
        "nonce": str(nonce) if nonce else None,
    }
    if goaltrack_settings.script_proxy:
        values.update(tag_attributes(goaltrack_settings.script_proxy_prefix))
    values.update(overrides)
    return mark_safe(script_tag(**values))  # noqa: S308 - every value is escaped by script_tag
