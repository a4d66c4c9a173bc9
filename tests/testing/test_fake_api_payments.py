"""The fake API's payments endpoints against the providers' payments contracts, over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from goaltrack.testing.server import FakeAPIServer

KEYS = {
    "datafast": "df_website_key_0123456789abcdef",
    "faurya": "faurya_key_0123456789abcdef",
    "flowsery": "flow_key_0123456789abcdef",
}
DFT_TOKEN = "dft_account_token_0123456789abcdef"
SNAKE = {"amount": "amount", "currency": "currency", "transaction_id": "transaction_id"}
CAMEL = {"amount": "amount", "currency": "currency", "transaction_id": "transactionId"}


@pytest.fixture(scope="module")
def shared_client(fake_api_server: FakeAPIServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake_api_server.url, timeout=10) as client:
        yield client


@pytest.fixture
def client(fake_api: FakeAPIServer, shared_client: httpx.Client) -> httpx.Client:
    return shared_client


def post(
    client: httpx.Client,
    provider: str,
    body: dict[str, Any],
    key: str | None = None,
    query: str = "",
) -> httpx.Response:
    return client.post(
        f"/{provider}/api/v1/payments{query}",
        json=body,
        headers={"Authorization": f"Bearer {key or KEYS[provider]}"},
    )


def payment(provider: str, **fields: Any) -> dict[str, Any]:
    names = CAMEL if provider == "flowsery" else SNAKE
    body = {names["amount"]: 10, names["currency"]: "USD", names["transaction_id"]: "ch_1"}
    body.update(fields)
    return body


@pytest.mark.parametrize(
    ("provider", "body", "message"),
    [
        ("datafast", {"currency": "USD", "transaction_id": "t"}, "amount is required"),
        ("datafast", {"amount": "10", "currency": "USD", "transaction_id": "t"}, "number"),
        ("datafast", {"amount": True, "currency": "USD", "transaction_id": "t"}, "number"),
        ("datafast", {"amount": -1, "currency": "USD", "transaction_id": "t"}, ">= 0"),
        ("datafast", {"amount": 1, "currency": "DOLLARS", "transaction_id": "t"}, "ISO 4217"),
        ("datafast", {"amount": 1, "currency": "USD"}, "transaction_id is required"),
        ("datafast", {"amount": 1, "currency": "USD", "transaction_id": " "}, "non-empty"),
        (
            "faurya",
            {"amount": 1, "currency": "USD", "transaction_id": "t", "renewal": "yes"},
            "boolean",
        ),
        (
            "datafast",
            {"amount": 1, "currency": "USD", "transaction_id": "t", "timestamp": "soon"},
            "ISO 8601",
        ),
        # Flowsery's names are camelCase: DataFast's snake_case id is not its field.
        (
            "flowsery",
            {"amount": 1, "currency": "USD", "transaction_id": "t"},
            "transactionId is required",
        ),
        (
            "flowsery",
            {"amount": 1, "currency": "USD", "transactionId": "t", "isRefund": 1},
            "boolean",
        ),
    ],
)
def test_invalid_payments_are_400_with_the_providers_envelope(
    client: httpx.Client, provider: str, body: dict[str, Any], message: str
) -> None:
    response = post(client, provider, body)
    assert response.status_code == 400
    data = response.json()
    text = data["message"] if provider == "flowsery" else data["error"]["message"]
    assert message in text


def test_no_pageview_is_needed_but_attribution_needs_one(
    fake_api: FakeAPIServer, client: httpx.Client
) -> None:
    seen = fake_api.add_pageview("datafast")
    unseen = "2f1c2b8e-7c4b-4c66-9d3e-2a8e6f0f7a11"
    assert (
        post(client, "datafast", payment("datafast", datafast_visitor_id=seen)).status_code == 200
    )
    body = payment("datafast", transaction_id="ch_2", datafast_visitor_id=unseen)
    assert post(client, "datafast", body).status_code == 200
    assert [(p["visitor_id"], p["attributed"]) for p in fake_api.payments] == [
        (seen, True),
        (unseen, False),
    ]


def test_datafast_takes_the_customer_aliases(fake_api: FakeAPIServer, client: httpx.Client) -> None:
    body = payment("datafast", customer_email="a@example.com", customer_name="Ada")
    assert post(client, "datafast", body).status_code == 200
    assert (fake_api.payments[0]["email"], fake_api.payments[0]["name"]) == ("a@example.com", "Ada")


def test_duplicates_are_per_website(fake_api: FakeAPIServer, client: httpx.Client) -> None:
    query_a, query_b = "?websiteId=site_a", "?websiteId=site_b"
    assert post(client, "datafast", payment("datafast"), DFT_TOKEN, query_a).status_code == 200
    assert post(client, "datafast", payment("datafast"), DFT_TOKEN, query_b).status_code == 200
    again = post(client, "datafast", payment("datafast"), DFT_TOKEN, query_a)
    assert "Duplicate" in again.json()["message"]
    assert [p["website_id"] for p in fake_api.payments] == ["site_a", "site_b"]


def test_a_dft_token_needs_the_website_id_and_payments_write(
    fake_api: FakeAPIServer, client: httpx.Client
) -> None:
    assert post(client, "datafast", payment("datafast"), DFT_TOKEN).status_code == 400
    fake_api.state.deny_payments_write(DFT_TOKEN)
    denied = post(client, "datafast", payment("datafast"), DFT_TOKEN, "?websiteId=s")
    assert denied.status_code == 403
    assert "payments:write" in denied.json()["error"]["message"]
    # goals:write is another permission: the same token still sends goals.
    visitor = fake_api.add_pageview("datafast")
    goal = client.post(
        "/datafast/api/v1/goals?websiteId=s",
        json={"datafast_visitor_id": visitor, "name": "signup"},
        headers={"Authorization": f"Bearer {DFT_TOKEN}"},
    )
    assert goal.status_code == 200


def test_faults_apply_to_payments(fake_api: FakeAPIServer, client: httpx.Client) -> None:
    fake_api.set_faults(fail_next=1)
    assert post(client, "faurya", payment("faurya")).status_code == 503
    assert post(client, "faurya", payment("faurya")).status_code == 200
    fake_api.set_faults(down_for=30)
    assert post(client, "flowsery", payment("flowsery")).status_code == 503
    assert len(fake_api.payments) == 1
    faults = [r["fault"] for r in fake_api.requests]
    assert faults == ["fail_next", None, "down"]


def test_a_trickled_answer_comes_after_the_payment_is_recorded(
    fake_api: FakeAPIServer, fake_api_server: FakeAPIServer
) -> None:
    """``trickle_for``: the timeout-after-the-API-recorded-it fault, for payments too."""
    fake_api.set_faults(trickle_for=30, trickle_bytes_per_s=2)
    with (
        httpx.Client(base_url=fake_api_server.url, timeout=0.5) as client,
        pytest.raises(httpx.ReadTimeout),
    ):
        post(client, "datafast", payment("datafast"))
    assert [p["transaction_id"] for p in fake_api.payments] == ["ch_1"]


def test_delete_by_transaction_visitor_or_dates(
    fake_api: FakeAPIServer, client: httpx.Client
) -> None:
    visitor = fake_api.add_pageview("datafast")
    for index in range(4):
        body = payment("datafast", transaction_id=f"ch_{index}")
        if index >= 2:
            body["datafast_visitor_id"] = visitor
        assert post(client, "datafast", body).status_code == 200
    auth = {"Authorization": f"Bearer {KEYS['datafast']}"}
    by_id = client.delete("/datafast/api/v1/payments?transaction_id=ch_0", headers=auth)
    assert by_id.json()["deleted"] == 1
    by_visitor = client.request(
        "DELETE", "/datafast/api/v1/payments", json={"datafast_visitor_id": visitor}, headers=auth
    )
    assert by_visitor.json()["deleted"] == 2
    assert [p["transaction_id"] for p in fake_api.payments] == ["ch_1"]
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert (
        client.delete(
            "/datafast/api/v1/payments", params={"start_date": future}, headers=auth
        ).json()["deleted"]
        == 0
    )
    past = datetime.fromtimestamp(time.time() - 3600, UTC).isoformat()
    assert (
        client.delete(
            "/datafast/api/v1/payments", params={"start_date": past}, headers=auth
        ).json()["deleted"]
        == 1
    )
    assert fake_api.payments == []
    # A deleted transaction may be recorded again.
    assert "Duplicate" not in post(client, "datafast", payment("datafast")).json()["message"]


def test_delete_needs_a_criterion_and_the_key(client: httpx.Client) -> None:
    auth = {"Authorization": f"Bearer {KEYS['datafast']}"}
    assert client.delete("/datafast/api/v1/payments", headers=auth).status_code == 400
    assert client.delete("/datafast/api/v1/payments?transaction_id=x").status_code == 401


def test_flowsery_documents_no_delete(client: httpx.Client) -> None:
    auth = {"Authorization": f"Bearer {KEYS['flowsery']}"}
    response = client.delete("/flowsery/api/v1/payments?transactionId=x", headers=auth)
    assert response.status_code == 404


def test_payments_are_listed_on_the_fake_pages(
    fake_api: FakeAPIServer, client: httpx.Client
) -> None:
    assert post(client, "datafast", payment("datafast", transaction_id="ch_listed", refunded=True))
    listed = client.get("/_fake/payments").json()
    assert [p["transaction_id"] for p in listed] == ["ch_listed"]
    page = client.get("/_fake/").text
    assert "1 payment(s)" in page
    assert "ch_listed" in page
    assert "refund" in page
