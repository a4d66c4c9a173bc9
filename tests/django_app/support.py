"""Helpers for the Django adapter tests: point goaltrack at the fake API, make visitors."""

from __future__ import annotations

from typing import Any

from goaltrack.testing.server import FakeAPIServer

BROWSER_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0 Safari/537.36"
)
BOT_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
DATAFAST_KEY = "df_goaltrack_tests_key"


def goaltrack_setting(
    fake_api: FakeAPIServer, provider: str = "datafast", **extra: Any
) -> dict[str, Any]:
    """A GOALTRACK setting that delivers to the fake API quickly (no long backoffs)."""
    keys = {"datafast": DATAFAST_KEY, "faurya": "faurya_tests_key", "flowsery": "flow_tests_key"}
    return {
        "API_KEY": keys[provider],
        "PROVIDER": provider,
        "API_URL": fake_api.api_url(provider),
        "BACKOFF_BASE": 0.01,
        "BACKOFF_MAX": 0.05,
        "MAX_RETRIES": 2,
        **extra,
    }
