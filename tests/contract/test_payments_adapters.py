"""``track_payment(request, ...)`` in every adapter, over real HTTP: the cookie's visitor or
one given (the webhook case), the strict rule, and the payment signals."""

from __future__ import annotations

import pytest

from goaltrack import Payment, Visitor
from goaltrack.testing.server import FakeAPIServer
from tests.contract.conftest import Serve
from tests.contract.test_contract import Received, browser, receiving, visitor_cookie


def test_a_payment_is_attributed_to_the_cookies_visitor(
    contract: Serve, fake_api: FakeAPIServer
) -> None:
    visitor_id, cookies = visitor_cookie(fake_api)
    tracked, delivered = Received(), Received()
    with contract() as app, browser(app, cookies) as client:
        with (
            receiving(app.signals.payment_tracked, tracked),
            receiving(app.signals.payment_delivered, delivered),
        ):
            assert client.post("/pay").json() == {"queued": True}
            [payment] = fake_api.wait_for_payments(1)
            assert app.tracker.flush(10)
            assert delivered.called.wait(10)
        stats = app.tracker.stats
        sender = app.sender
    assert (payment["visitor_id"], payment["attributed"]) == (visitor_id, True)
    assert (payment["amount"], payment["currency"], payment["transaction_id"]) == (
        29.9,
        "USD",
        "ch_contract",
    )
    [call] = tracked.calls
    assert call["sender"] is sender
    assert isinstance(call["payment"], Payment)
    assert call["visitor"] == Visitor(visitor_id, None)
    assert call["request"] is not None
    [done] = delivered.calls
    assert done["payment"].transaction_id == "ch_contract"
    assert done["result"].status == 200
    assert (stats.payments.delivered, stats.goals.delivered) == (1, 0)


def test_a_webhook_passes_the_visitor_captured_at_checkout(
    contract: Serve, fake_api: FakeAPIServer
) -> None:
    visitor_id = fake_api.add_pageview("datafast")
    with contract() as app, browser(app) as client:  # no cookie: the payment provider calls
        answer = client.post("/pay", params={"visitor": visitor_id, "txn": "cs_webhook"})
        assert answer.json() == {"queued": True}
        [payment] = fake_api.wait_for_payments(1)
    assert (payment["transaction_id"], payment["visitor_id"]) == ("cs_webhook", visitor_id)


def test_without_a_cookie_or_an_id_the_payment_is_recorded_unattributed(
    contract: Serve, fake_api: FakeAPIServer
) -> None:
    with contract() as app, browser(app) as client:
        assert client.post("/pay").json() == {"queued": True}
        [payment] = fake_api.wait_for_payments(1)
    assert (payment["visitor_id"], payment["attributed"]) == (None, False)


@pytest.mark.parametrize("strict", [True, False])
def test_an_invalid_payment_raises_when_strict_and_is_refused_otherwise(
    contract: Serve, fake_api: FakeAPIServer, strict: bool
) -> None:
    with contract(strict=strict) as app, browser(app) as client:
        answer = client.post("/pay", params={"currency": "dollars"})
        assert answer.status_code == 200  # never a 500
        if strict:
            assert answer.json() == {"raised": "InvalidPayment"}
        else:
            assert answer.json() == {"queued": False}
            assert app.tracker.stats.payments.invalid == 1
        assert app.tracker.flush(10)
    assert fake_api.payments == []
