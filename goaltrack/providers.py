"""The provider descriptions: everything that differs between DataFast, Faurya and Flowsery.

This module is data. Nothing else in goaltrack branches on a provider's name: cookie names, body
field names (goals' and payments'), goal-name rules, auth rules, default URLs, which statuses are
final and how errors are shaped are all read from a :class:`Provider`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["PROVIDERS", "PaymentFields", "Provider", "get_provider"]

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
#: Ids set by a script we do not know the exact shape of: url-safe tokens, bounded length.
_OPAQUE_ID = r"[A-Za-z0-9_\-.]{1,128}"


@dataclass(frozen=True)
class PaymentFields:
    """The body field names of one provider's payments endpoint; None: the API has no such field."""

    amount: str
    currency: str
    transaction_id: str
    visitor: str
    session: str | None
    email: str
    name: str
    customer_id: str
    renewal: str
    refunded: str
    free_trial: str | None
    timestamp: str | None


def _snake_case_payments(visitor: str) -> PaymentFields:
    """DataFast's payment fields (Faurya, its white label, takes the same but the visitor's)."""
    return PaymentFields(
        amount="amount",
        currency="currency",
        transaction_id="transaction_id",
        visitor=visitor,
        session=None,
        email="email",
        name="name",
        customer_id="customer_id",
        renewal="renewal",
        refunded="refunded",
        free_trial="is_free_trial",
        timestamp="timestamp",
    )


@dataclass(frozen=True)
class Provider:
    """How one analytics provider wants its goals and payments."""

    name: str
    default_api_url: str
    """Base URL; the goals endpoint is ``api_url + goals_path``."""
    goals_path: str
    visitor_cookie: str
    session_cookie: str | None
    visitor_id_pattern: re.Pattern[str]
    session_id_pattern: re.Pattern[str] | None
    visitor_field: str
    """Body field carrying the visitor id."""
    session_field: str | None
    """Body field carrying the session id, or None when the API takes no session."""
    visitor_required: bool
    name_pattern: re.Pattern[str]
    name_rule: str
    """The goal-name rule in words, for error messages."""
    normalize_name: bool
    """True when the API lowercases the name and turns spaces into underscores itself."""
    reserved_names: frozenset[str]
    accepts_description: bool
    accepts_timezone: bool
    website_token_prefixes: tuple[str, ...]
    """Keys with these prefixes are account/workspace tokens: ``website_id`` is then required."""
    key_prefixes: tuple[str, ...]
    """Keys start with one of these (the API answers 401 otherwise); empty: any key."""
    website_query_param: str
    final_statuses: frozenset[int]
    """Statuses after which retrying cannot help: the goal has finally failed."""
    payments_path: str
    """The payments endpoint is ``api_url + payments_path``."""
    payment_fields: PaymentFields


METADATA_MAX_KEYS = 10
METADATA_KEY_PATTERN = re.compile(r"[a-z0-9_-]{1,64}")
METADATA_VALUE_MAX_CHARS = 255

DATAFAST = Provider(
    name="datafast",
    default_api_url="https://datafa.st",
    goals_path="/api/v1/goals",
    visitor_cookie="datafast_visitor_id",
    session_cookie="datafast_session_id",
    visitor_id_pattern=re.compile(_UUID),
    session_id_pattern=re.compile("s" + _UUID),
    visitor_field="datafast_visitor_id",
    session_field=None,
    visitor_required=True,
    name_pattern=re.compile(r"[a-z0-9_:-]{1,64}"),
    name_rule="lowercase letters, digits, '_', '-' and ':' (spaces become '_'), 1 to 64 characters",
    normalize_name=True,
    reserved_names=frozenset({"identify"}),
    accepts_description=True,
    accepts_timezone=False,
    website_token_prefixes=("dft_",),
    key_prefixes=("df_", "dft_"),
    website_query_param="websiteId",
    final_statuses=frozenset({400, 401, 403, 404, 422}),
    payments_path="/api/v1/payments",
    payment_fields=_snake_case_payments("datafast_visitor_id"),
)

FAURYA = Provider(
    name="faurya",
    default_api_url="https://api.faurya.com",
    goals_path="/api/v1/goals",
    visitor_cookie="faurya_visitor_id",
    session_cookie="faurya_session_id",
    visitor_id_pattern=re.compile(_OPAQUE_ID),
    session_id_pattern=re.compile(_OPAQUE_ID),
    visitor_field="faurya_visitor_id",
    session_field="faurya_session_id",
    visitor_required=True,
    name_pattern=re.compile(r"[a-z0-9_-]{1,64}"),
    name_rule="lowercase letters, digits, '_' and '-', 1 to 64 characters",
    normalize_name=False,
    reserved_names=frozenset(),
    accepts_description=False,
    accepts_timezone=False,
    website_token_prefixes=(),
    key_prefixes=(),
    website_query_param="websiteId",
    # Faurya's 429 means the account's event quota is used up: retrying cannot help.
    final_statuses=frozenset({400, 401, 403, 404, 422, 429}),
    payments_path="/api/v1/payments",
    payment_fields=_snake_case_payments("faurya_visitor_id"),
)

FLOWSERY = Provider(
    name="flowsery",
    default_api_url="https://analytics.flowsery.com",
    goals_path="/api/v1/goals",
    visitor_cookie="_fs_vid",
    session_cookie="_fs_sid",
    visitor_id_pattern=re.compile(_OPAQUE_ID),
    session_id_pattern=re.compile(_OPAQUE_ID),
    visitor_field="visitorUid",
    session_field="sessionUid",
    visitor_required=False,
    name_pattern=re.compile(r"[a-z0-9_-]{1,64}"),
    name_rule="lowercase letters, digits, '_' and '-', 1 to 64 characters",
    normalize_name=False,
    reserved_names=frozenset(),
    accepts_description=False,
    accepts_timezone=True,
    website_token_prefixes=("flow_ws_",),
    key_prefixes=("flow_",),
    website_query_param="websiteId",
    final_statuses=frozenset({400, 401, 403, 404, 422}),
    payments_path="/api/v1/payments",
    payment_fields=PaymentFields(
        amount="amount",
        currency="currency",
        transaction_id="transactionId",
        visitor="visitorUid",
        session="sessionUid",
        email="email",
        name="name",
        customer_id="customerId",
        renewal="isRenewal",
        refunded="isRefund",
        free_trial=None,
        timestamp=None,
    ),
)

PROVIDERS: dict[str, Provider] = {p.name: p for p in (DATAFAST, FAURYA, FLOWSERY)}


def get_provider(provider: str | Provider) -> Provider:
    """Return the provider description for a name (case-insensitive) or pass one through."""
    if isinstance(provider, Provider):
        return provider
    try:
        return PROVIDERS[str(provider).strip().lower()]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ValueError(f"unknown provider {provider!r}: expected one of {known}") from None
