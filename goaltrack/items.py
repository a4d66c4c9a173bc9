"""What a transport carries, a goal or a payment, and its one serialized form.

:data:`Tracked` is either kind. A transport needs of it only what both have: ``kind``,
``idempotent``, ``provider``, ``path`` (the endpoint after the base URL), ``body()``, ``label``
(for log lines) and ``describe()`` (for the debug log). Whatever stores an item outside the
process (the outbox file, a Celery message, a pipe to another process) serializes it here:
:func:`to_message` / :func:`from_message` (a JSON-ready dict), :func:`encode` / :func:`decode`
(JSON text). Both hold the validated fields and the provider's name, never the API key; what
comes back was validated when it was tracked and is not validated again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, TypeAlias

from goaltrack.goals import Goal
from goaltrack.payments import Payment
from goaltrack.providers import get_provider

__all__ = ["Tracked", "decode", "encode", "from_data", "from_message", "to_message"]

#: What a tracker hands its transport: a goal or a payment.
Tracked: TypeAlias = Goal | Payment

_PAYMENT_FIELDS = (
    "amount",
    "currency",
    "transaction_id",
    "visitor_id",
    "session_id",
    "customer_email",
    "customer_name",
    "customer_id",
    "renewal",
    "refunded",
    "free_trial",
    "timestamp",
)


def to_message(item: Tracked) -> dict[str, Any]:
    """*item* as a JSON-ready dict: ``kind``, ``provider`` and its validated fields."""
    if isinstance(item, Payment):
        message: dict[str, Any] = {"kind": "payment", "provider": item.provider.name}
        for field in _PAYMENT_FIELDS:
            message[field] = getattr(item, field)
        return message
    return {
        "kind": "goal",
        "provider": item.provider.name,
        "name": item.name,
        "visitor_id": item.visitor_id,
        "session_id": item.session_id,
        "metadata": dict(item.metadata) if item.metadata else None,
        "description": item.description,
        "timezone": item.timezone,
    }


def from_message(message: Mapping[str, Any]) -> Tracked:
    """The item :func:`to_message` gave (a message without ``kind`` is a goal: the form
    goaltrack wrote before payments). Raises KeyError or ValueError for anything else."""
    provider = get_provider(message["provider"])
    kind = message.get("kind", "goal")
    if kind == "payment":
        return Payment(provider, **{field: message[field] for field in _PAYMENT_FIELDS})
    if kind != "goal":
        raise ValueError(f"unknown kind of tracked item {kind!r}")
    return Goal(
        provider,
        message["name"],
        message.get("visitor_id"),
        message.get("session_id"),
        message.get("metadata"),
        message.get("description"),
        message.get("timezone"),
    )


def encode(item: Tracked) -> str:
    """*item* as compact JSON text (the outbox's column).

    A goal keeps the compact list the outbox has always stored, so that files written before
    payments and after them read alike; a payment is its :func:`to_message` object.
    """
    data: object
    if isinstance(item, Payment):
        data = to_message(item)
    else:
        data = [
            item.provider.name,
            item.name,
            item.visitor_id,
            item.session_id,
            dict(item.metadata) if item.metadata else None,
            item.description,
            item.timezone,
        ]
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def decode(text: str) -> Tracked:
    """The item :func:`encode` gave. Raises ValueError (or KeyError, TypeError) otherwise."""
    return from_data(json.loads(text))


def from_data(data: object) -> Tracked:
    """The item :func:`encode`'s JSON text holds, already parsed (embedded in a larger
    message, as the courier's)."""
    if isinstance(data, list):
        provider, name, visitor_id, session_id, metadata, description, timezone = data
        return Goal(
            get_provider(provider), name, visitor_id, session_id, metadata, description, timezone
        )
    if not isinstance(data, dict):
        raise ValueError(f"a stored item is a JSON list or object, not {type(data).__name__}")
    return from_message(data)
