"""Fixtures shared by every test module: the fake API over real HTTP on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from goaltrack.testing.server import FakeAPIServer


@pytest.fixture(scope="session")
def fake_api_server() -> Iterator[FakeAPIServer]:
    with FakeAPIServer() as server:
        yield server


@pytest.fixture
def fake_api(fake_api_server: FakeAPIServer) -> Iterator[FakeAPIServer]:
    """The session's fake API, emptied (goals, pageviews, faults, keys) before each test."""
    fake_api_server.reset()
    yield fake_api_server
    fake_api_server.reset()
