"""Building a tracker from configuration, with one rule for configuration that cannot work.

Every adapter (Django's app config, Flask's ``init_app``, the ASGI middleware) and the
process-wide :func:`goaltrack.get_tracker` build their tracker with :func:`build_tracker`, so a
setup error is handled the same way everywhere:

- in production the app starts and serves: the problem is logged once at ERROR with its check
  id and hint, and tracking is disabled (goals are validated, not sent);
- an outbox file that cannot be opened is logged once (its path and the cause), and goals are
  delivered from memory instead;
- in development (the framework's: Django ``DEBUG``, Flask debug or testing, the ASGI
  middleware's ``debug=True``) the same problem is loud: the tracker standing in raises
  :class:`~goaltrack.InvalidConfiguration` at every tracking call, and the adapters refuse to
  start where their framework has a start-up phase (:attr:`Setup.error`).

:func:`read_configuration` is the reading half, also behind the ``check`` commands: the option
values given, the ``GOALTRACK_*`` environment variables filling in the rest, converted, with each
problem found and its id. Development also makes goals strict (``strict=True``) unless the user
set ``strict``.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from goaltrack.config import Problem, configuration_problems
from goaltrack.delivery import InvalidConfiguration
from goaltrack.options import (
    DEFAULT_PROVIDER,
    OPTIONS,
    AdapterSettings,
    env_name,
    names,
    raw_settings_from_env,
    read_settings,
)
from goaltrack.providers import PROVIDERS
from goaltrack.redaction import redact, remember_secret
from goaltrack.tracker import GoalTracker

__all__ = [
    "OPTION_PROBLEM",
    "OUTBOX_PROBLEM",
    "Configuration",
    "MisconfiguredTracker",
    "Setup",
    "build_tracker",
    "describe_problems",
    "read_adapter_options",
    "read_configuration",
    "tracker_from_env",
]

logger = logging.getLogger("goaltrack")

#: An option with a value it cannot take (or an unknown option name).
OPTION_PROBLEM = "goaltrack.E101"
#: An outbox file that cannot be opened or written.
OUTBOX_PROBLEM = "goaltrack.E008"

#: What a stand-in tracker keeps of the options: what goals are validated with.
_KEPT_OPTIONS = ("strict", "truncate_metadata", "debug")

Hooks = Callable[[Mapping[str, Any]], Mapping[str, Any]]


# -- reading -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Configuration:
    """Options as an adapter will use them, and what is wrong with them."""

    settings: AdapterSettings
    """The options converted; an option that could not be converted is left out."""
    problems: tuple[Problem, ...]
    """Errors and warnings, each with its id (``goaltrack.E005``, ``goaltrack.W001``, ...)."""

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.level == "error")

    def tracker_settings(self) -> dict[str, Any]:
        """The tracker arguments in effect, hooks included (what the ``check`` commands show)."""
        return {**self.settings.tracker_kwargs, **self.settings.hooks}


def read_configuration(
    values: Mapping[str, object],
    *,
    label: Callable[[str], str] = str,
    environment: bool = True,
    development: bool = False,
) -> Configuration:
    """*values* (option name -> value, None for not given), the environment filling in the rest.

    With *environment*, the ``GOALTRACK_*`` variables (one per option:
    :data:`goaltrack.options.ENVIRONMENT_VARIABLES`) give what *values* leave out. Strings are
    converted as every adapter converts them; *label* spells an option as the user wrote it, for
    messages (a variable is named as itself). Never raises for a value: each problem is in
    :attr:`Configuration.problems`. In *development* ``strict`` is True unless given.
    """
    given = {name: value for name, value in values.items() if value is not None}
    from_env = raw_settings_from_env() if environment else {}
    merged: dict[str, object] = {**from_env, **given}

    def spelled(name: str) -> str:
        return env_name(name) if name not in given and name in from_env else label(name)

    problems: list[Problem] = []
    try:
        settings = read_settings(merged, spelled)
    except (ValueError, TypeError):
        settings = _read_each(merged, spelled, problems)
    if development and settings.tracker_kwargs.get("strict") is None:
        settings.tracker_kwargs["strict"] = True
    kwargs = settings.tracker_kwargs
    api_key = kwargs.get("api_key")
    if isinstance(api_key, str):
        remember_secret(api_key)
    try:
        problems.extend(
            configuration_problems(
                api_key=api_key,
                provider=kwargs.get("provider"),
                api_url=kwargs.get("api_url"),
                website_id=kwargs.get("website_id"),
            )
        )
    except Exception as exc:  # a value of the wrong type (a provider given as a number)
        problems.append(_option_problem(exc))
    if not any(p.id == OPTION_PROBLEM for p in problems):
        try:
            settings.check_tracker_options()
        except (ValueError, TypeError) as exc:
            problems.append(_option_problem(exc))
    return Configuration(settings, tuple(problems))


def _read_each(
    merged: Mapping[str, object], spelled: Callable[[str], str], problems: list[Problem]
) -> AdapterSettings:
    """The options that can be read, one by one; a problem for each of the others."""
    unknown = sorted(name for name in merged if name not in OPTIONS)
    if unknown:
        problems.append(
            Problem(
                OPTION_PROBLEM,
                "error",
                f"unknown goaltrack option(s): {', '.join(map(spelled, unknown))}",
                "check the spelling against the configuration reference (docs/configuration.md, or "
                "python -m goaltrack.options)",
            )
        )
    tracker_kwargs: dict[str, Any] = {}
    hooks: dict[str, Any] = {}
    adapter_values: dict[str, Any] = {}
    for name, value in merged.items():
        if name not in OPTIONS:
            continue
        try:
            one = read_settings({name: value}, spelled)
        except (ValueError, TypeError) as exc:
            problems.append(_option_problem(exc))
            continue
        tracker_kwargs.update(one.tracker_kwargs)
        hooks.update(one.hooks)
        if name in names("adapter"):
            adapter_values[name] = getattr(one, name)
    return AdapterSettings(tracker_kwargs, hooks, **adapter_values)


def _option_problem(exc: BaseException) -> Problem:
    return Problem(
        OPTION_PROBLEM,
        "error",
        f"invalid goaltrack option: {redact(exc)}",
        "each option's values are in the configuration reference (docs/configuration.md, or "
        "python -m goaltrack.options)",
    )


# -- building ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """What :func:`build_tracker` made: the tracker to use, the options, what went wrong."""

    tracker: GoalTracker
    """A working tracker; delivering from memory if the outbox failed; else a stand-in."""
    settings: AdapterSettings
    problems: tuple[Problem, ...]
    """The errors found (already logged); empty when the configuration works."""
    source: str = ""

    @property
    def error(self) -> InvalidConfiguration | None:
        """The problems as one exception (for an adapter refusing to start), or None."""
        if not self.problems:
            return None
        return InvalidConfiguration(describe_problems(self.source, self.problems))


class MisconfiguredTracker(GoalTracker):
    """The disabled tracker standing in for one whose configuration cannot work.

    Goals are validated and not sent. In development (``raises``) every tracking call raises
    :class:`~goaltrack.InvalidConfiguration` with the problems' ids instead.
    """

    problems: tuple[Problem, ...] = ()
    source: str = ""
    raises: bool = False

    @property
    def error(self) -> InvalidConfiguration:
        """The problems as one exception, with their ids."""
        return InvalidConfiguration(describe_problems(self.source, self.problems))

    def _refuse(self) -> None:
        if self.raises:
            raise self.error

    def track(self, *args: Any, **kwargs: Any) -> bool:
        self._refuse()
        return super().track(*args, **kwargs)

    def track_visitor(self, *args: Any, **kwargs: Any) -> bool:
        self._refuse()
        return super().track_visitor(*args, **kwargs)

    def submit(self, *args: Any, **kwargs: Any) -> bool:
        self._refuse()
        return super().submit(*args, **kwargs)


def build_tracker(
    values: Mapping[str, object],
    *,
    development: bool,
    source: str,
    check_command: str,
    label: Callable[[str], str] = str,
    environment: bool = True,
    hooks: Hooks | None = None,
    log: bool = True,
) -> Setup:
    """A tracker from option *values*; never raises for what the configuration says.

    *values*, *label* and *environment* are :func:`read_configuration`'s. *source* names where
    the configuration came from and *check_command* the command that reports it, for the log
    line; *hooks* turns the user's hooks into the tracker's (the adapter's signals). A
    configuration that cannot work is logged once at ERROR (unless not *log*) and a
    :class:`MisconfiguredTracker` stands in; an outbox that cannot be opened is logged once and
    goals are delivered from memory. In *development* both give the stand-in, which raises at
    tracking calls, and :attr:`Setup.error` for the adapter to refuse to start with.
    """
    configuration = read_configuration(
        values, label=label, environment=environment, development=development
    )
    settings = configuration.settings
    errors = configuration.errors
    if not errors:
        kwargs = dict(settings.tracker_kwargs)
        try:
            kwargs.update(hooks(settings.hooks) if hooks is not None else settings.hooks)
            return Setup(GoalTracker(**kwargs), settings, (), source)
        except Exception as exc:
            outbox = kwargs.pop("outbox", None)
            memory, problem = _without_outbox(outbox, exc, kwargs)
            errors = (problem,)
        if memory is not None:
            if not development:
                if log:
                    logger.error(
                        "goaltrack: %s; goals are delivered from memory instead (they do not "
                        "survive a restart)",
                        problem,
                    )
                return Setup(memory, settings, errors, source)
            memory.close(0)
    if log:
        logger.error(
            "goaltrack: %s; goals are validated but not sent (run '%s' to check again)",
            describe_problems(source, errors),
            check_command,
        )
    return Setup(_stand_in(settings, errors, source, development), settings, errors, source)


def read_adapter_options(
    values: Mapping[str, object], *, source: str, check_command: str, log: bool = True
) -> Configuration:
    """An adapter's own options (``skip_bots``, ``flush_at_request_end``) when it builds no
    tracker, the environment filling in what *values* leave out: a value that cannot work is
    logged once at ERROR, and the default is used."""
    given = {name: value for name, value in values.items() if value is not None}
    adapter_names = names("adapter")
    from_env = {n: v for n, v in raw_settings_from_env().items() if n in adapter_names}

    def spelled(name: str) -> str:
        return env_name(name) if name not in given and name in from_env else name

    configuration = read_configuration({**from_env, **given}, label=spelled, environment=False)
    errors = configuration.errors
    if errors and log:
        logger.error(
            "goaltrack: %s; the defaults are used instead (run '%s' to check again)",
            describe_problems(source, errors),
            check_command,
        )
    return Configuration(configuration.settings, errors)


def _without_outbox(
    outbox: object, exc: Exception, kwargs: dict[str, Any]
) -> tuple[GoalTracker | None, Problem]:
    """After a failed build: (a tracker without the outbox, E008) when the outbox was the
    problem, else (None, the problem)."""
    if outbox is None:
        return None, _option_problem(exc)
    try:
        memory = GoalTracker(**kwargs)
    except Exception:
        return None, _option_problem(exc)
    cause = f"{type(exc).__name__}: {exc}" if isinstance(exc, sqlite3.Error | OSError) else exc
    return memory, Problem(
        OUTBOX_PROBLEM,
        "error",
        redact(f"the outbox {outbox} cannot be used ({cause})", limit=None),
        "make the file and its directory writable by the app, or set the outbox to a path that is",
    )


def _stand_in(
    settings: AdapterSettings, problems: tuple[Problem, ...], source: str, development: bool
) -> MisconfiguredTracker:
    given = settings.tracker_kwargs
    provider = given.get("provider")
    if not isinstance(provider, str) or provider.strip().lower() not in PROVIDERS:
        provider = DEFAULT_PROVIDER
    kept = {name: given[name] for name in _KEPT_OPTIONS if name in given}
    try:
        tracker = MisconfiguredTracker(None, provider=provider, mode="disabled", **kept)
    except (ValueError, TypeError):
        strict = True if development else None
        tracker = MisconfiguredTracker(None, provider=provider, mode="disabled", strict=strict)
    tracker.problems = problems
    tracker.source = source
    tracker.raises = development
    return tracker


def describe_problems(source: str, problems: tuple[Problem, ...]) -> str:
    """One line for *problems* found in the configuration from *source*: ids, messages, hints."""
    where = f"{source} cannot work: " if source else ""
    return where + "; ".join(map(str, problems))


# -- the process-wide tracker --------------------------------------------------------------------


def tracker_from_env(*, development: bool = False) -> GoalTracker:
    """The process-wide tracker from the ``GOALTRACK_*`` variables (:func:`goaltrack.get_tracker`).

    Development here is goaltrack's pytest plugin; ``GOALTRACK_DEBUG`` is goaltrack's debug log
    only (turning it on in production must not make goaltrack raise into requests).
    """
    from goaltrack import tracker as tracker_module

    development = development or tracker_module.strict_by_default
    return build_tracker(
        {},
        development=development,
        source="the GOALTRACK_* environment variables",
        check_command="goaltrack check",
    ).tracker
