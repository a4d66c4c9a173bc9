"""The ``GOALTRACK`` setting: the one place that reads it.

Every value is read from ``django.conf.settings`` when it is used (never copied at import), so
``override_settings(GOALTRACK=...)`` takes effect at once. Keys:

- ``API_KEY``, ``PROVIDER``, ``API_URL``, ``WEBSITE_ID``: the tracker's account settings;
  ``GOALTRACK_*`` environment variables fill in the ones the setting leaves out.
- ``MODE`` and every other :class:`goaltrack.TrackerOptions` field in upper case
  (``MAX_QUEUE_SIZE``, ``TIMEOUT``, ``TRUNCATE_METADATA``, ...).
- ``ON_COMMIT`` (default False): goals tracked inside a transaction wait for its commit.
- ``AUTH_GOALS`` (default off): True for ``{"user_logged_in": "login"}``, or a mapping of
  ``django.contrib.auth.signals`` names to goal names.
- ``SKIP_BOTS`` (default True): requests from known crawlers track nothing.
- ``FLUSH_AT_REQUEST_END`` (default off): True, or a number of seconds, to wait for delivery
  before the response leaves the middleware (serverless hosts freeze the process afterwards).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from django.conf import settings

from goaltrack.config import settings_from_env
from goaltrack.tracker import TrackerOptions

__all__ = [
    "DEFAULT_AUTH_GOALS",
    "DEFAULT_FLUSH_TIMEOUT",
    "KNOWN_KEYS",
    "GoalTrackSettings",
    "goaltrack_settings",
]

SETTING_NAME = "GOALTRACK"

ACCOUNT_KEYS = {
    "API_KEY": "api_key",
    "PROVIDER": "provider",
    "API_URL": "api_url",
    "WEBSITE_ID": "website_id",
}
#: Tracker options by setting key; the hooks are not settings: they are wired to the signals.
OPTION_KEYS = {
    f.name.upper(): f.name for f in fields(TrackerOptions) if not f.name.startswith("on_")
}
ADAPTER_KEYS = frozenset({"ON_COMMIT", "AUTH_GOALS", "SKIP_BOTS", "FLUSH_AT_REQUEST_END"})
KNOWN_KEYS = frozenset(ACCOUNT_KEYS) | frozenset(OPTION_KEYS) | ADAPTER_KEYS

DEFAULT_AUTH_GOALS: Mapping[str, str] = {"user_logged_in": "login"}
DEFAULT_FLUSH_TIMEOUT = 2.0


#: The values read at request time; see :meth:`GoalTrackSettings.__getattr__`.
_REQUEST_TIME_NAMES = ("on_commit", "skip_bots", "flush_at_request_end", "auth_goals")


class GoalTrackSettings:
    """Typed, lazy access to ``settings.GOALTRACK``.

    The values read on every request (``on_commit``, ``skip_bots``, ``flush_at_request_end``,
    ``auth_goals``) are parsed on first use into plain instance attributes, kept until the
    setting changes (:meth:`reset`, called on Django's ``setting_changed``): a request reads
    them as cheaply as any attribute, never re-reading settings.
    """

    on_commit: bool
    skip_bots: bool
    flush_at_request_end: float | None
    """Seconds to wait for delivery at the end of each request, or None not to wait."""
    auth_goals: Mapping[str, str]
    """``django.contrib.auth`` signal name -> goal name, for the opt-in auth goals."""

    def reset(self) -> None:
        for name in _REQUEST_TIME_NAMES:
            self.__dict__.pop(name, None)

    def __getattr__(self, name: str) -> Any:
        # Only called when the attribute is missing: first use, or first use after reset().
        if name not in _REQUEST_TIME_NAMES:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        raw = self.raw
        values = {
            "on_commit": bool(raw.get("ON_COMMIT", False)),
            "skip_bots": bool(raw.get("SKIP_BOTS", True)),
            "flush_at_request_end": _safe_flush_timeout(raw.get("FLUSH_AT_REQUEST_END")),
            "auth_goals": _auth_goals(raw.get("AUTH_GOALS")),
        }
        self.__dict__.update(values)
        return values[name]

    @property
    def raw(self) -> Mapping[str, Any]:
        value = getattr(settings, SETTING_NAME, None)
        return value if isinstance(value, Mapping) else {}

    @property
    def is_mapping(self) -> bool:
        return isinstance(getattr(settings, SETTING_NAME, {}), Mapping)

    def tracker_kwargs(self) -> dict[str, Any]:
        """``goaltrack.configure`` arguments for the keys the setting gives (None means unset)."""
        raw = self.raw
        kwargs: dict[str, Any] = {}
        for key, arg in (*ACCOUNT_KEYS.items(), *OPTION_KEYS.items()):
            value = raw.get(key)
            if value is not None:
                kwargs[arg] = value
        return kwargs

    def effective_account(self) -> dict[str, Any]:
        """Account settings as the tracker sees them: the setting, then the environment."""
        merged: dict[str, Any] = {**settings_from_env(), **self.tracker_kwargs()}
        return {arg: merged.get(arg) for arg in ACCOUNT_KEYS.values()}

    def unknown_keys(self) -> dict[str, str | None]:
        """Keys this app does not know -> the closest known key (a likely misspelling), if any."""
        unknown: dict[str, str | None] = {}
        for key in self.raw:
            if key not in KNOWN_KEYS:
                close = difflib.get_close_matches(str(key).upper(), KNOWN_KEYS, n=1, cutoff=0.6)
                unknown[str(key)] = close[0] if close else None
        return unknown


def _safe_flush_timeout(value: object) -> float | None:
    # A bad value is reported by the system checks (goaltrack.E101); requests must not fail.
    try:
        return flush_timeout(value)
    except (TypeError, ValueError):
        return None


def flush_timeout(value: object) -> float | None:
    """``FLUSH_AT_REQUEST_END`` in seconds (None: do not flush); raises for a bad value."""
    if value is None or value is False:
        return None
    if value is True:
        return DEFAULT_FLUSH_TIMEOUT
    return float(value)  # type: ignore[arg-type]


def _auth_goals(value: object) -> Mapping[str, str]:
    if value is True:
        return DEFAULT_AUTH_GOALS
    if isinstance(value, Mapping):
        return value
    return {}


goaltrack_settings = GoalTrackSettings()
