"""The process-wide tracker built from the ``GOALTRACK`` setting, and the opt-in auth goals.

:func:`configure_from_settings` runs when the app is ready and again whenever the setting
changes (``override_settings``). Its hooks are the user's ``ON_DELIVERY`` / ``ON_FAILURE`` /
``ON_DROP``; every tracker sends the signals of :mod:`goaltrack.django.signals` after them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings

from goaltrack.config import Problem
from goaltrack.django.conf import goaltrack_settings
from goaltrack.django.helpers import connect_goal
from goaltrack.goals import InvalidGoal
from goaltrack.startup import OUTBOX_PROBLEM, build_tracker
from goaltrack.tracker import GoalTracker, use_as_process_tracker

__all__ = ["configure_from_settings", "connect_auth_goals", "outbox_problems"]

logger = logging.getLogger("goaltrack")

AUTH_SIGNAL_NAMES = ("user_logged_in", "user_logged_out", "user_login_failed")


def configure_from_settings() -> GoalTracker:
    """(Re)build the process-wide tracker from ``settings.GOALTRACK``, then the environment.

    A setting that cannot work does not stop the site (:mod:`goaltrack.startup`): it is logged
    once, reported by ``manage.py check``, and the tracker is disabled (goals are still
    validated, nothing is sent); with ``DEBUG`` every tracking call raises it instead. An outbox
    that cannot be opened is logged, and goals are delivered from memory.
    """
    setup = build_tracker(
        goaltrack_settings.tracker_kwargs(),
        development=bool(getattr(settings, "DEBUG", False)),
        source="the GOALTRACK setting",
        check_command="manage.py goaltrack_check",
        label=str.upper,
    )
    global _outbox_problems
    _outbox_problems = tuple(p for p in setup.problems if p.id == OUTBOX_PROBLEM)
    return use_as_process_tracker(setup.tracker)


_outbox_problems: tuple[Problem, ...] = ()


def outbox_problems() -> tuple[Problem, ...]:
    """The outbox the last tracker built could not open (``goaltrack.E008``), if so."""
    return _outbox_problems


_auth_receivers: list[tuple[Callable[..., None], object]] = []


def connect_auth_goals() -> None:
    """Connect the ``AUTH_GOALS`` mapping, replacing what an earlier value connected."""
    from django.contrib.auth import signals as auth_signals

    for receiver, signal in _auth_receivers:
        signal.disconnect(receiver)  # type: ignore[attr-defined]
    _auth_receivers.clear()
    for signal_name, goal_name in goaltrack_settings.auth_goals.items():
        signal = (
            getattr(auth_signals, signal_name, None) if signal_name in AUTH_SIGNAL_NAMES else None
        )
        if signal is None:
            logger.error("goaltrack: AUTH_GOALS names an unknown auth signal %r", signal_name)
            continue
        try:
            receiver = connect_goal(signal, goal_name)
        except InvalidGoal as exc:
            logger.error("goaltrack: AUTH_GOALS[%r] is not a valid goal name: %s", signal_name, exc)
            continue
        _auth_receivers.append((receiver, signal))
