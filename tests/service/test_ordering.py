"""ordering's checkout saga, driven by publishing the other services' replies."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from eventmart.contracts.basket import BasketCheckedOut
from eventmart.contracts.common import Address, OrderLine
from eventmart.contracts.inventory import (
    CommitStock,
    ReleaseStock,
    ReserveStock,
    StockReservationFailed,
    StockReserved,
)
from eventmart.contracts.ordering import (
    OrderCancelled,
    OrderConfirmed,
    OrderDelivered,
    OrderShipped,
)
from eventmart.contracts.payment import (
    AuthorizePayment,
    CapturePayment,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentDeclined,
    RefundPayment,
    VoidPayment,
)
from eventmart.contracts.shipping import ShipmentDelivered, ShipmentDispatched
from eventmart.platform.messages import new_id
from eventmart.platform.settings import Settings
from tests.service.harness import ServiceHarness, running

ADDRESS = Address(name="Ada", line1="1 Loop St", city="Bath", postal_code="BA1", country="GB")


@pytest.fixture
def h(settings: Settings) -> Iterator[ServiceHarness]:
    with running("ordering", settings.model_copy(update={"payment_deadline_s": 0.5})) as harness:
        yield harness


def checkout(h: ServiceHarness, customer: str = "c1", token: str = "tok_visa") -> str:
    order_id = new_id()
    h.publish(
        BasketCheckedOut(
            order_id=order_id,
            customer_id=customer,
            total_cents=3000,
            shipping_address=ADDRESS,
            card_token=token,
            lines=[
                OrderLine(
                    product_id="p1", sku="S1", name="Kettle", quantity=2, unit_price_cents=1500
                )
            ],
        )
    )
    (reserve,) = h.wait_for(ReserveStock, key=order_id)
    assert [(line.product_id, line.quantity) for line in reserve.lines] == [("p1", 2)]
    return order_id


def reserved(h: ServiceHarness, order_id: str) -> AuthorizePayment:
    h.publish(StockReserved(order_id=order_id, lines=[]))
    (auth,) = h.wait_for(AuthorizePayment, key=order_id)
    return auth


def status(h: ServiceHarness, order_id: str, customer: str = "c1") -> str:
    r = h.client.get(f"/orders/{order_id}", headers=h.token(user_id=customer))
    assert r.status_code == 200, r.text
    return str(r.json()["status"])


def test_happy_path_to_delivered(h: ServiceHarness) -> None:
    order_id = checkout(h)
    auth = reserved(h, order_id)
    assert (auth.amount_cents, auth.card_token) == (3000, "tok_visa")
    h.publish(PaymentAuthorized(order_id=order_id, authorization_id="au1", amount_cents=3000))
    h.wait_for(OrderConfirmed, key=order_id)
    h.wait_for(CommitStock, key=order_id)
    h.wait_for(CapturePayment, key=order_id)
    h.publish(PaymentCaptured(order_id=order_id, amount_cents=3000))
    h.publish(ShipmentDispatched(order_id=order_id, shipment_id="sh1"))
    h.wait_for(OrderShipped, key=order_id)
    h.publish(ShipmentDelivered(order_id=order_id, shipment_id="sh1"))
    h.wait_for(OrderDelivered, key=order_id)
    assert status(h, order_id) == "DELIVERED"
    history = h.client.get(f"/orders/{order_id}/history", headers=h.token("admin")).json()
    assert [e["version"] for e in history["events"]] == [1, 2, 3, 4, 5, 6]
    assert history["saga"]["status"] == "COMPLETED"
    steps = [s["step"] for s in history["saga"]["steps"]]
    assert steps == [
        "started",
        "reserving_stock",
        "authorizing_payment",
        "capturing_payment",
        "completed",
    ]
    # no deadline fired: nothing cancelled
    assert h.emitted(OrderCancelled, key=order_id) == []


def test_out_of_stock_cancels_without_compensation(h: ServiceHarness) -> None:
    order_id = checkout(h)
    h.publish(StockReservationFailed(order_id=order_id, reason="OUT_OF_STOCK", unavailable=["p1"]))
    (cancelled,) = h.wait_for(OrderCancelled, key=order_id)
    assert cancelled.reason == "OUT_OF_STOCK" and "p1" in cancelled.detail
    assert h.emitted(ReleaseStock, key=order_id) == []
    assert h.emitted(AuthorizePayment, key=order_id) == []


def test_declined_payment_releases_stock(h: ServiceHarness) -> None:
    order_id = checkout(h, token="tok_declined")
    reserved(h, order_id)
    h.publish(PaymentDeclined(order_id=order_id, reason="card declined"))
    (cancelled,) = h.wait_for(OrderCancelled, key=order_id)
    assert cancelled.reason == "PAYMENT_DECLINED"
    h.wait_for(ReleaseStock, key=order_id)
    assert h.emitted(VoidPayment, key=order_id) == []


def test_payment_timeout_voids_and_releases_and_a_late_answer_is_voided(h: ServiceHarness) -> None:
    order_id = checkout(h, token="tok_timeout")
    reserved(h, order_id)
    (cancelled,) = h.wait_for(OrderCancelled, key=order_id, timeout_s=10)
    assert cancelled.reason == "PAYMENT_TIMEOUT"
    h.wait_for(VoidPayment, key=order_id)
    h.wait_for(ReleaseStock, key=order_id)
    h.publish(PaymentAuthorized(order_id=order_id, authorization_id="late", amount_cents=3000))
    h.wait_for(VoidPayment, key=order_id, count=2)
    assert status(h, order_id) == "CANCELLED"
    assert h.emitted(OrderConfirmed, key=order_id) == []


def test_customer_cancel_after_confirmation_refunds_and_restocks(h: ServiceHarness) -> None:
    order_id = checkout(h)
    reserved(h, order_id)
    h.publish(PaymentAuthorized(order_id=order_id, authorization_id="au", amount_cents=3000))
    h.wait_for(OrderConfirmed, key=order_id)
    other = h.client.post(f"/orders/{order_id}/cancel", headers=h.token(user_id="someone-else"))
    assert other.status_code == 404
    r = h.client.post(f"/orders/{order_id}/cancel", headers=h.token(user_id="c1"))
    assert r.status_code == 202 and r.json()["status"] == "CANCELLED"
    (cancelled,) = h.wait_for(OrderCancelled, key=order_id)
    assert cancelled.reason == "CUSTOMER_CANCELLED"
    h.wait_for(RefundPayment, key=order_id)
    h.wait_for(ReleaseStock, key=order_id)
    again = h.client.post(f"/orders/{order_id}/cancel", headers=h.token(user_id="c1"))
    assert again.status_code == 202  # idempotent: already cancelled
    assert len(h.emitted(OrderCancelled, key=order_id)) == 1


def test_cancel_while_reserving_releases_the_late_reservation(h: ServiceHarness) -> None:
    order_id = checkout(h)
    assert (
        h.client.post(f"/orders/{order_id}/cancel", headers=h.token(user_id="c1")).status_code
        == 202
    )
    h.publish(StockReserved(order_id=order_id, lines=[]))
    h.wait_for(ReleaseStock, key=order_id)
    assert h.emitted(AuthorizePayment, key=order_id) == []


def test_shipped_order_cannot_be_cancelled(h: ServiceHarness) -> None:
    order_id = checkout(h)
    reserved(h, order_id)
    h.publish(PaymentAuthorized(order_id=order_id, authorization_id="au", amount_cents=3000))
    # Shipping dispatches only what was confirmed. Published together, the two replies
    # could be read in either order: they travel on different topics, and the log orders
    # messages within a partition only.
    h.wait_for(OrderConfirmed, key=order_id)
    h.publish(ShipmentDispatched(order_id=order_id, shipment_id="s"))
    h.wait_for(OrderShipped, key=order_id)
    r = h.client.post(f"/orders/{order_id}/cancel", headers=h.token(user_id="c1"))
    assert r.status_code == 409 and "SHIPPED" in r.json()["detail"]


def test_duplicate_checkout_and_replies_have_one_effect(h: ServiceHarness) -> None:
    order_id = new_id()
    event = BasketCheckedOut(
        order_id=order_id,
        customer_id="c1",
        total_cents=1500,
        shipping_address=ADDRESS,
        card_token="tok_visa",
        lines=[OrderLine(product_id="p", sku="S", name="N", quantity=1, unit_price_cents=1500)],
    )
    h.publish(event, event)  # two messages (two ids), one checkout
    h.wait_for(ReserveStock, key=order_id)
    h.publish(
        StockReserved(order_id=order_id, lines=[]), StockReserved(order_id=order_id, lines=[])
    )
    h.wait_for(AuthorizePayment, key=order_id)
    h.eventually(lambda: status(h, order_id) == "STOCK_RESERVED")
    assert len(h.emitted(ReserveStock, key=order_id)) == 1
    assert len(h.emitted(AuthorizePayment, key=order_id)) == 1
