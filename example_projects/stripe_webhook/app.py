"""Revenue attribution with Stripe: the visitor captured at checkout, the payment in the webhook.

    cd example_projects/stripe_webhook
    GOALTRACK_API_KEY=df_... STRIPE_WEBHOOK_SECRET=whsec_... STRIPE_API_KEY=sk_... \\
        uvicorn app:app

The pattern, in three steps:

1. ``POST /checkout`` runs in the visitor's browser request, which carries the analytics
   provider's visitor cookie: the visitor id is read there (``current_visitor()``) and stored
   with the order and in the Checkout Session's ``metadata``.
2. Stripe calls ``POST /stripe/webhook`` from its own servers, without that cookie. The
   signature is verified first (``STRIPE_WEBHOOK_SECRET``); an unsigned or tampered call gets a
   400 and records nothing.
3. ``checkout.session.completed`` becomes ``track_payment(request, amount, currency,
   transaction_id, visitor_id=<the id from step 1>)``: the revenue is attributed to the visitor
   who checked out. ``charge.refunded`` records the refund under the same transaction id. The
   provider records a transaction id once, so Stripe retrying a webhook counts nothing twice.

Without ``STRIPE_API_KEY`` (offline, and in goaltrack's tests) step 1 creates the order but no
Checkout Session, and answers with the session parameters it would have sent to Stripe; the
webhook is then called with an event signed locally with the same secret.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from decimal import Decimal
from typing import Any

import stripe
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel

import goaltrack
from goaltrack.asgi import GoalTrackMiddleware, current_visitor, track_payment

#: Stripe amounts are in the currency's smallest unit; these currencies have none smaller.
ZERO_DECIMAL_CURRENCIES = frozenset(
    [
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    ]
)
PRICES = {"pro": (2900, "usd"), "team": (9900, "usd")}  # minor units, currency
VISITOR_KEY = "goaltrack_visitor_id"  # where the visitor id rides in Stripe's metadata


class Checkout(BaseModel):
    plan: str
    email: str | None = None


class Orders:
    """The shop's orders (a database table in a real app): who checked out, and what paid."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._orders: dict[str, dict[str, Any]] = {}

    def create(self, plan: str, visitor_id: str | None, session_id: str | None) -> str:
        order_id = f"order_{uuid.uuid4().hex[:12]}"
        with self._lock:
            self._orders[order_id] = {
                "plan": plan,
                "visitor_id": visitor_id,
                "session_id": session_id,
                "payment_intent": None,
            }
        return order_id

    def get(self, order_id: str | None) -> dict[str, Any]:
        with self._lock:
            return dict(self._orders.get(order_id or "", {}))

    def paid(self, order_id: str, payment_intent: str) -> None:
        with self._lock:
            if order_id in self._orders:
                self._orders[order_id]["payment_intent"] = payment_intent

    def by_payment(self, payment_intent: str) -> dict[str, Any]:
        with self._lock:
            for order in self._orders.values():
                if order["payment_intent"] == payment_intent:
                    return dict(order)
        return {}


orders = Orders()
app = FastAPI(title="goaltrack Stripe webhook example")
# No arguments: the process-wide tracker, from the GOALTRACK_* variables.
app.add_middleware(GoalTrackMiddleware)


def amount_of(minor_units: int, currency: str) -> Decimal:
    """Stripe's integer amount as the decimal amount the analytics provider takes."""
    if currency.lower() in ZERO_DECIMAL_CURRENCIES:
        return Decimal(minor_units)
    return Decimal(minor_units) / 100


@app.get("/", response_class=HTMLResponse)
def home() -> str:
    # The provider's script sets the visitor cookie that /checkout reads.
    script = goaltrack.script_tag(tracking_id=os.environ.get("GOALTRACK_TRACKING_ID", "dfid_demo"))
    return f"""<!doctype html><html><head><title>Shop</title>{script}</head><body>
<h1>Pro plan, $29</h1>
<button id="buy" onclick="buy()">Buy</button> <pre id="answer"></pre>
<script>
async function buy() {{
  const answer = await fetch("/checkout", {{method: "POST",
    headers: {{"Content-Type": "application/json"}}, body: JSON.stringify({{plan: "pro"}})}});
  document.getElementById("answer").textContent = JSON.stringify(await answer.json());
}}
</script></body></html>"""


@app.post("/checkout")
async def checkout(body: Checkout, request: Request) -> JSONResponse:
    """Step 1: in the visitor's own request, capture the visitor id with the order."""
    if body.plan not in PRICES:
        raise HTTPException(400, "unknown plan")
    visitor = current_visitor()  # None for a visitor without the provider's cookie
    visitor_id, session_id = visitor if visitor is not None else (None, None)
    order_id = orders.create(body.plan, visitor_id, session_id)
    amount, currency = PRICES[body.plan]
    session: dict[str, Any] = {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {
                    "currency": currency,
                    "unit_amount": amount,
                    "product_data": {"name": body.plan},
                },
                "quantity": 1,
            }
        ],
        "client_reference_id": order_id,
        "metadata": {VISITOR_KEY: visitor_id or ""},
        "success_url": str(request.url_for("home")) + "?paid=1",
        "cancel_url": str(request.url_for("home")),
    }
    if body.email:
        session["customer_email"] = body.email
    if os.environ.get("STRIPE_API_KEY"):
        created = await stripe.checkout.Session.create_async(
            api_key=os.environ["STRIPE_API_KEY"], **session
        )
        return JSONResponse({"order": order_id, "redirect": created.url})
    return JSONResponse({"order": order_id, "stripe_session": session})


@app.post("/stripe/webhook")
async def stripe_webhook(request: Request) -> JSONResponse:
    """Steps 2 and 3: verify Stripe's signature, then record the payment for the visitor."""
    payload = (await request.body()).decode("utf-8", "replace")
    try:
        stripe.WebhookSignature.verify_header(
            payload,
            request.headers.get("stripe-signature", ""),
            os.environ["STRIPE_WEBHOOK_SECRET"],
            tolerance=300,
        )
    except stripe.SignatureVerificationError:
        raise HTTPException(400, "invalid signature") from None
    event = json.loads(payload)
    data = event["data"]["object"]
    if event["type"] == "checkout.session.completed":
        order = orders.get(data.get("client_reference_id"))
        payment_intent = data.get("payment_intent") or data["id"]
        orders.paid(data.get("client_reference_id") or "", payment_intent)
        track_payment(
            request,
            amount_of(data["amount_total"], data["currency"]),
            data["currency"],
            payment_intent,
            # The metadata travelled through Stripe; the order is the app's own copy.
            visitor_id=(data.get("metadata") or {}).get(VISITOR_KEY) or order.get("visitor_id"),
            session_id=order.get("session_id"),
            email=(data.get("customer_details") or {}).get("email"),
            customer_id=data.get("customer"),
        )
    elif event["type"] == "charge.refunded":
        order = orders.by_payment(data["payment_intent"])
        track_payment(
            request,
            amount_of(data["amount_refunded"], data["currency"]),
            data["currency"],
            data["payment_intent"],  # a refund reuses the original transaction id
            visitor_id=order.get("visitor_id"),
            refunded=True,
        )
    return JSONResponse({"received": True})
