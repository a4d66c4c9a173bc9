"""``contract``: each test runs once per adapter, against that adapter's contract app."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from goaltrack.testing.server import FakeAPIServer
from tests.contract.apps import ADAPTERS, Served, serve
from tests.support.keys import KEYS

Serve = Callable[..., contextlib.AbstractContextManager[Served]]


@pytest.fixture(params=ADAPTERS)
def adapter(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def contract(adapter: str, fake_api: FakeAPIServer) -> Serve:
    """``with contract(provider="datafast", **options) as app:`` the adapter's app, served.

    Options are goaltrack's option names (``skip_bots``, ``max_queue_size``, ...); the account
    points at the fake API, with short backoffs.
    """

    @contextlib.contextmanager
    def make(provider: str = "datafast", **options: Any) -> Iterator[Served]:
        account = {
            "api_key": KEYS[provider],
            "provider": provider,
            "api_url": fake_api.api_url(provider),
            "backoff_base": 0.01,
            "backoff_max": 0.05,
            "max_retries": 2,
        }
        with serve(adapter, {**account, **options}) as served:
            yield served

    return make
