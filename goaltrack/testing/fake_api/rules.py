"""The providers' create-goal and payments contracts as the fake enforces them: no state.

This module owns the ``PROVIDERS`` table (paths, key prefixes, visitor and session fields, name
rules, payment fields, error envelopes), the checks of one goal request's JSON body (name,
visitor, text fields, metadata, HTML removal from stored values) and of one payment's (amount,
currency, transaction id, the optional fields and their types), and the providers' success and
error bodies, a duplicate payment's included. The
rules are written from the providers' public contracts, independently of goaltrack's client-side
validation, so that the fake catches the client's mistakes instead of repeating them. A failed
check raises :class:`Rejection` with the status and message the provider would answer.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from typing import Literal

__all__ = [
    "CLI_GOALS_PATH",
    "GOALS_PATH",
    "PAYMENTS_PATH",
    "PROVIDERS",
    "CheckedGoal",
    "CheckedPayment",
    "PaymentRules",
    "ProviderRules",
    "Rejection",
    "check_goal_body",
    "check_payment_body",
    "check_provider",
    "error_body",
    "key_hint",
    "object_id",
    "parse_object",
    "payment_body",
    "success_body",
]

GOALS_PATH = "/api/v1/goals"
CLI_GOALS_PATH = "/analytics/api/v1/goals"  # what Flowsery's own CLI posts to
PAYMENTS_PATH = "/api/v1/payments"


@dataclass(frozen=True)
class PaymentRules:
    """What one provider's payments endpoint accepts: its body fields (aliases in order)."""

    amount: str
    currency: str
    transaction_id: str
    visitor: str
    session: str | None
    email: tuple[str, ...]
    name: tuple[str, ...]
    customer_id: str
    renewal: str
    refunded: str
    free_trial: str | None  # None: no such field (and no free trial inferred)
    timestamp: str | None
    success_message: str
    duplicate_message: str
    envelope_success: bool  # {"status":"success","data":[...]} rather than a plain object
    deletable: bool  # DELETE /api/v1/payments is documented


def _snake_case_payments(visitor: str) -> PaymentRules:
    return PaymentRules(
        amount="amount",
        currency="currency",
        transaction_id="transaction_id",
        visitor=visitor,
        session=None,
        email=("email", "customer_email"),
        name=("name", "customer_name"),
        customer_id="customer_id",
        renewal="renewal",
        refunded="refunded",
        free_trial="is_free_trial",
        timestamp="timestamp",
        success_message="Payment recorded successfully",
        duplicate_message="Duplicate payment: this transaction_id is already recorded",
        envelope_success=False,
        deletable=visitor == "datafast_visitor_id",
    )


@dataclass(frozen=True)
class ProviderRules:
    """What one provider's create-goal endpoint accepts, as the fake enforces it."""

    name: str
    goal_paths: tuple[str, ...]
    key_prefixes: tuple[str, ...]  # empty: any non-empty bearer key
    scoped_prefix: str | None  # a token of this prefix must name its website in the query
    scope_params: tuple[str, ...]  # the query parameters that can name it
    visitor_fields: tuple[str, ...]  # body fields holding the visitor id; the first present wins
    visitor_required: bool
    session_field: str | None
    name_pattern: re.Pattern[str]
    normalise_name: bool  # lowercase and spaces -> "_" before the pattern is checked
    reserved_names: frozenset[str]
    text_fields: tuple[str, ...]  # optional free-text fields, stored as sent
    needs_pageview: bool  # visitor unknown -> 404; visitor is a bot -> 400
    envelope: Literal["datafast", "nest"]  # error body: {"status":"error",...} or NestJS style
    success_message: str
    returns_event_id: bool
    rate_limited: bool  # FakeAPIState.flowsery_rate_limit applies
    created_status_configurable: bool  # FakeAPIState.flowsery_created_status applies
    payments: PaymentRules


PROVIDERS: dict[str, ProviderRules] = {
    "datafast": ProviderRules(
        name="datafast",
        goal_paths=(GOALS_PATH,),
        key_prefixes=("df_", "dft_"),
        scoped_prefix="dft_",
        scope_params=("websiteId",),
        visitor_fields=("datafast_visitor_id", "visitorId"),
        visitor_required=True,
        session_field=None,
        name_pattern=re.compile(r"[a-z0-9_:-]{1,64}"),
        normalise_name=True,
        reserved_names=frozenset({"identify"}),
        text_fields=("description",),
        needs_pageview=True,
        envelope="datafast",
        success_message="Custom event created successfully",
        returns_event_id=True,
        rate_limited=False,
        created_status_configurable=False,
        payments=_snake_case_payments("datafast_visitor_id"),
    ),
    "faurya": ProviderRules(
        name="faurya",
        goal_paths=(GOALS_PATH,),
        key_prefixes=(),
        scoped_prefix=None,
        scope_params=(),
        visitor_fields=("faurya_visitor_id",),
        visitor_required=True,
        session_field="faurya_session_id",
        name_pattern=re.compile(r"[a-z0-9_-]{1,64}"),
        normalise_name=False,
        reserved_names=frozenset(),
        text_fields=(),
        needs_pageview=True,
        envelope="datafast",
        success_message="Custom event created successfully",
        returns_event_id=True,
        rate_limited=False,
        created_status_configurable=False,
        payments=_snake_case_payments("faurya_visitor_id"),
    ),
    "flowsery": ProviderRules(
        name="flowsery",
        goal_paths=(GOALS_PATH, CLI_GOALS_PATH),
        key_prefixes=("flow_",),
        scoped_prefix="flow_ws_",
        scope_params=("websiteId", "domain"),
        visitor_fields=("visitorUid",),
        visitor_required=False,
        session_field="sessionUid",
        name_pattern=re.compile(r"[a-z0-9_-]{1,64}"),
        normalise_name=False,
        reserved_names=frozenset(),
        text_fields=("timezone",),
        needs_pageview=False,
        envelope="nest",
        success_message="Goal created successfully",
        returns_event_id=False,
        rate_limited=True,
        created_status_configurable=True,
        payments=PaymentRules(
            amount="amount",
            currency="currency",
            transaction_id="transactionId",
            visitor="visitorUid",
            session="sessionUid",
            email=("email",),
            name=("name",),
            customer_id="customerId",
            renewal="isRenewal",
            refunded="isRefund",
            free_trial=None,
            timestamp=None,
            success_message="Payment recorded successfully",
            duplicate_message="Payment already recorded (duplicate transactionId)",
            envelope_success=True,
            deletable=False,
        ),
    ),
}

# Metadata rules, the same for every provider.
METADATA_MAX_KEYS = 10
METADATA_KEY = re.compile(r"[a-z0-9_-]{1,64}")
# Counted in UTF-16 code units, as the providers' JavaScript backends count String.length.
METADATA_VALUE_MAX = 255
RATE_LIMIT_WINDOW_S = 60.0
# HTML and script removal for stored metadata values, applied in this order until nothing changes.
_SANITISERS = (
    re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL),
    re.compile(r"<[^>]*>"),
    re.compile(r"[<>'\"&]"),
    re.compile(r"javascript:", re.IGNORECASE),
    re.compile(r"\bon\w+\s*=", re.IGNORECASE),
)


class Rejection(Exception):
    """A goal request refused: the status, message and headers the provider answers with."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: Mapping[str, str] | None = None,
        fault: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.fault = fault


@dataclass(frozen=True)
class CheckedGoal:
    """The fields of a goal body that passed the provider's checks, as the provider stores them."""

    name: str
    visitor_id: str | None
    session_id: str | None
    texts: dict[str, str | None]  # the provider's text_fields
    metadata: dict[str, str]


def check_goal_body(rules: ProviderRules, body: Mapping[str, object]) -> CheckedGoal:
    """Check a parsed goal body against ``rules``; raise :class:`Rejection` on the first fault."""
    visitor = _visitor(rules, body)
    session = _optional_string(body, rules.session_field) if rules.session_field else None
    name = _goal_name(rules, body.get("name"))
    texts = {field: _optional_string(body, field) for field in rules.text_fields}
    return CheckedGoal(name, visitor, session, texts, _metadata(body.get("metadata")))


@dataclass(frozen=True)
class CheckedPayment:
    """The fields of a payment body that passed the provider's checks, as it stores them."""

    amount: float
    currency: str
    transaction_id: str
    visitor_id: str | None
    session_id: str | None
    email: str | None
    name: str | None
    customer_id: str | None
    renewal: bool
    refunded: bool
    free_trial: bool
    timestamp: str | None


_CURRENCY = re.compile(r"[A-Za-z]{3}")


def check_payment_body(rules: PaymentRules, body: Mapping[str, object]) -> CheckedPayment:
    """Check a parsed payment body; raise :class:`Rejection` (400) on the first fault."""
    amount = body.get(rules.amount)
    if amount is None:
        raise Rejection(400, f"{rules.amount} is required")
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        raise Rejection(400, f"{rules.amount} must be a number")
    if not math.isfinite(amount) or amount < 0:
        raise Rejection(400, f"{rules.amount} must be a number >= 0")
    currency = body.get(rules.currency)
    if currency is None:
        raise Rejection(400, f"{rules.currency} is required")
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise Rejection(400, f"{rules.currency} must be a 3-letter ISO 4217 code")
    transaction_id = body.get(rules.transaction_id)
    if transaction_id is None:
        raise Rejection(400, f"{rules.transaction_id} is required")
    if not isinstance(transaction_id, str) or not transaction_id.strip():
        raise Rejection(400, f"{rules.transaction_id} must be a non-empty string")
    timestamp = _optional_string(body, rules.timestamp) if rules.timestamp else None
    if timestamp is not None:
        try:
            datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
        except ValueError:
            raise Rejection(400, f"{rules.timestamp} must be an ISO 8601 date") from None
    free_trial = amount == 0
    if rules.free_trial is not None:
        given = _optional_bool(body, rules.free_trial)
        free_trial = free_trial if given is None else given
    return CheckedPayment(
        amount=float(amount),
        currency=currency.upper(),
        transaction_id=transaction_id,
        visitor_id=_optional_string(body, rules.visitor) or None,
        session_id=(_optional_string(body, rules.session) or None) if rules.session else None,
        email=_first_string(body, rules.email),
        name=_first_string(body, rules.name),
        customer_id=_optional_string(body, rules.customer_id),
        renewal=bool(_optional_bool(body, rules.renewal)),
        refunded=bool(_optional_bool(body, rules.refunded)),
        free_trial=free_trial,
        timestamp=timestamp,
    )


def _optional_bool(body: Mapping[str, object], field: str) -> bool | None:
    value = body.get(field)
    if value is None or isinstance(value, bool):
        return value
    raise Rejection(400, f"{field} must be a boolean")


def _first_string(body: Mapping[str, object], fields: tuple[str, ...]) -> str | None:
    for field in fields:
        value = _optional_string(body, field)
        if value is not None:
            return value
    return None


def payment_body(rules: PaymentRules, transaction_id: str, *, duplicate: bool) -> dict[str, object]:
    """The answer to a payment recorded now, or (*duplicate*) recorded before."""
    message = rules.duplicate_message if duplicate else rules.success_message
    if rules.envelope_success:
        return {"status": "success", "data": [{"message": message}]}
    return {"message": message, "transaction_id": transaction_id}


def _reject_constant(constant: str) -> object:
    raise ValueError(f"{constant} is not JSON")


def parse_object(raw: bytes) -> dict[str, object]:
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise Rejection(400, "Invalid JSON body") from exc
    if not isinstance(body, dict):
        raise Rejection(400, "Invalid JSON body: expected an object")
    return body


def _optional_string(body: Mapping[str, object], field: str) -> str | None:
    value = body.get(field)
    if value is None or isinstance(value, str):
        return value
    raise Rejection(400, f"{field} must be a string")


def _visitor(rules: ProviderRules, body: Mapping[str, object]) -> str | None:
    for field in rules.visitor_fields:
        value = _optional_string(body, field)
        if value is not None:
            if rules.visitor_required and not value:
                raise Rejection(400, f"{field} must not be empty")
            return value
    if rules.visitor_required:
        raise Rejection(400, f"{rules.visitor_fields[0]} is required")
    return None


def _goal_name(rules: ProviderRules, value: object) -> str:
    if value is None:
        raise Rejection(400, "name is required")
    if not isinstance(value, str):
        raise Rejection(400, "name must be a string")
    name = value.lower().replace(" ", "_") if rules.normalise_name else value
    if not rules.name_pattern.fullmatch(name):
        raise Rejection(
            400, f"invalid goal name {value!r}: must match ^{rules.name_pattern.pattern}$"
        )
    if name in rules.reserved_names:
        raise Rejection(400, f"invalid goal name {value!r}: {name!r} is reserved")
    return name


def _metadata_text(value: object) -> str | None:
    """A metadata value as the providers store it, or None when its type is not allowed."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # As JavaScript's String(): 2.0 -> "2".
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    if isinstance(value, str):
        return value
    return None


def _sanitise(text: str) -> str:
    """Remove HTML and script content from a metadata value."""
    previous = None
    while previous != text:
        previous = text
        for pattern in _SANITISERS:
            text = pattern.sub("", text)
    return text


def _metadata(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Rejection(400, "invalid metadata: must be an object")
    if len(value) > METADATA_MAX_KEYS:
        raise Rejection(
            400, f"invalid metadata: {len(value)} keys, at most {METADATA_MAX_KEYS} allowed"
        )
    stored: dict[str, str] = {}
    for key, item in value.items():
        if not METADATA_KEY.fullmatch(key):
            raise Rejection(400, f"invalid metadata key {key!r}: must match ^[a-z0-9_-]{{1,64}}$")
        text = _metadata_text(item)
        if text is None:
            raise Rejection(
                400, f"invalid metadata value for {key!r}: must be a string, number or boolean"
            )
        if len(text.encode("utf-16-le")) // 2 > METADATA_VALUE_MAX:
            raise Rejection(
                400, f"invalid metadata value for {key!r}: longer than {METADATA_VALUE_MAX} chars"
            )
        stored[key] = _sanitise(text)
    return stored


def error_body(rules: ProviderRules, status: int, message: str) -> dict[str, object]:
    if rules.envelope == "datafast":
        return {"status": "error", "error": {"code": status, "message": message}}
    return {"statusCode": status, "message": message, "error": HTTPStatus(status).phrase}


def success_body(rules: ProviderRules, event_id: str | None) -> dict[str, object]:
    item: dict[str, object] = {"message": rules.success_message}
    if event_id is not None:
        item["eventId"] = event_id
    return {"status": "success", "data": [item]}


_KNOWN_PREFIXES = ("flow_ws_", "flow_", "dft_", "df_")


def key_hint(key: str) -> str:
    prefix = next((p for p in _KNOWN_PREFIXES if key.startswith(p)), "")
    rest = key[len(prefix) :]
    # Short keys get no tail: four characters of a short key give too much of it away.
    return f"{prefix}…{rest[-4:]}" if len(rest) >= 12 else f"{prefix}…"


def check_provider(provider: str) -> None:
    if provider not in PROVIDERS:
        raise ValueError(f"unknown provider {provider!r}; known: {', '.join(PROVIDERS)}")


def object_id() -> str:
    """A fresh MongoDB-ObjectId-like id: 4 bytes of time, then 8 random bytes, as 24 hex."""
    return f"{int(time.time()) & 0xFFFFFFFF:08x}{uuid.uuid4().hex[:16]}"
