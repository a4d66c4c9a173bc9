"""The account's checks, shared by every entry point: :func:`configuration_problems`.

Each problem has a stable id (``goaltrack.E002``) so the adapters can report it in their own
framework's way (a Django system check, an error at ``init_app``, a line of ``goaltrack check``).
The options themselves (names, defaults, conversion from strings, the checks of one value) are
:mod:`goaltrack.options`'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from goaltrack.delivery import InvalidConfiguration, check_api_url
from goaltrack.options import DEFAULT_PROVIDER
from goaltrack.providers import PROVIDERS, Provider, get_provider

__all__ = ["Problem", "api_url_without_goals_path", "configuration_problems"]


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
        spec = get_provider(provider or DEFAULT_PROVIDER)
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
