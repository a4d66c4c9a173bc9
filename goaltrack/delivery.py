"""One exchange with the API, and how its answer is read: what every transport sends and hears.

- Where to: :class:`Endpoint` (URL, query, auth header; its repr hides the key; ``url`` is the
  goals endpoint, which names the destination, :meth:`Endpoint.url_for` any path), whose URL
  :func:`check_api_url` accepts only over https, or plain http to a loopback host
  (:func:`is_loopback`).
- One attempt: :func:`deliver` (one HTTP request, never raising for anything the network or API
  does; :func:`request_for` builds the request and :func:`result_of` reads its answer, for a
  client that is not an :class:`~goaltrack.http_client.HttpPoster`) and :func:`classify`,
  which reads the answer into a :class:`DeliveryResult`: 2xx delivered; 429 (unless the
  provider says it is final), 408, 5xx, timeouts and connection errors worth retrying, with
  the ``Retry-After`` read by :func:`parse_retry_after`; 401 and 403 (:data:`REFUSED_STATUSES`,
  a refused key) an outage of the account; other 4xx and 3xx final.
  For an idempotent item (a payment), an answer saying the API has it already (a "duplicate"
  message, or 409) is delivered, with ``duplicate`` set.
  Every reason built from an API answer or a network error goes through
  :func:`goaltrack.redaction.redact`.
- A check: :func:`probe` says whether the API is reachable and takes the key, recording nothing.

What becomes of a result (retries, the circuit breaker, giving a goal up) is
:mod:`goaltrack.retry`'s. That module reads this one's results; this one knows nothing of it.
"""

from __future__ import annotations

import dataclasses
import email.utils
import enum
import ipaddress
import json
import math
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from goaltrack.http_client import HttpError, HttpPoster, HttpResponse
from goaltrack.providers import Provider
from goaltrack.redaction import key_fingerprint, redact, remember_secret

if TYPE_CHECKING:
    from goaltrack.items import Tracked

__all__ = [
    "REFUSED_STATUSES",
    "DeliveryResult",
    "Endpoint",
    "InvalidConfiguration",
    "Outcome",
    "deliver",
    "is_loopback",
    "probe",
    "request_for",
    "result_of",
]


_USER_AGENT = "goaltrack-python/0.1"
_MAX_REASON_CHARS = 300

REFUSED_STATUSES = frozenset({401, 403})
"""The API refused the key: an outage of the account, not a fault of one goal."""


_REFUSED_ADVICE = {
    401: (
        "check the API key (is it the current one, and a key of this provider?) and the website id"
    ),
    403: (
        "the key lacks a permission or tracking is suspended for this website: check the key's "
        "permissions, that it belongs to this provider, and the website id"
    ),
}


class InvalidConfiguration(ValueError):
    """The tracker's configuration cannot work (unknown provider, plain-http URL, missing id)."""


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"


@dataclasses.dataclass(frozen=True, slots=True)
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
    duplicate: bool = False
    """Delivered: the API had this payment's transaction id already (a resend after a timeout,
    or the same transaction tracked twice)."""


class Endpoint:
    """Where and how to POST goals for one tracker: URL, query and the auth header.

    Holds the API key; its repr never shows it.
    """

    __slots__ = ("_base", "_headers", "_query", "_urls", "key_fp", "provider", "url")

    def __init__(
        self, provider: Provider, api_key: str, api_url: str | None, website_id: str | None
    ) -> None:
        remember_secret(api_key)
        self.provider = provider
        self.key_fp = key_fingerprint(api_key)
        """The key's fingerprint (:func:`~goaltrack.redaction.key_fingerprint`), never the key."""
        base = (api_url or provider.default_api_url).rstrip("/")
        check_api_url(base)
        self._base = base
        self._query = (
            "?" + urlencode({provider.website_query_param: website_id}) if website_id else ""
        )
        self._urls: dict[str, str] = {}
        self.url = self.url_for(provider.goals_path)
        """The goals endpoint: it names the destination (breakers, outbox rows, log lines)."""
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": _USER_AGENT,
        }

    def url_for(self, path: str) -> str:
        """The URL of the endpoint at *path* (``item.path``), with the website's query."""
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = self._base + path + self._query
        return url

    def __repr__(self) -> str:
        return f"Endpoint({self.url!r}, key=<redacted>)"


def check_api_url(url: str) -> None:
    """Refuse URLs that would send the API key in clear text to another machine."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return
    if parts.scheme == "http":
        raise InvalidConfiguration(
            f"api_url {url!r} is plain http to a non-loopback host: the API key would travel "
            "in clear text; use https (plain http is accepted only for 127.0.0.1/localhost)"
        )
    raise InvalidConfiguration(f"api_url {url!r} must be an absolute https:// URL")


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1); nothing else.

    Not ``*.localhost``: such a name is resolved by whatever resolver the host uses, and may
    well leave the machine.
    """
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def deliver(
    item: Tracked, endpoint: Endpoint, http: HttpPoster, *, deadline: float | None = None
) -> DeliveryResult:
    """Make one attempt at delivering *item* (a goal or a payment); never raises for anything
    the network or API does.

    The attempt takes at most the client's ``timeout``, or until *deadline*
    (``time.monotonic()``) if sooner.
    """
    url, headers, body = request_for(item, endpoint)
    try:
        response = http.post(url, headers, body, deadline=deadline)
    except HttpError as exc:
        return result_of(item, endpoint, exc)
    return result_of(item, endpoint, response)


def request_for(item: Tracked, endpoint: Endpoint) -> tuple[str, Mapping[str, str], bytes]:
    """The POST that delivers *item*: URL, headers (the key's among them) and body."""
    body = json.dumps(item.body(), separators=(",", ":"), ensure_ascii=False).encode()
    return endpoint.url_for(item.path), endpoint._headers, body


def result_of(
    item: Tracked, endpoint: Endpoint, answer: HttpResponse | HttpError
) -> DeliveryResult:
    """What the API's *answer* to :func:`request_for`'s request (or the failure to get one)
    means for *item*: the one reading of an attempt, whichever client made it."""
    if isinstance(answer, HttpError):
        return DeliveryResult(
            Outcome.RETRY, redact(str(answer)), may_have_arrived=answer.may_have_arrived
        )
    result = classify(answer, endpoint.provider)
    if item.idempotent:
        return _idempotent_answer(result, answer)
    return result


def _idempotent_answer(result: DeliveryResult, response: HttpResponse) -> DeliveryResult:
    """A payment's answer: one saying the transaction is recorded already is its delivery."""
    if result.outcome is Outcome.DELIVERED:
        if _DUPLICATE.search(_success_message(response.body)):
            return dataclasses.replace(result, reason="delivered (a duplicate)", duplicate=True)
        return result
    if response.status == 409:  # Conflict: the transaction id is taken, by this payment
        return DeliveryResult(
            Outcome.DELIVERED,
            f"delivered (a duplicate: {result.reason})",
            status=409,
            duplicate=True,
        )
    return result


_DUPLICATE = re.compile(r"duplicate|already", re.IGNORECASE)


def _success_message(body: bytes) -> str:
    """The message of a success body: ``{"message": ...}`` or ``{"data": [{"message": ...}]}``."""
    data = _json(body)
    if not isinstance(data, dict):
        return ""
    payload = data.get("data")
    if isinstance(payload, list) and payload:
        payload = payload[0]
    for holder in (data, payload):
        if isinstance(holder, dict) and isinstance(holder.get("message"), str):
            return str(holder["message"])
    return ""


def classify(response: HttpResponse, provider: Provider) -> DeliveryResult:
    """Turn the API's answer into an outcome, with the provider's own reason."""
    status = response.status
    if 200 <= status < 300:
        return DeliveryResult(
            Outcome.DELIVERED, "delivered", status=status, event_id=_event_id(response.body)
        )
    reason = redact(f"HTTP {status}: {_error_message(response.body)}")
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


def parse_retry_after(
    value: str | None, now: float | None = None, *, cap: float | None = None
) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    Defensive: whatever the server sends, this returns a finite number of seconds from 0 to
    *cap* (when given), or None (then the caller's own backoff applies): negative, NaN,
    infinite, absurdly large or unparseable values are None, never an exception. A date in the
    past is 0.
    """
    if not value:
        return None
    try:
        value = str(value).strip()
        seconds: float | None
        try:
            seconds = float(value)
        except ValueError:
            seconds = None
        if seconds is None:
            when = email.utils.parsedate_to_datetime(value)
            seconds = max(0.0, when.timestamp() - (time.time() if now is None else now))
        elif seconds < 0:
            return None
    except (TypeError, ValueError, OverflowError, OSError, IndexError):
        return None
    if not math.isfinite(seconds) or seconds > _RETRY_AFTER_ABSURD:
        return None
    if cap is not None:
        seconds = min(seconds, cap)
    return seconds


# Longer than any backoff anyone configures: a server asking for this is not making sense.
_RETRY_AFTER_ABSURD = 7 * 24 * 3600.0


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
        message = body.decode("utf-8", "replace").strip() or "(empty body)"
    # Redacted before it is cut: a key cut in half would no longer be recognized.
    return redact(message, limit=_MAX_REASON_CHARS)


def probe(endpoint: Endpoint, http: HttpPoster) -> tuple[bool, str]:
    """Check that the API is reachable and takes the key, without recording anything.

    Posts an empty goal: an API that checks auth first answers 400 (the key is fine, the goal
    is not), 401/403 when the key is refused.
    """
    try:
        response = http.post(endpoint.url, endpoint._headers, b"{}")
    except HttpError as exc:
        return False, redact(f"{endpoint.url} is not reachable: {exc}")
    status = response.status
    if status in (400, 422):
        return (
            True,
            f"{endpoint.url} is reachable and accepted the key; it refused the empty test goal "
            f"(HTTP {status}), as it should, so nothing was recorded",
        )
    if status in (401, 403):
        return (
            False,
            redact(
                f"{endpoint.url} refused the key: HTTP {status}: "
                f"{_error_message(response.body)}; {_REFUSED_ADVICE[status]}",
                limit=None,
            ),
        )
    if 200 <= status < 300:
        return True, f"{endpoint.url} is reachable and accepted the key (HTTP {status})"
    return False, redact(f"{endpoint.url} answered HTTP {status}: {_error_message(response.body)}")
