"""Payments, per provider, over real HTTP: ``GoalTracker.track_payment`` against the fake API.

The fake API enforces each provider's payments contract independently of goaltrack's own
validation (field names, required fields, types, idempotency by transaction id), so a payment it
records was sent with the provider's field names and values.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import httpx
import pytest

from goaltrack import DeliveryResult, GoalTracker
from goaltrack.testing.server import FakeAPIServer
from tests.support.keys import KEYS

PROVIDERS = ("datafast", "faurya", "flowsery")
DFT_TOKEN = "dft_account_token_0123456789abcdef"
FLOW_WS_TOKEN = "flow_ws_workspace_token_0123456789abcdef"


def tracker_for(fake_api: FakeAPIServer, provider: str, **options: Any) -> GoalTracker:
    options.setdefault("api_key", KEYS[provider])
    return GoalTracker(
        provider=provider,
        api_url=fake_api.api_url(provider),
        backoff_base=0.01,
        backoff_max=0.05,
        **options,
    )


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_a_payment_arrives_with_every_field(fake_api: FakeAPIServer, provider: str) -> None:
    visitor = fake_api.add_pageview(provider)
    extra: dict[str, Any] = {}
    if provider == "flowsery":
        extra["session_id"] = "fs_session_42"
    else:
        extra["timestamp"] = dt.datetime(2026, 1, 31, 12, 0, tzinfo=dt.UTC)
    with tracker_for(fake_api, provider) as tracker:
        assert tracker.track_payment(
            Decimal("29.90"),
            "usd",
            "ch_3PzA1",
            visitor_id=visitor,
            email="ada@example.com",
            name="Ada Lovelace",
            customer_id="cus_42",
            renewal=True,
            **extra,
        )
        assert tracker.flush(10)
        stats = tracker.stats
    [payment] = fake_api.payments
    assert payment["provider"] == provider
    assert (payment["amount"], payment["currency"]) == (29.9, "USD")
    assert payment["transaction_id"] == "ch_3PzA1"
    assert (payment["visitor_id"], payment["attributed"]) == (visitor, True)
    assert (payment["email"], payment["name"]) == ("ada@example.com", "Ada Lovelace")
    assert payment["customer_id"] == "cus_42"
    assert (payment["renewal"], payment["refunded"], payment["free_trial"]) == (True, False, False)
    if provider == "flowsery":
        assert payment["session_id"] == "fs_session_42"
    else:
        assert payment["timestamp"] == "2026-01-31T12:00:00.000Z"
    assert (stats.payments.delivered, stats.goals.delivered, stats.delivered) == (1, 0, 1)


def test_the_same_transaction_twice_is_recorded_once_and_counted_as_delivered(
    fake_api: FakeAPIServer, provider: str
) -> None:
    visitor = fake_api.add_pageview(provider)
    results: list[DeliveryResult] = []
    with tracker_for(
        fake_api, provider, mode="sync", on_delivery=lambda item, result: results.append(result)
    ) as tracker:
        assert tracker.track_payment(10, "EUR", "pi_twice", visitor_id=visitor)
        assert tracker.track_payment(10, "EUR", "pi_twice", visitor_id=visitor)
        stats = tracker.stats
    assert [p["transaction_id"] for p in fake_api.payments] == ["pi_twice"]
    assert [r.duplicate for r in results] == [False, True]
    assert (stats.payments.delivered, stats.payments.duplicates) == (2, 1)
    assert stats.possible_duplicates == 0
    requests = [r for r in fake_api.requests if r["kind"] == "payment"]
    assert [r["status"] for r in requests] == [200, 200]


def test_a_refund_reuses_the_transaction_id(fake_api: FakeAPIServer, provider: str) -> None:
    visitor = fake_api.add_pageview(provider)
    with tracker_for(fake_api, provider, mode="sync") as tracker:
        assert tracker.track_payment(49, "GBP", "ch_refund_me", visitor_id=visitor)
        assert tracker.track_payment(49, "GBP", "ch_refund_me", visitor_id=visitor, refunded=True)
        assert tracker.track_payment(49, "GBP", "ch_refund_me", visitor_id=visitor, refunded=True)
        stats = tracker.stats
    assert [(p["transaction_id"], p["refunded"]) for p in fake_api.payments] == [
        ("ch_refund_me", False),
        ("ch_refund_me", True),
    ]
    assert stats.payments.duplicates == 1


def test_an_amount_of_zero_is_a_free_trial(fake_api: FakeAPIServer, provider: str) -> None:
    visitor = fake_api.add_pageview(provider)
    with tracker_for(fake_api, provider, mode="sync") as tracker:
        assert tracker.track_payment(Decimal("0.00"), "USD", "sub_trial", visitor_id=visitor)
        if provider != "flowsery":  # DataFast's and Faurya's explicit flag
            assert tracker.track_payment(5, "USD", "sub_cheap", visitor_id=visitor, free_trial=True)
    trials = {p["transaction_id"]: (p["amount"], p["free_trial"]) for p in fake_api.payments}
    assert trials["sub_trial"] == (0, True)
    if provider != "flowsery":
        assert trials["sub_cheap"] == (5, True)


def test_a_payment_without_a_visitor_is_recorded_unattributed(
    fake_api: FakeAPIServer, provider: str
) -> None:
    with tracker_for(fake_api, provider, mode="sync") as tracker:
        assert tracker.track_payment(12.5, "USD", "ch_anonymous")
    [payment] = fake_api.payments
    assert (payment["visitor_id"], payment["attributed"], payment["amount"]) == (None, False, 12.5)


def test_a_dft_token_sends_its_website_id(fake_api: FakeAPIServer) -> None:
    visitor = fake_api.add_pageview("datafast")
    with tracker_for(
        fake_api, "datafast", api_key=DFT_TOKEN, website_id="site_42", mode="sync"
    ) as tracker:
        assert tracker.track_payment(99, "USD", "ch_token", visitor_id=visitor)
    [payment] = fake_api.payments
    assert payment["website_id"] == "site_42"
    assert payment["key_hint"].startswith("dft_")


def test_a_flowsery_workspace_token_sends_its_website_id(fake_api: FakeAPIServer) -> None:
    with tracker_for(
        fake_api, "flowsery", api_key=FLOW_WS_TOKEN, website_id="ws_site", mode="sync"
    ) as tracker:
        assert tracker.track_payment(99, "USD", "ch_ws")
    assert fake_api.payments[0]["website_id"] == "ws_site"


def test_a_token_without_payments_write_fails_with_the_providers_reason(
    fake_api: FakeAPIServer,
) -> None:
    fake_api.state.deny_payments_write(DFT_TOKEN)
    failures: list[DeliveryResult] = []
    with tracker_for(
        fake_api,
        "datafast",
        api_key=DFT_TOKEN,
        website_id="site_42",
        mode="sync",
        on_failure=lambda item, result: failures.append(result),
    ) as tracker:
        assert not tracker.track_payment(1, "USD", "ch_denied")
        stats = tracker.stats
    assert [f.status for f in failures] == [403]
    assert "payments:write" in failures[0].reason
    assert (stats.payments.failed, stats.goals.failed) == (1, 0)
    assert fake_api.payments == []


def test_goals_and_payments_share_the_account_and_are_counted_apart(
    fake_api: FakeAPIServer, provider: str
) -> None:
    visitor = fake_api.add_pageview(provider)
    with tracker_for(fake_api, provider) as tracker:
        assert tracker.track("checkout", visitor_id=visitor)
        assert tracker.track_payment(3, "USD", "ch_apart", visitor_id=visitor)
        assert tracker.flush(10)
        stats = tracker.stats
    assert [g["name"] for g in fake_api.goals] == ["checkout"]
    assert [p["transaction_id"] for p in fake_api.payments] == ["ch_apart"]
    assert (stats.goals.queued, stats.payments.queued, stats.queued) == (1, 1, 2)
    assert (stats.goals.delivered, stats.payments.delivered) == (1, 1)


def test_the_payments_endpoint_answers_as_the_provider_documents(
    fake_api: FakeAPIServer, provider: str
) -> None:
    """The answers goaltrack reads: a plain object from DataFast and Faurya, the success
    envelope from Flowsery; a duplicate says so in its message."""
    fields = (
        {"amount": 5, "currency": "USD", "transactionId": "t1"}
        if provider == "flowsery"
        else {"amount": 5, "currency": "USD", "transaction_id": "t1"}
    )
    url = f"{fake_api.api_url(provider)}/api/v1/payments"
    headers = {"Authorization": f"Bearer {KEYS[provider]}"}
    with httpx.Client(timeout=10) as client:
        first = client.post(url, json=fields, headers=headers)
        again = client.post(url, json=fields, headers=headers)
    assert (first.status_code, again.status_code) == (200, 200)
    if provider == "flowsery":
        assert first.json() == {
            "status": "success",
            "data": [{"message": "Payment recorded successfully"}],
        }
        assert "duplicate" in again.json()["data"][0]["message"].lower()
    else:
        assert first.json() == {"message": "Payment recorded successfully", "transaction_id": "t1"}
        assert "duplicate" in again.json()["message"].lower()
        assert again.json()["transaction_id"] == "t1"
