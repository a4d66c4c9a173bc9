"""One goal -> one HTTP request -> one outcome: delivered, retry later, or finally failed.

Every transport (background worker, sync, and later the outbox and Celery) delivers through
:func:`deliver` so the failure rules are the same everywhere: 429 (unless the provider says it
is final), 408, 5xx, timeouts and connection errors are worth retrying; other 4xx are final.
"""

from __future__ import annotations

import email.utils
import enum
import ipaddress
import json
import random
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from goaltrack.goals import Goal
from goaltrack.http_client import HttpClient, HttpError, HttpResponse
from goaltrack.providers import Provider

__all__ = [
    "DeliveryResult",
    "Endpoint",
    "InvalidConfiguration",
    "Outcome",
    "RetryGate",
    "RetryPolicy",
    "backoff_delay",
    "deliver",
    "probe",
]

_USER_AGENT = "goaltrack-python/0.1"
_MAX_REASON_CHARS = 300


class InvalidConfiguration(ValueError):
    """The tracker's configuration cannot work (unknown provider, plain-http URL, missing id)."""


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What one attempt at delivering a goal came to."""

    outcome: Outcome
    reason: str
    """The provider's message, or what went wrong on the way."""
    status: int | None = None
    event_id: str | None = None
    retry_after: float | None = None
    """Seconds the API asked us to wait (``Retry-After``), when it did."""
    may_have_arrived: bool = False
    """The request may have reached the API although no answer came back (timeouts)."""


class Endpoint:
    """Where and how to POST goals for one tracker: URL, query and the auth header.

    Holds the API key; its repr never shows it.
    """

    __slots__ = ("_headers", "provider", "url")

    def __init__(
        self, provider: Provider, api_key: str, api_url: str | None, website_id: str | None
    ) -> None:
        self.provider = provider
        base = (api_url or provider.default_api_url).rstrip("/")
        check_api_url(base)
        url = base + provider.goals_path
        if website_id:
            url += "?" + urlencode({provider.website_query_param: website_id})
        self.url = url
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": _USER_AGENT,
        }

    def __repr__(self) -> str:
        return f"Endpoint({self.url!r}, key=<redacted>)"


def check_api_url(url: str) -> None:
    """Refuse URLs that would send the API key in clear text to another machine."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return
    if parts.scheme == "http":
        raise InvalidConfiguration(
            f"api_url {url!r} is plain http to a non-loopback host: the API key would travel "
            "in clear text; use https (plain http is accepted only for 127.0.0.1/localhost)"
        )
    raise InvalidConfiguration(f"api_url {url!r} must be an absolute https:// URL")


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def deliver(goal: Goal, endpoint: Endpoint, http: HttpClient) -> DeliveryResult:
    """Make one attempt at delivering *goal*; never raises for anything the network or API does."""
    body = json.dumps(goal.body(), separators=(",", ":"), ensure_ascii=False).encode()
    try:
        response = http.post(endpoint.url, endpoint._headers, body)
    except HttpError as exc:
        return DeliveryResult(Outcome.RETRY, str(exc), may_have_arrived=exc.may_have_arrived)
    return classify(response, endpoint.provider)


def classify(response: HttpResponse, provider: Provider) -> DeliveryResult:
    """Turn the API's answer into an outcome, with the provider's own reason."""
    status = response.status
    if 200 <= status < 300:
        return DeliveryResult(
            Outcome.DELIVERED, "delivered", status=status, event_id=_event_id(response.body)
        )
    reason = f"HTTP {status}: {_error_message(response.body)}"
    if 300 <= status < 400:
        reason += " (redirects are not followed: point api_url at the final location)"
        return DeliveryResult(Outcome.FAILED, reason, status=status)
    if status in provider.final_statuses:
        return DeliveryResult(Outcome.FAILED, reason, status=status)
    if status in (408, 429) or status >= 500:
        return DeliveryResult(
            Outcome.RETRY,
            reason,
            status=status,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
            may_have_arrived=status >= 500,
        )
    return DeliveryResult(Outcome.FAILED, reason, status=status)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff, "equal jitter": half to all of ``base * 2**(attempt-1)``, capped."""
    ceiling = min(cap, base * 2.0 ** max(0, attempt - 1))
    jitter: float = (rng or random).uniform(0, ceiling / 2)
    return ceiling / 2 + jitter


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _event_id(body: bytes) -> str | None:
    # The success body's ``data`` is a list on most pages, an object on some: accept both.
    data = _json(body)
    if not isinstance(data, dict):
        return None
    payload = data.get("data")
    if isinstance(payload, list) and payload:
        payload = payload[0]
    if isinstance(payload, dict):
        event_id = payload.get("eventId")
        return str(event_id) if event_id is not None else None
    return None


def _error_message(body: bytes) -> str:
    """The provider's reason from either error envelope, else the start of the body."""
    data = _json(body)
    message: object = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):  # {"status":"error","error":{"code":400,"message":"…"}}
            message = error.get("message")
        if message is None:  # {"statusCode":400,"message":"…" or ["…"],"error":"Bad Request"}
            message = data.get("message")
            if isinstance(message, list):
                message = "; ".join(str(m) for m in message)
            if message is None and isinstance(error, str):
                message = error
    if message is None:
        message = body[:_MAX_REASON_CHARS].decode("utf-8", "replace").strip() or "(empty body)"
    return str(message)[:_MAX_REASON_CHARS]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry a goal whose delivery failed transiently."""

    max_retries: int = 10
    """Retries after the first attempt; then the goal has finally failed."""
    backoff_base: float = 0.5
    backoff_max: float = 60.0

    def delay_before_retry(self, attempts_made: int, result: DeliveryResult) -> float | None:
        """Seconds to wait before the next attempt, or None to give up."""
        if attempts_made > self.max_retries:
            return None
        if result.retry_after is not None:
            return result.retry_after
        return backoff_delay(attempts_made, self.backoff_base, self.backoff_max)

    @staticmethod
    def gave_up(attempts_made: int, last: DeliveryResult) -> DeliveryResult:
        """The final failure of a goal whose retries ran out."""
        return DeliveryResult(
            Outcome.FAILED,
            f"gave up after {attempts_made} attempts; last: {last.reason}",
            status=last.status,
        )


class RetryGate:
    """When the workers of one transport may next send anything at all.

    A 429's ``Retry-After`` closes the gate for every request; so does a run of transient
    failures (the API looks down: it is then probed, not hammered). Not thread-safe: callers hold
    their transport's lock.
    """

    FAILURES_BEFORE_CLOSING = 3

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self.not_before = 0.0
        """``time.monotonic()`` before which nothing should be sent."""
        self._failures_in_a_row = 0

    def succeeded(self) -> None:
        self._failures_in_a_row = 0

    def failed(self, result: DeliveryResult, now: float) -> None:
        self._failures_in_a_row += 1
        closed_for = 0.0
        if result.retry_after is not None:
            closed_for = result.retry_after  # the API asked every request to wait
        elif self._failures_in_a_row >= self.FAILURES_BEFORE_CLOSING:
            closed_for = backoff_delay(
                self._failures_in_a_row - self.FAILURES_BEFORE_CLOSING + 1,
                self._policy.backoff_base,
                self._policy.backoff_max,
            )
        self.not_before = max(self.not_before, now + closed_for)


def probe(endpoint: Endpoint, http: HttpClient) -> tuple[bool, str]:
    """Check that the API is reachable and takes the key, without recording anything.

    Posts an empty goal: an API that checks auth first answers 400 (the key is fine, the goal
    is not), 401/403 when the key is refused.
    """
    try:
        response = http.post(endpoint.url, endpoint._headers, b"{}")
    except HttpError as exc:
        return False, f"{endpoint.url} is not reachable: {exc}"
    status = response.status
    if status in (400, 422):
        return (
            True,
            f"{endpoint.url} is reachable and accepted the key (HTTP {status} for a test goal)",
        )
    if status in (401, 403):
        return (
            False,
            f"{endpoint.url} refused the key: HTTP {status}: {_error_message(response.body)}",
        )
    if 200 <= status < 300:
        return True, f"{endpoint.url} is reachable and accepted the key (HTTP {status})"
    return False, f"{endpoint.url} answered HTTP {status}: {_error_message(response.body)}"
