"""System checks for the ``GOALTRACK`` setting (``manage.py check``).

The account and option checks are the core's (:func:`goaltrack.startup.read_configuration`,
with the ids the tracker's setup logs: ``goaltrack.E00x``, ``goaltrack.E101`` an option with a
bad value, ``goaltrack.E008`` an outbox the tracker could not open); this module adds the
Django-only ones: ``goaltrack.E100`` the setting is not a dict, ``goaltrack.W100`` an unknown
(probably misspelled) key, ``goaltrack.W101`` a setting whose name is close to ``GOALTRACK``
(``GOALTRAK``, ``GOAL_TRACK``) or starts with ``GOALTRACK_`` (Flask's spelling), which
goaltrack does not read, ``goaltrack.E101`` a bad ``ON_COMMIT``, ``goaltrack.E102`` a bad
``AUTH_GOALS`` entry, ``goaltrack.W102`` a ``TRACKING_ID`` set for DataFast that is not a
``dfid_…`` id (probably the API's ``WEBSITE_ID`` or key), ``goaltrack.W103`` ``SCRIPT_PROXY``
on without goaltrack's middleware, ``goaltrack.E103`` ``SCRIPT_PROXY`` for a provider whose
script and events URLs are unknown. An unset ``TRACKING_ID`` is not
reported: apps that do not use ``{% goaltrack_script %}`` do not need it (the tag warns once
when it renders nothing).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from goaltrack.decorator import precheck_goal_name
from goaltrack.delivery import InvalidConfiguration
from goaltrack.django import wiring
from goaltrack.django.conf import goaltrack_settings
from goaltrack.django.wiring import AUTH_SIGNAL_NAMES
from goaltrack.goals import InvalidGoal
from goaltrack.options import DEFAULT_PROVIDER, parse_bool
from goaltrack.script_proxy import upstream_for
from goaltrack.startup import OPTION_PROBLEM, read_configuration

__all__ = ["check_settings"]

OBJ = "settings.GOALTRACK"


def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    if not goaltrack_settings.is_mapping:
        return [
            Error(
                "the GOALTRACK setting must be a dict",
                hint='GOALTRACK = {"API_KEY": "...", "PROVIDER": "datafast"}',
                obj=OBJ,
                id="goaltrack.E100",
            )
        ]
    messages: list[CheckMessage] = _lookalike_settings()
    for key, close in goaltrack_settings.unknown_keys().items():
        messages.append(
            Warning(
                f"unknown GOALTRACK key {key!r}: it is ignored",
                hint=f"did you mean {close!r}?" if close else "see goaltrack's settings table",
                obj=OBJ,
                id="goaltrack.W100",
            )
        )
    # What the tracker was built from (goaltrack.startup): the setting, then the environment.
    configuration = read_configuration(goaltrack_settings.tracker_kwargs(), label=str.upper)
    # An outbox that could not be opened is known only from building the tracker.
    problems = [*configuration.problems, *wiring.outbox_problems()]
    for problem in problems:
        level = Error if problem.level == "error" else Warning
        messages.append(level(problem.message, hint=problem.hint, obj=OBJ, id=problem.id))
    try:
        parse_bool("ON_COMMIT", goaltrack_settings.raw.get("ON_COMMIT", False))
    except (ValueError, TypeError) as exc:
        messages.append(
            Error(
                f"invalid GOALTRACK option: {exc}",
                hint="see goaltrack's settings table for each option's values",
                obj=OBJ,
                id=OPTION_PROBLEM,
            )
        )
    messages.extend(_auth_goal_problems())
    messages.extend(_tracking_id_problems())
    messages.extend(_script_proxy_problems())
    return messages


MIDDLEWARE_PATH = "goaltrack.django.middleware.GoalTrackMiddleware"


def _script_proxy_problems() -> list[CheckMessage]:
    if not goaltrack_settings.script_proxy:
        return []
    messages: list[CheckMessage] = []
    if MIDDLEWARE_PATH not in getattr(settings, "MIDDLEWARE", ()):
        messages.append(
            Warning(
                "GOALTRACK SCRIPT_PROXY is on but goaltrack's middleware is not installed, so "
                "nothing answers the proxy's paths",
                hint=f'add "{MIDDLEWARE_PATH}" to MIDDLEWARE',
                obj=OBJ,
                id="goaltrack.W103",
            )
        )
    account = goaltrack_settings.effective_account()
    try:
        upstream_for(account.get("provider") or DEFAULT_PROVIDER, api_url=account.get("api_url"))
    except (InvalidConfiguration, ValueError) as exc:
        messages.append(
            Error(
                f"the script proxy cannot run: {exc}",
                hint="use the ASGI middleware's script_proxy_upstream, or turn SCRIPT_PROXY off",
                obj=OBJ,
                id="goaltrack.E103",
            )
        )
    return messages


def _tracking_id_problems() -> list[CheckMessage]:
    tracking_id = goaltrack_settings.tracking_id
    provider = goaltrack_settings.effective_account().get("provider") or DEFAULT_PROVIDER
    if not tracking_id or str(provider).strip().lower() != DEFAULT_PROVIDER:
        return []
    if str(tracking_id).startswith("dfid_"):
        return []
    return [
        Warning(
            "GOALTRACK TRACKING_ID does not start with dfid_: it is not a DataFast script id, "
            "so the script would not count visits",
            hint="copy data-website-id from DataFast's script snippet; WEBSITE_ID and API_KEY "
            "are the API's",
            obj=OBJ,
            id="goaltrack.W102",
        )
    ]


def _lookalike_settings() -> list[CheckMessage]:
    """Settings that were meant to be ``GOALTRACK`` but are not read: a misspelling, or one
    ``GOALTRACK_<KEY>`` setting per option (the environment's and Flask's spelling)."""
    names = [name for name in dir(settings) if name.isupper() and name != "GOALTRACK"]
    messages: list[CheckMessage] = []
    for name in names:
        if name.startswith("GOALTRACK_"):
            key = name.removeprefix("GOALTRACK_")
            messages.append(
                Warning(
                    f"settings.{name} is not read by goaltrack",
                    hint=f'put it in the GOALTRACK dict: GOALTRACK = {{"{key}": ...}} (or set '
                    f"the {name} environment variable)",
                    obj=f"settings.{name}",
                    id="goaltrack.W101",
                )
            )
        elif difflib.get_close_matches(name, ["GOALTRACK"], n=1, cutoff=0.8):
            messages.append(
                Warning(
                    f"settings.{name} is not read by goaltrack: did you mean GOALTRACK?",
                    hint=f"rename {name} to GOALTRACK",
                    obj=f"settings.{name}",
                    id="goaltrack.W101",
                )
            )
    return messages


def _auth_goal_problems() -> list[CheckMessage]:
    value = goaltrack_settings.raw.get("AUTH_GOALS")
    if value is None or isinstance(value, bool):
        return []
    if not hasattr(value, "items"):
        return [
            Error(
                "AUTH_GOALS must be True or a dict of auth signal names to goal names",
                hint='AUTH_GOALS = {"user_logged_in": "login"}',
                obj=OBJ,
                id="goaltrack.E102",
            )
        ]
    problems: list[CheckMessage] = []
    for signal_name, goal_name in goaltrack_settings.auth_goals.items():
        if signal_name not in AUTH_SIGNAL_NAMES:
            problems.append(
                Error(
                    f"AUTH_GOALS names an unknown signal {signal_name!r}",
                    hint="use one of: " + ", ".join(AUTH_SIGNAL_NAMES),
                    obj=OBJ,
                    id="goaltrack.E102",
                )
            )
            continue
        try:
            precheck_goal_name(goal_name)
        except InvalidGoal as exc:
            problems.append(
                Error(f"AUTH_GOALS[{signal_name!r}]: {exc}", obj=OBJ, id="goaltrack.E102")
            )
    return problems
