"""Unit tests of single functions of the delivery rules: classification, Retry-After, backoff, URLs.

(The behaviour over real HTTP is in test_tracker.py.)
"""

from __future__ import annotations

import itertools
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
    check_api_url,
    classify,
    parse_retry_after,
)
from goaltrack.http_client import HttpResponse
from goaltrack.retry import (
    BreakerState,
    CircuitBreaker,
    RetryPolicy,
    RetryState,
    Ticket,
    backoff_delay,
    judge,
)

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


def test_a_retry_waits_what_retry_after_asks_within_backoff_max() -> None:
    # Updated with the single retry state: the sync transport's count-based delay_before_retry
    # is gone; every transport's delay is judge()'s.
    policy = RetryPolicy(max_retries=2, backoff_base=0.1, backoff_max=1.0)
    for asked, waited in [(0.75, 0.75), (4.0, 1.0)]:  # never longer than backoff_max
        breaker = CircuitBreaker()
        result = DeliveryResult(Outcome.RETRY, "429", status=429, retry_after=asked)
        verdict = judge(breaker, policy, RetryState(), admitted(breaker), result, now=0.0, age=0.0)
        assert verdict.retry_in == pytest.approx(waited, abs=0.01)
        assert verdict.state.failures == 1


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


# -- the circuit breaker and the retry rules ---------------------------------------------------

FAILED_503 = DeliveryResult(Outcome.RETRY, "HTTP 503", status=503)


def admitted(breaker: CircuitBreaker, now: float = 0.0) -> Ticket:
    ticket = breaker.admit(now)
    assert ticket is not None
    return ticket


def open_breaker(breaker: CircuitBreaker, now: float = 0.0) -> list[Ticket]:
    """Four workers send while it is closed; all four fail."""
    tickets = [breaker.admit(now) for _ in range(4)]
    assert all(t is not None for t in tickets)
    verdicts = [breaker.failed(t, FAILED_503, now) for t in tickets if t is not None]
    assert verdicts == [True, True, False, False]  # two look isolated, the third opens it
    return [t for t in tickets if t is not None]


def test_breaker_opens_after_three_failures_and_concurrent_ones_count_once() -> None:
    breaker = CircuitBreaker(probe_interval_max=1.0, rng=random.Random(3))
    open_breaker(breaker)
    assert breaker.state is BreakerState.OPEN
    assert breaker.epoch == 1
    # The fourth request was sent before it opened: its failure did not push the probe back.
    assert breaker.wake_at is not None
    assert 0.2 <= breaker.wake_at <= 0.25
    assert breaker.admit(0.1) is None


def test_a_late_success_of_an_earlier_request_does_not_end_a_run_of_failures() -> None:
    breaker = CircuitBreaker()
    earlier, first, second, third = (admitted(breaker) for _ in range(4))
    assert breaker.failed(first, FAILED_503, 0.0)
    assert breaker.failed(second, FAILED_503, 0.0)
    assert not breaker.succeeded(earlier, 0.0)  # sent before the failures began: stale
    assert not breaker.failed(third, FAILED_503, 0.0)  # the third failure in a row opens it
    assert breaker.state is BreakerState.OPEN


def test_a_late_success_of_a_request_sent_before_it_opened_does_not_close_it() -> None:
    breaker = CircuitBreaker()
    sent_before = admitted(breaker)
    open_breaker(breaker)
    assert not breaker.succeeded(sent_before, 0.0)  # answered before the outage, processed after
    assert breaker.state is BreakerState.OPEN


def test_breaker_admits_exactly_one_probe_and_its_success_closes_it() -> None:
    breaker = CircuitBreaker(probe_interval_max=1.0, rng=random.Random(3))
    open_breaker(breaker)
    probe = breaker.admit(0.3)
    assert probe is not None
    assert probe.probe
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.admit(0.31) is None  # one probe in flight, no other request
    assert breaker.succeeded(probe, 1.0)  # closed by it
    assert breaker.state is BreakerState.CLOSED
    assert breaker.wake_at is None
    after = breaker.admit(0.32)
    assert after is not None
    assert not after.probe


def test_failed_probes_grow_the_interval_up_to_probe_interval_max() -> None:
    breaker = CircuitBreaker(probe_interval_max=1.0, rng=random.Random(3))
    open_breaker(breaker)
    now, waits = 0.0, []
    for _ in range(8):
        assert breaker.wake_at is not None
        now = breaker.wake_at
        probe = breaker.admit(now)
        assert probe is not None
        assert not breaker.failed(probe, FAILED_503, now)  # a probe's failure is the outage's
        assert breaker.wake_at is not None
        waits.append(breaker.wake_at - now)
    assert waits[0] == pytest.approx(0.5, rel=0.2)
    assert all(a <= b * 1.26 for a, b in itertools.pairwise(waits))  # growing
    assert all(0.8 <= w <= 1.0 for w in waits[-4:])  # capped, jittered down by at most 20%


def test_an_unanswered_probe_lets_the_next_one_go_after_the_interval() -> None:
    # A blackholed API holds the probe until the request's timeout; the breaker does not wait
    # that long to probe again, and the old probe's late failure changes nothing.
    breaker = CircuitBreaker(probe_interval_max=1.0, rng=random.Random(3))
    open_breaker(breaker)
    first = breaker.admit(0.3)
    assert first is not None
    assert breaker.admit(0.35) is None
    assert breaker.wake_at is not None
    second = breaker.admit(breaker.wake_at)
    assert second is not None
    assert second.probe != first.probe
    before = breaker.wake_at
    assert not breaker.failed(first, FAILED_503, 5.3)  # the first probe timing out at last
    assert breaker.wake_at == before
    assert breaker.succeeded(second, 1.0)


def test_retry_after_opens_the_breaker_until_then_and_wins_over_the_interval() -> None:
    breaker = CircuitBreaker(probe_interval_max=1.0)
    ticket = breaker.admit(10.0)
    assert ticket is not None
    limited = DeliveryResult(Outcome.RETRY, "HTTP 429", status=429, retry_after=30.0)
    assert not breaker.failed(ticket, limited, 10.0)
    assert breaker.state is BreakerState.OPEN
    assert breaker.wake_at == 40.0
    assert breaker.admit(39.9) is None
    assert breaker.admit(40.0) is not None


def test_a_released_probe_ticket_lets_the_next_probe_go_at_once() -> None:
    breaker = CircuitBreaker(probe_interval_max=1.0)
    open_breaker(breaker)
    probe = breaker.admit(1.0)
    assert probe is not None
    breaker.release(probe)  # nothing was due: no request went out on it
    assert breaker.state is BreakerState.OPEN
    assert breaker.admit(1.0) is not None


def test_failures_of_an_outage_never_count_against_max_retries() -> None:
    # Updated with the single retry state: through judge(), which returns the next state.
    policy = RetryPolicy(max_retries=2, backoff_base=0.1, backoff_max=1.0, give_up_after=3600)
    breaker = CircuitBreaker()
    state = RetryState()
    # Goal A fails alone twice while the API answers others: tentative, then confirmed.
    for _ in range(2):
        verdict = judge(breaker, policy, state, admitted(breaker), FAILED_503, now=0.0, age=1.0)
        assert verdict.retry_in is not None
        state = verdict.state
        assert not breaker.succeeded(admitted(breaker), 0.0)  # others delivered meanwhile
    assert (state.failures, state.strikes) == (2, 1)
    # Then an outage opens the breaker: A's pending strike is not confirmed, and any number
    # of failures while it is open count nothing.
    open_breaker(breaker)
    for now in range(1, 50):
        ticket = breaker.admit(float(now)) or Ticket(breaker.epoch)
        verdict = judge(breaker, policy, state, ticket, FAILED_503, now=float(now), age=float(now))
        assert verdict.retry_in is not None
        state = verdict.state
    assert (state.failures, state.strikes) == (51, 1)
    # Past the time budget the next transient failure ends it.
    verdict = judge(breaker, policy, state, Ticket(breaker.epoch), FAILED_503, now=60.0, age=3600.0)
    assert verdict.retry_in is None
    assert verdict.final is not None
    assert verdict.final.reason.startswith("gave up after 52 attempts, undelivered for 3600.0 s")


def test_a_goal_failing_alone_is_given_up_after_max_retries_isolated_failures() -> None:
    policy = RetryPolicy(max_retries=2, backoff_base=0.1, backoff_max=1.0)
    breaker = CircuitBreaker()
    state = RetryState()
    verdicts = []
    for _ in range(3):
        verdict = judge(breaker, policy, state, admitted(breaker), FAILED_503, now=0.0, age=1.0)
        state = verdict.state
        verdicts.append(verdict)
        assert not breaker.succeeded(admitted(breaker), 0.0)  # the API answers others
    assert verdicts[0].retry_in is not None
    assert verdicts[1].retry_in is not None
    assert verdicts[2].final is not None  # 3 attempts = 1 + max_retries, every one isolated
    reason = verdicts[2].final.reason
    assert reason.startswith("gave up after 3 attempts, failed 3 times while the API answered")


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
