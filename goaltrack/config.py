"""Configuration checks shared by every entry point: the tracker, Django checks, Flask, the CLI.

Each problem has a stable id (``goaltrack.E001``) so the adapters can report it in their own
framework's way (a Django system check, an error at ``init_app``, a line of ``goaltrack check``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from goaltrack.delivery import InvalidConfiguration, check_api_url
from goaltrack.providers import PROVIDERS, Provider, get_provider

__all__ = ["ENVIRONMENT_VARIABLES", "Problem", "configuration_problems", "settings_from_env"]

#: Environment variable -> GoalTracker argument.
ENVIRONMENT_VARIABLES = {
    "GOALTRACK_API_KEY": "api_key",
    "GOALTRACK_PROVIDER": "provider",
    "GOALTRACK_API_URL": "api_url",
    "GOALTRACK_WEBSITE_ID": "website_id",
    "GOALTRACK_MODE": "mode",
    "GOALTRACK_OUTBOX": "outbox",
}


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
        if spec.required_key_prefix and not api_key.startswith(spec.required_key_prefix):
            problems.append(
                Problem(
                    "goaltrack.E005",
                    "error",
                    f"{spec.name} API keys start with {spec.required_key_prefix!r}",
                    "check that the key belongs to this provider",
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
    return problems


def settings_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """GoalTracker arguments from ``GOALTRACK_*`` environment variables (empty ones ignored)."""
    environ = os.environ if environ is None else environ
    return {arg: environ[var] for var, arg in ENVIRONMENT_VARIABLES.items() if environ.get(var)}
