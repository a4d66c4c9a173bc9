"""``goaltrack.asgi.script_global``: the script tag as a Jinja global of Starlette's templates;
the middleware reads ``tracking_id`` / ``domain`` as its own options, not tracker arguments."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates
from starlette.testclient import TestClient

from goaltrack.asgi import GoalTrackMiddleware, script_global
from tests.support.script_tags import FAKE_SCRIPT, HOSTILE_ID, TRACKING_ID

pytestmark = pytest.mark.usefixtures("clean_environment", "warning_not_yet_given")


def page_app(tmp_path: Path, template: str, **options: object) -> Starlette:
    (tmp_path / "page.html").write_text(template, encoding="utf-8")
    templates = Jinja2Templates(directory=str(tmp_path))
    templates.env.globals["goaltrack_script"] = script_global(**options)

    async def page(request: Request) -> Response:
        return templates.TemplateResponse(request, "page.html", {"nonce": "n0nce"})

    return Starlette(routes=[Route("/", page)])


def test_starlette_templates_render_the_tag(tmp_path: Path) -> None:
    app = page_app(
        tmp_path,
        "{{ goaltrack_script(nonce=nonce) }}",
        tracking_id=TRACKING_ID,
        domain="example.com",
        src=FAKE_SCRIPT,
    )
    html = TestClient(app).get("/").text
    assert html == (
        f'<script defer data-website-id="{TRACKING_ID}" data-domain="example.com" '
        f'nonce="n0nce" src="{FAKE_SCRIPT}"></script>'
    )


def test_escaped_once(tmp_path: Path) -> None:
    html = TestClient(page_app(tmp_path, "{{ goaltrack_script() }}", tracking_id=HOSTILE_ID)).get(
        "/"
    )
    assert html.text.count("<script") == 1
    assert "&quot;&gt;&lt;script&gt;" in html.text
    assert "&amp;" not in html.text


def test_the_environment_fills_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOALTRACK_TRACKING_ID", TRACKING_ID)
    html = TestClient(page_app(tmp_path, "{{ goaltrack_script() }}")).get("/").text
    assert f'data-website-id="{TRACKING_ID}"' in html


async def no_app(scope: object, receive: object, send: object) -> None:
    raise AssertionError("not called")


def test_the_middleware_keeps_tracking_id_and_domain_off_the_tracker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    middleware = GoalTrackMiddleware(no_app, tracking_id=TRACKING_ID, domain="example.com")
    assert (middleware.tracking_id, middleware.domain) == (TRACKING_ID, "example.com")
    assert middleware._tracker is None  # still the process-wide tracker
    monkeypatch.setenv("GOALTRACK_DOMAIN", "env.example")
    assert GoalTrackMiddleware(no_app).domain == "env.example"
