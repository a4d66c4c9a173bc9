"""Payments (revenue attribution) and their rules: the one place where a payment is validated.

:meth:`Payment.create` applies the provider's payment rules (field names in
:class:`~goaltrack.providers.PaymentFields`) in the caller's thread, as :meth:`Goal.create
<goaltrack.Goal.create>` does for goals: a payment the API would refuse is an
:class:`InvalidPayment` at the call site. A :class:`Payment` travels through the same transports
as a goal; what sets it apart there is ``idempotent``: the API records a transaction id once, so
a payment resent after a timeout is not a possible duplicate, and a "duplicate" answer means it
was recorded.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar, TypedDict

from goaltrack.goals import InvalidGoal, _check_encodable
from goaltrack.providers import Provider

__all__ = ["Amount", "InvalidPayment", "Payment", "PaymentOptions"]

#: What an amount may be given as.
Amount = Decimal | int | float

#: The largest amount a JSON number carries exactly to the providers' JavaScript backends.
MAX_AMOUNT = 2**53 - 1
TEXT_MAX_CHARS = 255
_CURRENCY = re.compile(r"[A-Z]{3}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class PaymentOptions(TypedDict, total=False):
    """The keyword arguments of every ``track_payment``, after amount, currency and id."""

    visitor_id: str | None
    session_id: str | None
    email: str | None
    name: str | None
    customer_id: str | None
    renewal: bool
    refunded: bool
    free_trial: bool | None
    timestamp: _dt.datetime | str | None


class InvalidPayment(InvalidGoal):
    """A payment the provider's API would refuse; the message names the value and the rule.

    A subclass of :class:`~goaltrack.InvalidGoal`, so that code handling invalid tracking
    handles both.
    """


@dataclass(slots=True)
class Payment:
    """A validated payment for one provider, ready to be delivered as is.

    Build one with :meth:`Payment.create` (or ``tracker.track_payment(...)``); treat it as
    immutable, and change it with :meth:`replace` (in ``before_send``). ``customer_email`` and
    ``customer_name`` are personal data: goaltrack never logs them.
    """

    kind: ClassVar[str] = "payment"
    idempotent: ClassVar[bool] = True
    """The API records a transaction id once: resending a payment cannot count it twice."""

    provider: Provider
    amount: int | float
    """The amount as sent: a JSON number (an integral amount as an int)."""
    currency: str
    """An ISO 4217 code, upper case."""
    transaction_id: str
    visitor_id: str | None = None
    session_id: str | None = None
    customer_email: str | None = None
    customer_name: str | None = None
    customer_id: str | None = None
    renewal: bool = False
    refunded: bool = False
    free_trial: bool | None = None
    timestamp: str | None = None
    """ISO 8601 in UTC (``2026-01-31T12:00:00.000Z``), or None: when the API receives it."""

    @classmethod
    def create(
        cls,
        provider: Provider,
        amount: Amount,
        currency: str,
        transaction_id: str,
        *,
        visitor_id: str | None = None,
        session_id: str | None = None,
        email: str | None = None,
        name: str | None = None,
        customer_id: str | None = None,
        renewal: bool = False,
        refunded: bool = False,
        free_trial: bool | None = None,
        timestamp: _dt.datetime | str | None = None,
    ) -> Payment:
        """Validate and normalize with the provider's rules; raise :class:`InvalidPayment`.

        *amount* a finite number ≥ 0 (``Decimal``, ``int`` or ``float``; 0 is a free trial);
        *currency* an ISO 4217 code (``"usd"`` becomes ``"USD"``); *transaction_id* the payment
        provider's id, the same for a refund of it. *visitor_id* is optional (without it the
        payment is recorded but attributed to no visitor); *session_id* is sent where the API
        takes one (Flowsery). *free_trial* and *timestamp* (an aware ``datetime`` or an ISO 8601
        string) are DataFast's and Faurya's fields.
        """
        fields = provider.payment_fields
        return cls(
            provider,
            _check_amount(amount),
            _check_currency(currency),
            _check_transaction_id(transaction_id),
            _check_visitor_id(provider, visitor_id),
            _check_session_id(provider, session_id) if fields.session else None,
            _check_email(email),
            _check_text(name, "name", "a customer name"),
            _check_text(customer_id, "customer_id", "a customer id"),
            _check_flag(renewal, "renewal"),
            _check_flag(refunded, "refunded"),
            _check_free_trial(provider, free_trial),
            _check_timestamp(provider, timestamp),
        )

    def replace(self, **changes: Any) -> Payment:
        """A copy with *changes* (``customer_email=None``, ...), for ``before_send`` hooks; the
        tracker validates the copy again before sending it."""
        return dataclasses.replace(self, **changes)

    @property
    def path(self) -> str:
        """The endpoint's path, after the API's base URL."""
        return self.provider.payments_path

    @property
    def label(self) -> str:
        """The payment in a log line, without personal data: ``payment 'ch_1' (29 USD)``."""
        return f"payment {self.transaction_id!r} ({self.amount} {self.currency})"

    def describe(self) -> str:
        """The payment for the debug log: everything but the customer's email and name."""
        flags = [
            flag
            for flag, on in (
                ("renewal", self.renewal),
                ("refund", self.refunded),
                ("free trial", self.free_trial),
            )
            if on
        ]
        session = f" session {self.session_id!r}" if self.session_id is not None else ""
        return (
            f"{self.provider.name} payment {self.transaction_id!r} of {self.amount} "
            f"{self.currency} for visitor {self.visitor_id!r}{session}"
            f" customer {self.customer_id!r}" + (f" ({', '.join(flags)})" if flags else "")
        )

    def body(self) -> dict[str, Any]:
        """The JSON body the provider's payments endpoint takes."""
        fields = self.provider.payment_fields
        body: dict[str, Any] = {
            fields.amount: self.amount,
            fields.currency: self.currency,
            fields.transaction_id: self.transaction_id,
        }
        optional: tuple[tuple[str | None, object], ...] = (
            (fields.visitor, self.visitor_id),
            (fields.session, self.session_id),
            (fields.email, self.customer_email),
            (fields.name, self.customer_name),
            (fields.customer_id, self.customer_id),
            (fields.renewal, self.renewal or None),
            (fields.refunded, self.refunded or None),
            (fields.free_trial, self.free_trial),
            (fields.timestamp, self.timestamp),
        )
        for field, value in optional:
            if field is not None and value is not None:
                body[field] = value
        return body

    def __repr__(self) -> str:
        email = "<set>" if self.customer_email else None
        return (
            f"Payment(provider={self.provider.name!r}, amount={self.amount!r}, "
            f"currency={self.currency!r}, transaction_id={self.transaction_id!r}, "
            f"visitor_id={self.visitor_id!r}, customer_email={email}, "
            f"renewal={self.renewal}, refunded={self.refunded})"
        )


def _check_amount(amount: object) -> int | float:
    if type(amount) is int and 0 <= amount <= MAX_AMOUNT:
        return amount
    rule = f"a finite number from 0 to {MAX_AMOUNT} (Decimal, int or float; 0 is a free trial)"
    if isinstance(amount, bool) or not isinstance(amount, (int, float, Decimal)):
        hint = ""
        if isinstance(amount, str):
            hint = f"; pass a number, e.g. Decimal({amount[:40]!r})"
        raise InvalidPayment(
            f"payment amount must be a number, got {type(amount).__name__}{hint}",
            field="amount",
            rule=rule,
        )
    if isinstance(amount, Decimal):
        if not amount.is_finite():
            raise InvalidPayment(
                f"payment amount {amount} is not finite", field="amount", rule=rule
            )
        number: int | float = int(amount) if amount == amount.to_integral_value() else float(amount)
    elif isinstance(amount, float):
        if not math.isfinite(amount):
            raise InvalidPayment(
                f"payment amount {amount} is not finite", field="amount", rule=rule
            )
        number = int(amount) if amount.is_integer() else amount
    else:
        number = amount
    if number < 0:
        raise InvalidPayment(
            f"payment amount {amount} is negative (a refund is the original amount with "
            "refunded=True)",
            field="amount",
            rule=rule,
        )
    if number > MAX_AMOUNT:
        raise InvalidPayment(f"payment amount {amount} is too large", field="amount", rule=rule)
    return number


def _check_currency(currency: object) -> str:
    known = _known_currencies.get(currency) if type(currency) is str else None
    if known is not None:
        return known
    rule = "an ISO 4217 currency code: three letters, such as USD or EUR"
    if not isinstance(currency, str):
        raise InvalidPayment(
            f"currency must be a string, got {type(currency).__name__}", field="currency", rule=rule
        )
    code = currency.upper()
    if _CURRENCY.fullmatch(code) is None:
        raise InvalidPayment(f"invalid currency {currency[:40]!r}", field="currency", rule=rule)
    if len(_known_currencies) < 1024:
        _known_currencies[currency] = code
    return code


#: Currency codes already checked, as given -> as sent: apps use one or a few.
_known_currencies: dict[str, str] = {}


def _check_text(value: object, field: str, what: str, *, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if type(value) is str and 0 < len(value) <= TEXT_MAX_CHARS and value.isalnum():
        return value  # the common case (ids): nothing else to check
    rule = (
        f"{what} is a non-empty string of at most {TEXT_MAX_CHARS} characters, "
        "without control characters"
    )
    if not isinstance(value, str):
        got = "nothing" if value is None else type(value).__name__
        raise InvalidPayment(f"{what} must be a string, got {got}", field=field, rule=rule)
    if not value.strip() or len(value) > TEXT_MAX_CHARS or _CONTROL.search(value):
        raise InvalidPayment(f"invalid {what} {value[:80]!r}", field=field, rule=rule)
    if not value.isascii():
        _check_encodable(value, what, field)
    return value


def _check_transaction_id(transaction_id: object) -> str:
    checked = _check_text(transaction_id, "transaction_id", "a transaction id", required=True)
    assert checked is not None  # required: None raised
    return checked


def _check_email(email: object) -> str | None:
    checked = _check_text(email, "email", "an email address")
    if checked is not None and _EMAIL.fullmatch(checked) is None:
        raise InvalidPayment(
            "invalid email address",  # not echoed: it is personal data
            field="email",
            rule="an email address: name@domain",
        )
    return checked


def _check_visitor_id(provider: Provider, visitor_id: object) -> str | None:
    if visitor_id is None or visitor_id == "":
        return None
    if not isinstance(visitor_id, str) or provider.visitor_id_pattern.fullmatch(visitor_id) is None:
        raise InvalidPayment(
            f"visitor id {str(visitor_id)[:80]!r} is not a well-formed {provider.name} visitor id",
            field="visitor_id",
            rule=f"the value of the {provider.visitor_cookie!r} cookie",
        )
    return visitor_id


def _check_session_id(provider: Provider, session_id: object) -> str | None:
    if session_id is None or session_id == "":
        return None
    pattern = provider.session_id_pattern
    if not isinstance(session_id, str) or (pattern and pattern.fullmatch(session_id) is None):
        raise InvalidPayment(
            f"session id {str(session_id)[:80]!r} is not a well-formed {provider.name} session id",
            field="session_id",
            rule=f"the value of the {provider.session_cookie!r} cookie",
        )
    return session_id


def _check_flag(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidPayment(
            f"{field} must be True or False, got {type(value).__name__}",
            field=field,
            rule=f"{field} is a boolean",
        )
    return value


def _check_free_trial(provider: Provider, free_trial: object) -> bool | None:
    if free_trial is None:
        return None
    if provider.payment_fields.free_trial is None:
        raise InvalidPayment(
            f"{provider.name} payments take no free-trial flag",
            field="free_trial",
            rule="free_trial is a DataFast and Faurya field (an amount of 0 is a free trial)",
        )
    return _check_flag(free_trial, "free_trial")


def _check_timestamp(provider: Provider, timestamp: object) -> str | None:
    rule = "an aware datetime or an ISO 8601 string with its UTC offset"
    if timestamp is None:
        return None
    if provider.payment_fields.timestamp is None:
        raise InvalidPayment(
            f"{provider.name} payments take no timestamp",
            field="timestamp",
            rule="timestamp is a DataFast and Faurya field",
        )
    when: _dt.datetime | None = None
    if isinstance(timestamp, _dt.datetime):
        when = timestamp
    elif isinstance(timestamp, str):
        text = timestamp[:-1] + "+00:00" if timestamp.endswith(("Z", "z")) else timestamp
        try:
            when = _dt.datetime.fromisoformat(text)
        except ValueError:
            raise InvalidPayment(
                f"timestamp {timestamp[:80]!r} is not ISO 8601", field="timestamp", rule=rule
            ) from None
    else:
        raise InvalidPayment(
            f"timestamp must be a datetime or a string, got {type(timestamp).__name__}",
            field="timestamp",
            rule=rule,
        )
    if when.tzinfo is None or when.utcoffset() is None:
        raise InvalidPayment(
            f"timestamp {str(timestamp)[:80]!r} has no time zone", field="timestamp", rule=rule
        )
    utc = when.astimezone(_dt.UTC)
    return utc.isoformat(timespec="milliseconds").replace("+00:00", "Z")
