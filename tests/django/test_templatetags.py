"""``{% load goaltrack %}{% goaltrack_script %}``: the script tag from the ``GOALTRACK`` setting,
the request's CSP nonce and keyword overrides; the ``goaltrack.W102`` check."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
from django.template import Context, Template
from django.test import override_settings

from goaltrack.django.checks import check_settings
from tests.support.script_tags import FAKE_SCRIPT, HOSTILE_ID, TRACKING_ID

pytestmark = pytest.mark.usefixtures("clean_environment", "warning_not_yet_given", "templates")


@pytest.fixture
def templates(settings: Any) -> None:
    settings.TEMPLATES = [
        {"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}
    ]


def render(text: str, request: object = None, **context: object) -> str:
    return Template("{% load goaltrack %}" + text).render(Context({"request": request, **context}))


def test_the_tag_from_the_setting(settings: Any) -> None:
    settings.GOALTRACK = {"TRACKING_ID": TRACKING_ID, "DOMAIN": "example.com"}
    assert render("{% goaltrack_script %}") == (
        f'<script defer data-website-id="{TRACKING_ID}" data-domain="example.com" '
        'src="https://datafa.st/js/script.js"></script>'
    )


def test_escaped_and_marked_safe_once(settings: Any) -> None:
    settings.GOALTRACK = {"TRACKING_ID": HOSTILE_ID}
    html = render("{% goaltrack_script %}")
    assert html.count("<script") == 1
    assert "&quot;&gt;&lt;script&gt;" in html
    assert "&amp;quot;" not in html  # not escaped twice


def test_the_requests_csp_nonce_and_overrides(settings: Any) -> None:
    settings.GOALTRACK = {"TRACKING_ID": TRACKING_ID}
    request = SimpleNamespace(csp_nonce="n0nce")
    html = render(
        '{% goaltrack_script domain="shop.example" src=src data_api_url="/x" %}',
        request,
        src=FAKE_SCRIPT,
    )
    assert ' nonce="n0nce"' in html
    assert ' data-domain="shop.example"' in html
    assert ' data-api-url="/x"' in html
    assert f' src="{FAKE_SCRIPT}"' in html


def test_the_environment_fills_in(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOALTRACK_TRACKING_ID", TRACKING_ID)
    with override_settings(GOALTRACK={}):
        assert f'data-website-id="{TRACKING_ID}"' in render("{% goaltrack_script %}")


def test_without_a_tracking_id_nothing_and_one_warning(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.GOALTRACK = {}
    caplog.set_level(logging.WARNING, logger="goaltrack")
    assert render("{% goaltrack_script %}{% goaltrack_script %}") == ""
    assert len([r for r in caplog.records if "tracking id" in r.getMessage()]) == 1


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ({"TRACKING_ID": TRACKING_ID}, []),
        ({}, []),  # no tag used: nothing to say
        ({"TRACKING_ID": "site_1"}, ["goaltrack.W102"]),
        ({"TRACKING_ID": "site_1", "PROVIDER": "flowsery"}, []),
    ],
)
def test_a_tracking_id_datafast_would_not_know(
    setting: dict[str, str], expected: list[str]
) -> None:
    with override_settings(GOALTRACK=setting):
        ids = [m.id for m in check_settings() if m.id in ("goaltrack.W102",)]
    assert ids == expected
