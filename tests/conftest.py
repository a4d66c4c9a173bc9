"""Fixtures shared by every test module: the fake API over real HTTP on 127.0.0.1, and the
tests' own misbehaving API.

Each pytest-xdist worker is a process of its own: it starts its own fake API (session scope),
so tests in different workers never see each other's goals, faults or keys.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from goaltrack.testing.server import FakeAPIServer
from tests.support.hostile_api import HostileAPI


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


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``GOALTRACK_*`` variable of the shell (or of an earlier test) reaches the test."""
    for name in list(os.environ):
        if name.startswith("GOALTRACK_"):
            monkeypatch.delenv(name)


@pytest.fixture
def api() -> Iterator[HostileAPI]:
    """A loopback API of the tests' own (:mod:`tests.support.hostile_api`), closed after the test.

    (In ``tests/django`` ``api`` is the fake API the Django settings point at.)
    """
    server = HostileAPI()
    yield server
    server.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist, the long tests first: the system tier and the ``slow`` rows start at
    once and the short ones fill the workers around them, instead of one long row starting last
    and running alone. With ``--maxschedchunk 1`` (the Makefile's) each free worker takes the next
    test; by default the first worker would get the whole first quarter, every long test with it.
    (A run without workers keeps the files' order.)"""
    if not hasattr(config, "workerinput"):
        return
    items.sort(key=lambda item: 0 if is_long(item) else 1)  # stable: file order within each


def is_long(item: pytest.Item) -> bool:
    return "/system/" in item.nodeid or item.get_closest_marker("slow") is not None


@pytest.fixture
def warning_not_yet_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """The process has not yet warned that the script tag has no tracking id."""
    # goaltrack.script_tag is the function; its module is only reachable through sys.modules.
    import sys

    monkeypatch.setattr(sys.modules["goaltrack.script_tag"], "_warned", set())
