"""ordering: the order's life, from placement to delivery or cancellation.

Every event carries the order's stream version, so read models can apply them
idempotently and in order (an event at or below the version a view holds is old news).
"""

from __future__ import annotations

from eventmart.contracts.common import Address, OrderLine
from eventmart.platform.messages import Event


class OrderEvent(Event, frozen=True, kw_only=True):
    abstract = True
    namespace = "eventmart.ordering"
    topic = "ordering.events"
    key_field = "order_id"

    order_id: str
    customer_id: str
    version: int


class OrderPlaced(OrderEvent, frozen=True, kw_only=True):
    lines: list[OrderLine]
    total_cents: int
    shipping_address: Address
    currency: str = "USD"


class OrderStockReserved(OrderEvent, frozen=True, kw_only=True):
    pass


class OrderPaymentAuthorized(OrderEvent, frozen=True, kw_only=True):
    authorization_id: str


class OrderConfirmed(OrderEvent, frozen=True, kw_only=True):
    total_cents: int


class OrderCancelled(OrderEvent, frozen=True, kw_only=True):
    """reason: OUT_OF_STOCK, PAYMENT_DECLINED, PAYMENT_TIMEOUT or CUSTOMER_CANCELLED."""

    reason: str
    detail: str = ""


class OrderShipped(OrderEvent, frozen=True, kw_only=True):
    shipment_id: str


class OrderDelivered(OrderEvent, frozen=True, kw_only=True):
    shipment_id: str
