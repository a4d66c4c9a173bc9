"""pytest fixtures for users' test suites (registered through the ``pytest11`` entry point).

- ``goaltrack_goals``: the goals tracked during the test, captured offline (nothing is sent); the
  payments tracked meanwhile are its ``.payments``.
- ``goaltrack_payments``: the payments tracked during the test, captured offline.
- ``goaltrack_fake_api``: a fake API server on 127.0.0.1 for the test session, reset per test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from goaltrack import tracker as _tracker
from goaltrack.payments import Payment
from goaltrack.testing.capture import CapturedGoals, capture_goals

if TYPE_CHECKING:
    from goaltrack.testing.server import FakeAPIServer


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest an invalid goal raises InvalidGoal where it is tracked (unless strict=False)."""
    _tracker.strict_by_default = True


@pytest.fixture
def goaltrack_goals() -> Iterator[CapturedGoals]:
    """Goals tracked during the test, validated but not sent."""
    with capture_goals() as goals:
        yield goals


@pytest.fixture
def goaltrack_payments() -> Iterator[list[Payment]]:
    """Payments tracked during the test, validated but not sent."""
    with capture_goals() as goals:
        yield goals.payments


@pytest.fixture(scope="session")
def _goaltrack_fake_api_session() -> Iterator[FakeAPIServer]:
    from goaltrack.testing.server import FakeAPIServer

    with FakeAPIServer() as server:
        yield server


@pytest.fixture
def goaltrack_fake_api(_goaltrack_fake_api_session: FakeAPIServer) -> FakeAPIServer:
    """A running fake API (one per test session), emptied before each test."""
    _goaltrack_fake_api_session.reset()
    return _goaltrack_fake_api_session
