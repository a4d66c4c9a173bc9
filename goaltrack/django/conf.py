"""The ``GOALTRACK`` setting: the one place that reads it.

Every value is read from ``django.conf.settings`` when it is used (never copied at import), so
``override_settings(GOALTRACK=...)`` takes effect at once. Keys are goaltrack's options in upper
case (``API_KEY``, ``MODE``, ``SKIP_BOTS``, ``ON_DELIVERY``, ...: :data:`goaltrack.options.TABLE`),
with the meaning they have in every adapter; strings are converted the same way too, and the
``GOALTRACK_*`` environment variables fill in what the setting leaves out. Django's own keys:

- ``ON_COMMIT`` (default False): goals tracked inside a transaction wait for its commit.
- ``AUTH_GOALS`` (default off): True for ``{"user_logged_in": "login"}``, or a mapping of
  ``django.contrib.auth.signals`` names to goal names.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from django.conf import settings

from goaltrack.delivery import InvalidConfiguration
from goaltrack.options import (
    DEFAULT_FLUSH_TIMEOUT,
    OPTIONS,
    AdapterSettings,
    names,
    parse_bool,
    raw_settings_from_env,
    read_settings,
)

__all__ = [
    "DEFAULT_AUTH_GOALS",
    "DEFAULT_FLUSH_TIMEOUT",
    "KNOWN_KEYS",
    "GoalTrackSettings",
    "goaltrack_settings",
]

SETTING_NAME = "GOALTRACK"

#: Setting key -> option name, for every goaltrack option.
OPTION_KEYS = {option.django_key: option.name for option in OPTIONS.values()}
ACCOUNT_KEYS = {OPTIONS[name].django_key: name for name in names("account")}
DJANGO_KEYS = frozenset({"ON_COMMIT", "AUTH_GOALS"})
KNOWN_KEYS = frozenset(OPTION_KEYS) | DJANGO_KEYS

DEFAULT_AUTH_GOALS: Mapping[str, str] = {"user_logged_in": "login"}


#: The values read at request time; see :meth:`GoalTrackSettings.__getattr__`.
_REQUEST_TIME_NAMES = (
    "on_commit",
    "skip_bots",
    "flush_at_request_end",
    "auth_goals",
    "tracking_id",
    "domain",
    "script_proxy",
    "script_proxy_prefix",
    "trusted_proxies",
)


class GoalTrackSettings:
    """Typed, lazy access to ``settings.GOALTRACK``.

    The values read on every request (``on_commit``, ``skip_bots``, ``flush_at_request_end``,
    ``auth_goals``, the script tag's ``tracking_id`` and ``domain``, and the script proxy's
    ``script_proxy``, ``script_proxy_prefix`` and ``trusted_proxies``) are parsed on first
    use into plain instance attributes, kept until the setting changes (:meth:`reset`, called
    on Django's ``setting_changed``): a request reads them as cheaply as any attribute, never
    re-reading settings. A bad value reads as the
    default there (the system checks report it: ``goaltrack.E101``), never as a 500.
    """

    on_commit: bool
    skip_bots: bool
    flush_at_request_end: float | None
    """Seconds a request that tracked goals waits for them at its end, or None not to wait."""
    auth_goals: Mapping[str, str]
    """``django.contrib.auth`` signal name -> goal name, for the opt-in auth goals."""
    tracking_id: str | None
    """The tracking script's website id, for ``{% goaltrack_script %}``."""
    domain: str | None
    """The site's domain, the script tag's ``data-domain``."""
    script_proxy: bool
    """``GoalTrackMiddleware`` serves the script and forwards its events."""
    script_proxy_prefix: str
    """Where the script proxy answers (``/_goaltrack``)."""
    trusted_proxies: tuple[str, ...]
    """The reverse proxies whose ``X-Forwarded-For`` names the visitor."""

    def reset(self) -> None:
        for name in _REQUEST_TIME_NAMES:
            self.__dict__.pop(name, None)

    def __getattr__(self, name: str) -> Any:
        # Only called when the attribute is missing: first use, or first use after reset().
        if name not in _REQUEST_TIME_NAMES:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        raw = self.raw
        from_env = raw_settings_from_env()
        values: dict[str, Any] = {
            "on_commit": _safely(parse_bool, "ON_COMMIT", raw.get("ON_COMMIT", False), False),
            "auth_goals": _auth_goals(raw.get("AUTH_GOALS")),
        }
        for option_name in names("adapter"):  # the setting, the environment, the default
            option = OPTIONS[option_name]
            default = option.convert(option.default)
            given = raw.get(option.django_key)
            value = from_env.get(option_name) if given is None else given
            values[option_name] = (
                default if value is None else _safely(option.convert, value, default)
            )
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
        """The goaltrack options the setting gives, by option name, as written (None: unset)."""
        raw = self.raw
        return {arg: raw[key] for key, arg in OPTION_KEYS.items() if raw.get(key) is not None}

    def read(self) -> AdapterSettings:
        """The options, converted and checked; raises for a bad value (see the system checks)."""
        return read_settings(self.tracker_kwargs(), str.upper)

    def effective_account(self) -> dict[str, Any]:
        """Account settings as the tracker sees them: the setting, then the environment."""
        # Strings as written: the account options are not converted.
        merged: dict[str, Any] = {**raw_settings_from_env(), **self.tracker_kwargs()}
        return {arg: merged.get(arg) for arg in ACCOUNT_KEYS.values()}

    def unknown_keys(self) -> dict[str, str | None]:
        """Keys this app does not know -> the closest known key (a likely misspelling), if any."""
        unknown: dict[str, str | None] = {}
        for key in self.raw:
            if key not in KNOWN_KEYS:
                close = difflib.get_close_matches(str(key).upper(), KNOWN_KEYS, n=1, cutoff=0.6)
                unknown[str(key)] = close[0] if close else None
        return unknown


def _safely(parse: Any, *arguments: object) -> Any:
    """``parse(*arguments[:-1])``, or the last argument (the default) for a bad value."""
    try:
        return parse(*arguments[:-1])
    except InvalidConfiguration:
        return arguments[-1]


def _auth_goals(value: object) -> Mapping[str, str]:
    if value is True:
        return DEFAULT_AUTH_GOALS
    if isinstance(value, Mapping):
        return value
    return {}


goaltrack_settings = GoalTrackSettings()
