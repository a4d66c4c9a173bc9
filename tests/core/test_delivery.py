"""Unit tests of single functions of one delivery: classification, Retry-After, URLs.

(The behaviour over real HTTP is in test_tracker.py.)
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from goaltrack import InvalidConfiguration, get_provider
from goaltrack.delivery import Endpoint, Outcome, check_api_url, classify, parse_retry_after
from goaltrack.http_client import HttpResponse

DATAFAST = get_provider("datafast")
FAURYA = get_provider("faurya")
FLOWSERY = get_provider("flowsery")


def response(status: int, body: object = None, **headers: str) -> HttpResponse:
    raw = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpResponse(status, {k.replace("_", "-"): v for k, v in headers.items()}, raw)


def test_success_with_event_id_in_a_list_or_an_object() -> None:
    listed = {
        "status": "success",
        "data": [{"message": "ok", "eventId": "67f8b9b5c320277df9a9d681"}],
    }
    as_object = {"status": "success", "data": {"message": "ok", "eventId": "abc"}}
    assert classify(response(200, listed), DATAFAST).event_id == "67f8b9b5c320277df9a9d681"
    assert classify(response(200, as_object), DATAFAST).event_id == "abc"
    flowsery = classify(response(201, {"status": "success", "data": [{"message": "x"}]}), FLOWSERY)
    assert (flowsery.outcome, flowsery.event_id) == (Outcome.DELIVERED, None)
    assert classify(response(200, b"not json"), DATAFAST).outcome is Outcome.DELIVERED


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_final_with_the_providers_reason(status: int) -> None:
    body = {"status": "error", "error": {"code": status, "message": "Visitor has no pageviews"}}
    result = classify(response(status, body), DATAFAST)
    assert result.outcome is Outcome.FAILED
    assert result.reason == f"HTTP {status}: Visitor has no pageviews"


def test_flowsery_error_envelope_with_a_message_list() -> None:
    body = {
        "statusCode": 400,
        "message": ["name must match", "metadata too big"],
        "error": "Bad Request",
    }
    assert (
        classify(response(400, body), FLOWSERY).reason
        == "HTTP 400: name must match; metadata too big"
    )


def test_unparseable_error_body_is_quoted_and_bounded() -> None:
    result = classify(response(400, b"<html>" + b"x" * 1000), DATAFAST)
    assert result.reason.startswith("HTTP 400: <html>xxx")
    assert len(result.reason) < 320


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(status: int) -> None:
    assert classify(response(status, {}), DATAFAST).outcome is Outcome.RETRY


def test_faurya_429_is_final_quota_used_up() -> None:
    assert classify(response(429, {}), FAURYA).outcome is Outcome.FAILED
    assert classify(response(429, {}), DATAFAST).outcome is Outcome.RETRY


def test_redirects_are_final_and_not_followed() -> None:
    result = classify(response(301, b"", location="https://elsewhere.example/"), DATAFAST)
    assert result.outcome is Outcome.FAILED
    assert "redirects are not followed" in result.reason


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(30.0)
    assert parse_retry_after(format_datetime(now, usegmt=True), now=now.timestamp() + 60) == 0.0
    assert classify(response(429, {}, retry_after="3"), DATAFAST).retry_after == 3.0


@pytest.mark.parametrize(
    "url", ["https://datafa.st", "http://127.0.0.1:8000/x", "http://localhost:1", "http://[::1]:2"]
)
def test_accepted_api_urls(url: str) -> None:
    check_api_url(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://datafa.st", "plain http to a non-loopback host"),
        ("http://10.0.0.5:8000", "plain http to a non-loopback host"),
        ("ftp://datafa.st", "must be an absolute https:// URL"),
        ("datafa.st", "must be an absolute https:// URL"),
    ],
)
def test_refused_api_urls(url: str, message: str) -> None:
    with pytest.raises(InvalidConfiguration, match=message):
        check_api_url(url)


def test_endpoint_url_query_and_redacted_repr() -> None:
    endpoint = Endpoint(DATAFAST, "dft_secret_token", "https://proxy.example/df/", "665f0b")
    assert endpoint.url == "https://proxy.example/df/api/v1/goals?websiteId=665f0b"
    assert "dft_secret_token" not in repr(endpoint)
    flowsery = Endpoint(FLOWSERY, "flow_x", "https://analytics.flowsery.com/analytics", None)
    assert flowsery.url == "https://analytics.flowsery.com/analytics/api/v1/goals"


def test_a_key_echoed_at_the_length_limit_is_redacted_before_the_reason_is_cut() -> None:
    """A key straddling the reason's length limit would survive as a prefix if the text were cut
    first and redacted after."""
    from goaltrack.redaction import remember_secret

    key = "df_echoed_at_the_cut_0123456789abcdef"
    remember_secret(key)
    body = ("x" * 290 + " " + key + " and more").encode()
    result = classify(HttpResponse(502, {}, body), get_provider("datafast"))
    assert key[:8] not in result.reason
    assert len(result.reason) <= 300
