"""Fixtures of the Django adapter tests: the settings pointed at the fake API, a visitor, a
browser, and the Django REST framework / django-ninja project served by gunicorn and uvicorn."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from goaltrack.testing.server import FakeAPIServer
from tests.support.browser import django_browser
from tests.support.django_app.support import goaltrack_setting
from tests.support.servers import serve_django_apis

if TYPE_CHECKING:
    from django.test import Client


@pytest.fixture
def api(fake_api: FakeAPIServer, settings: Any) -> FakeAPIServer:
    """The fake API, with ``settings.GOALTRACK`` delivering to it."""
    settings.GOALTRACK = goaltrack_setting(fake_api)
    return fake_api


@pytest.fixture
def visitor_id(api: FakeAPIServer) -> str:
    return api.add_pageview("datafast")


@pytest.fixture
def browser(visitor_id: str) -> Client:
    """Django's test client carrying the visitor's cookie."""
    return django_browser(visitor_id)


@pytest.fixture(scope="module", params=["gunicorn", "uvicorn"])
def api_url(
    request: pytest.FixtureRequest,
    fake_api_server: FakeAPIServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """The Django REST framework and django-ninja project under gunicorn, then uvicorn."""
    log = tmp_path_factory.mktemp(request.param) / "server.log"
    with serve_django_apis(fake_api_server, request.param, log) as running:
        yield running.url
