"""goaltrack.script_tag: the provider's tracking script tag, escaped, from arguments or the
process-wide settings."""

from __future__ import annotations

import logging

import pytest

import goaltrack
from goaltrack import script_tag
from tests.support.script_tags import FAKE_SCRIPT, HOSTILE_ID, TRACKING_ID

pytestmark = pytest.mark.usefixtures("clean_environment", "warning_not_yet_given")


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "goaltrack" and r.levelno == logging.WARNING
    ]


def test_datafasts_documented_tag() -> None:
    assert script_tag("datafast", "dfid_abc", "example.com") == (
        '<script defer data-website-id="dfid_abc" data-domain="example.com" '
        'src="https://datafa.st/js/script.js"></script>'
    )


def test_every_value_is_escaped() -> None:
    tag = script_tag("datafast", HOSTILE_ID, 'a"b', nonce="<n>", data_x="'&")
    assert "<script>alert" not in tag
    assert 'data-website-id="dfid_x&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in tag
    assert 'data-domain="a&quot;b"' in tag
    assert 'nonce="&lt;n&gt;"' in tag
    assert 'data-x="&#x27;&amp;"' in tag
    assert tag.count("<script") == 1


def test_nonce_defer_src_and_extra_attributes() -> None:
    tag = script_tag(
        tracking_id=TRACKING_ID,
        nonce="abc123",
        src=FAKE_SCRIPT,
        data_api_url="/x",
    )
    assert tag.startswith("<script defer ")
    assert ' nonce="abc123"' in tag
    assert ' data-api-url="/x"' in tag
    assert f' src="{FAKE_SCRIPT}"' in tag
    assert "data-domain" not in tag  # not set: left out
    assert tag.endswith("></script>")


def test_without_a_tracking_id_nothing_and_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="goaltrack")
    assert script_tag("datafast") == ""
    assert script_tag("datafast", "") == ""
    assert len(warnings(caplog)) == 1
    assert "GOALTRACK_TRACKING_ID" in warnings(caplog)[0]


def test_faurya_and_flowsery_need_src(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="goaltrack")
    for provider in ("faurya", "flowsery"):
        assert script_tag(provider, "site") == ""  # a page still renders
        assert script_tag(provider, "site") == ""
        said = [w for w in warnings(caplog) if provider in w]
        assert len(said) == 1  # once per provider
        assert "pass src=" in said[0]
        tag = script_tag(provider, "site", src="https://cdn.example.com/s.js")
        assert 'src="https://cdn.example.com/s.js"' in tag
        assert 'data-website-id="site"' in tag


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOALTRACK_TRACKING_ID", TRACKING_ID)
    monkeypatch.setenv("GOALTRACK_DOMAIN", "shop.example.com")
    tag = script_tag()
    assert f'data-website-id="{TRACKING_ID}"' in tag
    assert 'data-domain="shop.example.com"' in tag
    assert "https://datafa.st/js/script.js" in tag
    # Arguments win over the environment.
    assert 'data-domain="other.example"' in script_tag(domain="other.example")
    # With no tracker configured, GOALTRACK_PROVIDER names the provider.
    from goaltrack import tracker as tracker_module

    monkeypatch.setattr(tracker_module, "_process_tracker", None)
    monkeypatch.setenv("GOALTRACK_PROVIDER", "flowsery")
    assert script_tag() == ""  # Flowsery's snippet needs src=
    assert script_tag(src="https://cdn.example.com/s.js").endswith(
        'src="https://cdn.example.com/s.js"></script>'
    )


def test_the_provider_of_the_configured_tracker(monkeypatch: pytest.MonkeyPatch) -> None:
    from goaltrack import tracker as tracker_module

    configured = goaltrack.GoalTracker(None, provider="faurya", mode="disabled")
    monkeypatch.setattr(tracker_module, "_process_tracker", configured)
    try:
        assert script_tag(tracking_id=TRACKING_ID) == ""  # Faurya's snippet needs src=
    finally:
        configured.close(0)


def test_goals_to_the_fake_api_load_its_stand_in_script(monkeypatch: pytest.MonkeyPatch) -> None:
    from goaltrack import tracker as tracker_module

    monkeypatch.setattr(tracker_module, "_process_tracker", None)
    fake = "http://127.0.0.1:8765/flowsery"
    # Any provider, Flowsery included (whose real snippet needs src=): the stand-in script.
    tag = script_tag("flowsery", "site", api_url=fake)
    assert tag.endswith(f'src="{fake}/js/script.js"></script>')
    monkeypatch.setenv("GOALTRACK_API_URL", "http://localhost:9000/datafast/")
    assert 'src="http://localhost:9000/datafast/js/script.js"' in script_tag("datafast", "site")
    # A real API (https, or a host that is not loopback) keeps the provider's script; src= wins.
    for real in ("https://127.0.0.1:8765", "http://analytics.example.com"):
        tag = script_tag("datafast", "site", api_url=real)
        assert 'src="https://datafa.st/js/script.js"' in tag
    assert 'src="/mine.js"' in script_tag("datafast", "site", api_url=fake, src="/mine.js")
