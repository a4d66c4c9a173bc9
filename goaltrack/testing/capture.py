"""Offline capture of tracked goals, for a user's own test suite."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from goaltrack import tracker as _tracker
from goaltrack.goals import Goal

__all__ = ["CapturedGoals", "capture_goals"]


class CapturedGoals(list[Goal]):
    """The goals tracked (validated, not sent) while the capture was active."""

    @property
    def names(self) -> list[str]:
        return [goal.name for goal in self]


@contextmanager
def capture_goals() -> Iterator[CapturedGoals]:
    """Collect every goal any tracker in this process accepts, instead of sending it.

    Goals are validated exactly as in production, so an invalid goal still raises.

    >>> with capture_goals() as goals:                     # doctest: +SKIP
    ...     client.post("/signup/")
    >>> assert goals.names == ["signup"]                   # doctest: +SKIP
    """
    captured = CapturedGoals()
    _tracker._captures.append(captured)
    try:
        yield captured
    finally:
        _tracker._captures.remove(captured)
