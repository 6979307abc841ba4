"""basket: one basket per customer; checkout starts an order."""

from __future__ import annotations

from eventmart.contracts.common import Address, OrderLine
from eventmart.platform.messages import Event


class BasketEvent(Event, frozen=True, kw_only=True):
    abstract = True
    namespace = "eventmart.basket"
    topic = "basket.events"
    key_field = "order_id"


class BasketCheckedOut(BasketEvent, frozen=True, kw_only=True):
    """The customer checked out: prices are the catalog's at that moment, never the client's."""

    order_id: str
    customer_id: str
    lines: list[OrderLine]
    total_cents: int
    shipping_address: Address
    card_token: str
    currency: str = "USD"
