"""``{% tracking_script %}``: the analytics provider's script tag, while on goaltrack's fake API.

The fake API serves a stand-in for the provider's tracking script: it sets the visitor cookie
and records the pageview, as the real one does. On a real site, paste the provider's own
snippet into ``base.html`` instead.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django import template
from django.conf import settings
from django.utils.html import format_html

register = template.Library()


@register.simple_tag
def tracking_script() -> str:
    api_url: str = settings.GOALTRACK.get("API_URL") or ""
    parts = urlsplit(api_url)
    if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost"):
        return ""
    return format_html('<script defer src="{}/js/script.js"></script>', api_url.rstrip("/"))
