"""Fixtures of the Flask adapter tests: the apps a test makes, closed after it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from goaltrack.flask import get_tracker


@pytest.fixture
def apps() -> Iterator[list[Flask]]:
    """Apps a test made with ``tests.support.flask_apps.new_app``, closed afterwards."""
    made: list[Flask] = []
    yield made
    for app in made:
        if "goaltrack" in app.extensions:
            get_tracker(app).close(5)
