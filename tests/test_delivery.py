"""Unit tests of single functions of the delivery rules: classification, Retry-After, backoff, URLs.

(The behaviour over real HTTP is in test_tracker.py.)
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from goaltrack import InvalidConfiguration, get_provider
from goaltrack.delivery import (
    DeliveryResult,
    Endpoint,
    Outcome,
    RetryPolicy,
    backoff_delay,
    check_api_url,
    classify,
    parse_retry_after,
)
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
    now = datetime(2026, 11, 23, 12, 0, 0, tzinfo=timezone.utc)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(30.0)
    assert parse_retry_after(format_datetime(now, usegmt=True), now=now.timestamp() + 60) == 0.0
    assert classify(response(429, {}, retry_after="3"), DATAFAST).retry_after == 3.0


def test_backoff_grows_exponentially_within_its_jitter_and_cap() -> None:
    rng = random.Random(1)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (10, 30.0)]:
        for _ in range(50):
            delay = backoff_delay(attempt, 0.5, 30.0, rng)
            assert ceiling / 2 <= delay <= ceiling


def test_retry_policy_gives_up_after_max_retries_and_prefers_retry_after() -> None:
    policy = RetryPolicy(max_retries=2, backoff_base=0.1, backoff_max=1.0)
    plain = DeliveryResult(Outcome.RETRY, "HTTP 503")
    assert policy.delay_before_retry(1, plain) is not None
    assert policy.delay_before_retry(2, plain) is not None
    assert policy.delay_before_retry(3, plain) is None
    assert (
        policy.delay_before_retry(1, DeliveryResult(Outcome.RETRY, "429", retry_after=4.0)) == 4.0
    )


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
