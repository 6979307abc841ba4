"""The Order aggregate's rules, without any I/O."""

from __future__ import annotations

import pytest

from eventmart.contracts.common import Address, OrderLine
from eventmart.services.ordering.domain import Order, OrderError, Reason, Status

ADDRESS = Address(name="Ada", line1="1 Loop St", city="Bath", postal_code="BA1", country="GB")
LINES = [OrderLine(product_id="p1", sku="S1", name="Kettle", quantity=2, unit_price_cents=1500)]


def _placed() -> Order:
    order, _ = Order.place("o1", "c1", LINES, 3000, ADDRESS)
    return order


def test_happy_path_versions_and_status() -> None:
    order, events = Order.place("o1", "c1", LINES, 3000, ADDRESS)
    events += order.stock_reserved()
    events += order.payment_authorized("auth-1")
    events += order.ship("sh-1")
    events += order.deliver("sh-1")
    assert [type(e).__name__ for e in events] == [
        "OrderPlaced",
        "OrderStockReserved",
        "OrderPaymentAuthorized",
        "OrderConfirmed",
        "OrderShipped",
        "OrderDelivered",
    ]
    assert [e.version for e in events] == [1, 2, 3, 4, 5, 6]
    assert order.status is Status.DELIVERED
    rebuilt = Order.from_events("o1", events)
    assert rebuilt == order


def test_place_refuses_bad_orders() -> None:
    with pytest.raises(OrderError, match="at least one line"):
        Order.place("o", "c", [], 0, ADDRESS)
    with pytest.raises(OrderError, match="total_cents"):
        Order.place("o", "c", LINES, 2999, ADDRESS)
    with pytest.raises(OrderError, match="positive quantity"):
        bad = [OrderLine(product_id="p", sku="s", name="n", quantity=0, unit_price_cents=1)]
        Order.place("o", "c", bad, 0, ADDRESS)


def test_cancel_rules() -> None:
    order = _placed()
    order.stock_reserved()
    (cancelled,) = order.cancel(Reason.PAYMENT_DECLINED, "card declined")
    assert order.status is Status.CANCELLED and order.reason == "PAYMENT_DECLINED"
    assert cancelled.version == 3
    assert order.cancel(Reason.CUSTOMER_CANCELLED) == []  # already cancelled: nothing new
    shipped = _placed()
    shipped.stock_reserved()
    shipped.payment_authorized("a")
    shipped.ship("s")
    with pytest.raises(OrderError, match="SHIPPED"):
        shipped.cancel(Reason.CUSTOMER_CANCELLED)


def test_out_of_order_decisions_do_nothing() -> None:
    order = _placed()
    assert order.payment_authorized("a") == []  # not reserved yet
    assert order.ship("s") == []
    order.cancel(Reason.OUT_OF_STOCK)
    assert order.stock_reserved() == []
    assert order.version == 2


def test_a_gap_in_versions_is_refused() -> None:
    order = _placed()
    events = order.stock_reserved()
    with pytest.raises(OrderError, match="does not follow"):
        Order.from_events("o1", events)
