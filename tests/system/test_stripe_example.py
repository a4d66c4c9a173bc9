"""The Stripe webhook example under uvicorn: a browser's visitor cookie captured at checkout, the
payment recorded from a signed webhook, attributed to that visitor at the fake API.

Headless Chromium (Debian's, through Playwright) opens the shop: the fake API's stand-in script
sets the visitor cookie and records the pageview; the browser's Buy button creates the order.
Stripe is then played by the test: it signs ``checkout.session.completed`` and
``charge.refunded`` events the way Stripe does (``Stripe-Signature: t=...,v1=HMAC-SHA256``) with
the example's webhook secret, and posts them to the webhook. No network beyond 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from goaltrack.testing.server import FakeAPIServer
from tests.support.browser import BROWSER_UA
from tests.support.examples import RunningExample, serve_example
from tests.support.keys import KEYS

pytest.importorskip(
    "stripe", reason="the example verifies signatures with stripe: pip install stripe"
)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip(
        "headless Chromium is not installed (apt-get install chromium); CI installs it",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is not installed (pip install playwright)"
)

pytestmark = pytest.mark.slow

WEBHOOK_SECRET = "whsec_goaltrack_example_tests"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run"]


@pytest.fixture(scope="module")
def shop(fake_api_server: FakeAPIServer) -> Iterator[RunningExample]:
    with serve_example(
        "stripe",
        fake_api_server.api_url("datafast"),
        env={"STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET, "STRIPE_API_KEY": ""},
    ) as running:
        yield running
    assert KEYS["datafast"] not in running.output
    assert WEBHOOK_SECRET not in running.output


@pytest.fixture
def page() -> Iterator[sync_api.Page]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(user_agent=BROWSER_UA)
            context.set_default_timeout(15_000)
            yield context.new_page()
        finally:
            browser.close()


def signed(event: dict[str, Any], secret: str = WEBHOOK_SECRET) -> tuple[bytes, dict[str, str]]:
    """The event's body and ``Stripe-Signature`` header, as Stripe computes them."""
    payload = json.dumps(event).encode()
    timestamp = int(time.time())
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    header = f"t={timestamp},v1={mac.hexdigest()}"
    return payload, {"Stripe-Signature": header, "Content-Type": "application/json"}


def event(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex[:16]}",
        "object": "event",
        "type": kind,
        "data": {"object": data},
    }


def checkout_in_the_browser(shop: RunningExample, page: sync_api.Page) -> tuple[str, Any]:
    """Open the shop, let the script set the cookie, click Buy: (visitor id, /checkout's answer)."""
    page.goto(shop.url)
    page.wait_for_selector("html[data-goaltrack-pageview]", state="attached")
    [visitor_id] = [
        c["value"] for c in page.context.cookies() if c["name"] == "datafast_visitor_id"
    ]
    page.click("#buy")
    page.wait_for_function("document.getElementById('answer').textContent.length > 0")
    return visitor_id, json.loads(page.text_content("#answer") or "{}")


def test_the_payment_lands_on_the_visitor_who_checked_out(
    shop: RunningExample, fake_api: FakeAPIServer, page: sync_api.Page
) -> None:
    visitor_id, answer = checkout_in_the_browser(shop, page)
    session = answer["stripe_session"]
    assert session["metadata"] == {"goaltrack_visitor_id": visitor_id}  # captured at checkout
    completed = event(
        "checkout.session.completed",
        {
            "id": "cs_test_a1",
            "object": "checkout.session",
            "client_reference_id": session["client_reference_id"],
            "metadata": session["metadata"],
            "amount_total": session["line_items"][0]["price_data"]["unit_amount"],
            "currency": "usd",
            "payment_intent": "pi_test_a1",
            "payment_status": "paid",
            "customer": "cus_test_a1",
            "customer_details": {"email": "ada@example.com"},
        },
    )
    body, headers = signed(completed)
    with httpx.Client(base_url=shop.url, timeout=10) as stripe_servers:  # no visitor cookie
        assert stripe_servers.post("/stripe/webhook", content=body, headers=headers).json() == {
            "received": True
        }
        [payment] = fake_api.wait_for_payments(1, timeout=15)
        assert (payment["visitor_id"], payment["attributed"]) == (visitor_id, True)
        assert (payment["amount"], payment["currency"]) == (29, "USD")
        assert payment["transaction_id"] == "pi_test_a1"
        assert (payment["email"], payment["customer_id"]) == ("ada@example.com", "cus_test_a1")

        # Stripe retries a webhook it thinks failed: recorded once all the same.
        body, headers = signed(completed)
        assert stripe_servers.post("/stripe/webhook", content=body, headers=headers).is_success
        requests = fake_api.wait_for_requests(2, timeout=15)
        assert [r["kind"] for r in requests] == ["payment", "payment"]
        assert len(fake_api.payments) == 1

        refunded = event(
            "charge.refunded",
            {
                "id": "ch_test_a1",
                "object": "charge",
                "payment_intent": "pi_test_a1",
                "amount_refunded": 2900,
                "currency": "usd",
            },
        )
        body, headers = signed(refunded)
        assert stripe_servers.post("/stripe/webhook", content=body, headers=headers).is_success
        payments = fake_api.wait_for_payments(2, timeout=15)
    refund = payments[1]
    assert (refund["transaction_id"], refund["refunded"]) == ("pi_test_a1", True)
    assert refund["visitor_id"] == visitor_id  # found through the order


def test_an_unsigned_or_tampered_webhook_records_nothing(
    shop: RunningExample, fake_api: FakeAPIServer
) -> None:
    forged = event(
        "checkout.session.completed",
        {"id": "cs_forged", "amount_total": 100000, "currency": "usd", "payment_intent": "pi_f"},
    )
    body, headers = signed(forged, secret="whsec_someone_else")
    with httpx.Client(base_url=shop.url, timeout=10) as client:
        assert client.post("/stripe/webhook", content=body, headers=headers).status_code == 400
        assert client.post("/stripe/webhook", content=body).status_code == 400
        good_body, good_headers = signed(forged)
        tampered = good_body.replace(b"100000", b"100001")
        response = client.post("/stripe/webhook", content=tampered, headers=good_headers)
        assert response.status_code == 400
    assert fake_api.requests == []  # nothing reached the analytics API
