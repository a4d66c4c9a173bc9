"""Offline capture of tracked goals and payments, for a user's own test suite."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from goaltrack import tracker as _tracker
from goaltrack.goals import Goal
from goaltrack.payments import Payment

__all__ = ["CapturedGoals", "capture_goals"]


class CapturedGoals(list[Goal]):
    """The goals tracked (validated, not sent) while the capture was active; the payments
    tracked meanwhile are in :attr:`payments`."""

    def __init__(self) -> None:
        super().__init__()
        self.payments: list[Payment] = []
        """The payments tracked (validated, not sent) while the capture was active."""

    @property
    def names(self) -> list[str]:
        return [goal.name for goal in self]

    @property
    def transaction_ids(self) -> list[str]:
        """The captured payments' transaction ids, in the order they were tracked."""
        return [payment.transaction_id for payment in self.payments]


@contextmanager
def capture_goals() -> Iterator[CapturedGoals]:
    """Collect every goal and payment any tracker in this process accepts, instead of sending
    them (the payments in ``.payments``).

    Goals and payments are validated exactly as in production, so an invalid one still raises.

    ```python test="pytest"
    import goaltrack
    from goaltrack.testing import capture_goals


    def test_signup_is_tracked():
        with capture_goals() as goals:  # or with your test client: client.post("/signup/")
            goaltrack.track("signup", visitor_id="0b7a4c36-5d1e-4a8f-9c2b-3e4f5a6b7c8d")
        assert goals.names == ["signup"]
    ```
    """
    captured = CapturedGoals()
    sinks = (captured, captured.payments)
    _tracker._captures.append(sinks)
    try:
        yield captured
    finally:
        _tracker._captures.remove(sinks)
