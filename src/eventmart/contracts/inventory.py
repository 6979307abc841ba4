"""inventory: stock per product, reservations for orders.

Commands come from the ordering saga on `inventory.commands` (key: order id); replies about
an order go on `inventory.events` keyed by order id, stock levels keyed by product id.
"""

from __future__ import annotations

from eventmart.contracts.common import StockLine
from eventmart.platform.messages import Command, Event


class InventoryCommand(Command, frozen=True, kw_only=True):
    abstract = True
    namespace = "eventmart.inventory"
    topic = "inventory.commands"
    key_field = "order_id"


class ReserveStock(InventoryCommand, frozen=True, kw_only=True):
    """Hold stock for an order; all lines or none."""

    order_id: str
    lines: list[StockLine]


class ReleaseStock(InventoryCommand, frozen=True, kw_only=True):
    """Compensation: give back what the order holds (reserved or committed)."""

    order_id: str
    reason: str


class CommitStock(InventoryCommand, frozen=True, kw_only=True):
    """The order is confirmed: its reservation becomes a sale."""

    order_id: str


class InventoryEvent(Event, frozen=True, kw_only=True):
    abstract = True
    namespace = "eventmart.inventory"
    topic = "inventory.events"
    key_field = "order_id"


class StockReserved(InventoryEvent, frozen=True, kw_only=True):
    order_id: str
    lines: list[StockLine]


class StockReservationFailed(InventoryEvent, frozen=True, kw_only=True):
    order_id: str
    reason: str
    unavailable: list[str] = []


class StockReleased(InventoryEvent, frozen=True, kw_only=True):
    order_id: str
    reason: str


class StockCommitted(InventoryEvent, frozen=True, kw_only=True):
    order_id: str


class StockLevelChanged(InventoryEvent, frozen=True, kw_only=True):
    """A product's stock after any change: what the read side shows as availability."""

    key_field = "product_id"

    product_id: str
    on_hand: int
    reserved: int
    available: int
