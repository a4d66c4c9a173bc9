"""Configuration shared by every entry point: the checks, the environment, option strings.

- :func:`configuration_problems`: each problem has a stable id (``goaltrack.E001``) so the
  adapters can report it in their own framework's way (a Django system check, an error at
  ``init_app``, a line of ``goaltrack check``);
- :func:`settings_from_env`: the ``GOALTRACK_*`` variables (the account, ``mode``, ``outbox``,
  ``debug``, ``strict``);
- :func:`coerce_option` and :func:`parse_flush_at_request_end`: values given as strings (the
  environment, a config file) turned into the option's type, the same way for every adapter.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from goaltrack.delivery import InvalidConfiguration, check_api_url
from goaltrack.providers import PROVIDERS, Provider, get_provider

__all__ = [
    "DEFAULT_FLUSH_TIMEOUT",
    "ENVIRONMENT_VARIABLES",
    "Problem",
    "coerce_option",
    "configuration_problems",
    "env_name",
    "parse_bool",
    "parse_flush_at_request_end",
    "raw_settings_from_env",
    "settings_from_env",
]

#: Environment variable -> GoalTracker argument.
ENVIRONMENT_VARIABLES = {
    "GOALTRACK_API_KEY": "api_key",
    "GOALTRACK_PROVIDER": "provider",
    "GOALTRACK_API_URL": "api_url",
    "GOALTRACK_WEBSITE_ID": "website_id",
    "GOALTRACK_MODE": "mode",
    "GOALTRACK_OUTBOX": "outbox",
    "GOALTRACK_DEBUG": "debug",
    "GOALTRACK_STRICT": "strict",
}
#: Options read as booleans from a string (``"1"``, ``"false"``, ...), though None is allowed.
_OPTIONAL_BOOLS = frozenset({"strict"})


@dataclass(frozen=True)
class Problem:
    id: str
    level: Literal["error", "warning"]
    message: str
    hint: str

    def __str__(self) -> str:
        return f"{self.id}: {self.message} HINT: {self.hint}"


def configuration_problems(
    *,
    api_key: str | None,
    provider: str | Provider | None,
    api_url: str | None = None,
    website_id: str | None = None,
) -> list[Problem]:
    """Everything wrong with a configuration; an empty list when it can work.

    Never includes the API key itself in a message.
    """
    problems: list[Problem] = []
    try:
        spec = get_provider(provider or "datafast")
    except ValueError:
        return [
            Problem(
                "goaltrack.E002",
                "error",
                f"unknown provider {provider!r}",
                "use one of: " + ", ".join(sorted(PROVIDERS)),
            )
        ]
    if not api_key:
        problems.append(
            Problem(
                "goaltrack.W001",
                "warning",
                "no API key is set: goals are validated but not sent",
                f"set the {spec.name} API key (GOALTRACK_API_KEY or your framework's setting)",
            )
        )
    else:
        if not (api_key.isascii() and api_key.isprintable()) or " " in api_key:
            problems.append(
                Problem(
                    "goaltrack.E006",
                    "error",
                    "the API key contains spaces, control or non-ASCII characters",
                    "copy the key again from the provider's dashboard",
                )
            )
        if spec.key_prefixes and not api_key.startswith(spec.key_prefixes):
            problems.append(
                Problem(
                    "goaltrack.E005",
                    "error",
                    f"a {spec.name} API key starts with "
                    f"{' or '.join(map(repr, spec.key_prefixes))}; this one does not",
                    _key_hint(spec, api_key),
                )
            )
        if api_key.startswith(spec.website_token_prefixes) and not website_id:
            problems.append(
                Problem(
                    "goaltrack.E003",
                    "error",
                    f"this {spec.name} key is an account/workspace token, which needs a website id",
                    "set the website id (GOALTRACK_WEBSITE_ID / WEBSITE_ID), or use a website key",
                )
            )
    if api_url:
        try:
            check_api_url(api_url)
        except InvalidConfiguration as exc:
            problems.append(
                Problem(
                    "goaltrack.E004",
                    "error",
                    str(exc),
                    "use https://, or http:// only for a local server",
                )
            )
        base = api_url_without_goals_path(api_url, spec)
        if base is not None:
            problems.append(
                Problem(
                    "goaltrack.E007",
                    "error",
                    f"api_url {api_url!r} already ends in {spec.goals_path!r}, which goaltrack "
                    "appends to it (goals would go to .../api/v1/goals/api/v1/goals)",
                    f"set api_url to the base URL: {base!r}",
                )
            )
    return problems


def api_url_without_goals_path(api_url: str, provider: Provider) -> str | None:
    """*api_url* without the goals path it wrongly ends in; None when it does not end in it."""
    parts = urlsplit(api_url)
    path = parts.path.rstrip("/")
    if not path.endswith(provider.goals_path):
        return None
    return urlunsplit(parts._replace(path=path[: -len(provider.goals_path)]))


def _key_hint(spec: Provider, api_key: str) -> str:
    for other in PROVIDERS.values():
        if other is not spec and other.key_prefixes and api_key.startswith(other.key_prefixes):
            return (
                f"this looks like a {other.name} key: set the provider to {other.name!r} "
                f"(GOALTRACK_PROVIDER / PROVIDER), or use your {spec.name} key"
            )
    return f"copy the API key again from your {spec.name} dashboard"


def settings_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """GoalTracker arguments from ``GOALTRACK_*`` environment variables (empty ones ignored).

    ``GOALTRACK_DEBUG`` and ``GOALTRACK_STRICT`` are read as booleans (1/0, true/false, yes/no,
    on/off).
    """
    found: dict[str, Any] = raw_settings_from_env(environ)
    for name in ("debug", "strict"):
        if name in found:
            found[name] = parse_bool(env_name(name), found[name])
    return found


def raw_settings_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``GOALTRACK_*`` environment variables that are set, by option name, as strings."""
    environ = os.environ if environ is None else environ
    return {arg: environ[var] for var, arg in ENVIRONMENT_VARIABLES.items() if environ.get(var)}


def env_name(option: str) -> str:
    """The environment variable of *option*: ``GOALTRACK_`` and its name in upper case."""
    return f"GOALTRACK_{option.upper()}"


# -- option values given as strings --------------------------------------------------------------

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})

#: Seconds ``flush_at_request_end=True`` waits for a request's goals.
DEFAULT_FLUSH_TIMEOUT = 2.0


def parse_bool(label: str, value: object) -> bool:
    """A boolean option: a bool, or one of 1/0, true/false, yes/no, on/off (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise InvalidConfiguration(f"{label} must be a bool, not {value!r}")


def parse_flush_at_request_end(label: str, value: object) -> float | None:
    """``flush_at_request_end``: seconds to wait for a request's goals, or None not to wait.

    True (or "true", "yes", "on") waits :data:`DEFAULT_FLUSH_TIMEOUT` seconds; a number (or a
    numeric string) that many; False, None, 0 (or "false", "no", "off", "") not at all.
    """
    if value is None or value is False:
        return None
    if value is True:
        return DEFAULT_FLUSH_TIMEOUT
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _FALSE:
            return None
        if lowered in _TRUE - {"1"}:
            return DEFAULT_FLUSH_TIMEOUT
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidConfiguration(
            f"{label} must be True, False or a number of seconds, not {value!r}"
        ) from None
    if not seconds >= 0:
        raise InvalidConfiguration(f"{label} must not be negative, not {value!r}")
    return seconds or None


def coerce_option(name: str, value: object, default: object, label: str | None = None) -> object:
    """*value* for option *name* (whose default is *default*), converted from a string if need be.

    Strings become the default's type (bool, int, float); a hook (``on_delivery``, ``on_failure``,
    ``on_drop``, ``before_send``) or an ``http_client`` factory given as
    ``"package.module:attribute"`` (or ``package.module.attribute``) is imported. Other values
    are returned as they are, for the option itself to check. *label* is how the user wrote the
    option (``GOALTRACK_MAX_RETRIES``), for error messages.
    """
    if not isinstance(value, str) or isinstance(default, str):
        return value
    label = label or name
    if name in _OPTIONAL_BOOLS:
        return parse_bool(label, value)
    if default is None:
        return _import_hook(label, value) if _is_imported(name) else value
    try:
        if isinstance(default, bool):
            return parse_bool(label, value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except ValueError:
        raise InvalidConfiguration(
            f"{label} must be a {type(default).__name__}, not {value!r}"
        ) from None
    return value


#: Options given as a dotted path are imported: the hooks, and a factory of an httpx client.
_IMPORTED_OPTIONS = frozenset({"before_send", "http_client"})


def _is_imported(name: str) -> bool:
    return name.startswith("on_") or name in _IMPORTED_OPTIONS


def _import_hook(label: str, path: str) -> Callable[..., Any]:
    module_name, sep, attribute = path.partition(":")
    if not sep:
        module_name, _, attribute = path.rpartition(".")
    try:
        hook = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise InvalidConfiguration(f"{label}: cannot import {path!r}: {exc}") from None
    if not callable(hook):
        raise InvalidConfiguration(f"{label}: {path!r} is not callable")
    return hook  # type: ignore[no-any-return]
