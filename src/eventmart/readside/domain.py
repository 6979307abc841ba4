"""The read models and the rules that fold events into them (pure: no I/O, no frameworks).

The rules are order-independent across topics. An order's checkout travels on
basket.events and its life on ordering.events, a product's listing on catalog.events and
its stock on inventory.events: a replay may interleave two topics differently from the
live run, and folding the same events must give the same view either way. Within one
topic a key's events keep their order (one partition), which the rules rely on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

# Order statuses (the shop's public vocabulary, see docs/architecture.md).
PENDING = "PENDING"
STOCK_RESERVED = "STOCK_RESERVED"
PAYMENT_AUTHORIZED = "PAYMENT_AUTHORIZED"
CONFIRMED = "CONFIRMED"
CANCELLED = "CANCELLED"
SHIPPED = "SHIPPED"
DELIVERED = "DELIVERED"

CHECKOUT = "BasketCheckedOut"

# The status each event puts an order in, by the event's type name.
STATUS_AFTER: dict[str, str] = {
    CHECKOUT: PENDING,
    "OrderPlaced": PENDING,
    "OrderStockReserved": STOCK_RESERVED,
    "OrderPaymentAuthorized": PAYMENT_AUTHORIZED,
    "OrderConfirmed": CONFIRMED,
    "OrderCancelled": CANCELLED,
    "OrderShipped": SHIPPED,
    "OrderDelivered": DELIVERED,
}

# The checkout precedes the order's event stream, whose first event has version 1.
CHECKOUT_VERSION = 0


@dataclass(frozen=True, slots=True)
class OrderItem:
    product_id: str
    sku: str
    name: str
    quantity: int
    unit_price_cents: int


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One event in an order's life; unique per (order, type, version)."""

    type: str
    status: str
    version: int
    at_ms: int


@dataclass(frozen=True, slots=True)
class OrderView:
    """An order as customers and the shop see it.

    `version` is the order stream's version of the newest event applied (0: only the
    checkout is known); `status` and `updated_at_ms` come from that event. `placed_at_ms`
    is the earliest event's time, so it does not depend on which topic arrived first.
    """

    order_id: str
    customer_id: str
    status: str
    version: int
    items: tuple[OrderItem, ...] = ()
    total_cents: int = 0
    currency: str = "USD"
    cancellation_reason: str | None = None
    cancellation_detail: str | None = None
    placed_at_ms: int = 0
    updated_at_ms: int = 0
    timeline: tuple[TimelineEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class OrderChange:
    """What one event says about an order: the projection's input, free of the wire format.

    `items` and `total_cents` are None when the event does not carry them.
    """

    order_id: str
    customer_id: str
    type: str
    version: int
    at_ms: int
    items: tuple[OrderItem, ...] | None = None
    total_cents: int | None = None
    currency: str | None = None
    cancellation_reason: str | None = None
    cancellation_detail: str | None = None

    @property
    def status(self) -> str:
        return STATUS_AFTER[self.type]


def _timeline_order(entry: TimelineEntry) -> tuple[int, int, str]:
    return entry.version, entry.at_ms, entry.type


def apply_order_change(view: OrderView | None, change: OrderChange) -> OrderView | None:
    """The view after `change`, or None when it tells the view nothing new.

    - Status, version, update time and cancellation follow an event only if its version
      is greater than the view's: a redelivered or stale event never rolls the order back.
    - The timeline is the set of distinct events seen, keyed by (type, version) and sorted
      by version, so it is the same whatever order they arrived in.
    - Lines and total come from the checkout or OrderPlaced. The checkout only fills a view
      that has none, OrderPlaced (the write side's own record) replaces the checkout's;
      OrderConfirmed's total counts when it is newer.
    """
    entry = TimelineEntry(change.type, change.status, change.version, change.at_ms)
    if view is None:
        return OrderView(
            order_id=change.order_id,
            customer_id=change.customer_id,
            status=change.status,
            version=change.version,
            items=change.items or (),
            total_cents=change.total_cents or 0,
            currency=change.currency or "USD",
            cancellation_reason=change.cancellation_reason,
            cancellation_detail=change.cancellation_detail,
            placed_at_ms=change.at_ms,
            updated_at_ms=change.at_ms,
            timeline=(entry,),
        )
    updated = view
    newer = change.version > view.version
    if newer:
        updated = replace(
            updated, status=change.status, version=change.version, updated_at_ms=change.at_ms
        )
        if change.cancellation_reason is not None:
            updated = replace(
                updated,
                cancellation_reason=change.cancellation_reason,
                cancellation_detail=change.cancellation_detail,
            )
    if change.items is not None and (newer or not view.items):
        updated = replace(
            updated,
            items=change.items,
            total_cents=view.total_cents if change.total_cents is None else change.total_cents,
            currency=change.currency or view.currency,
        )
    elif change.total_cents is not None and newer:
        updated = replace(updated, total_cents=change.total_cents)
    if not updated.customer_id:
        updated = replace(updated, customer_id=change.customer_id)
    if change.at_ms < updated.placed_at_ms:
        updated = replace(updated, placed_at_ms=change.at_ms)
    if all((e.type, e.version) != (entry.type, entry.version) for e in view.timeline):
        updated = replace(
            updated, timeline=tuple(sorted((*view.timeline, entry), key=_timeline_order))
        )
    return None if updated == view else updated


@dataclass(frozen=True, slots=True)
class Listing:
    """A product as the catalog added it."""

    product_id: str
    sku: str
    name: str
    description: str
    category: str
    price_cents: int
    currency: str = "USD"
    image: str = ""


@dataclass(frozen=True, slots=True)
class StockLevel:
    product_id: str
    on_hand: int
    reserved: int
    available: int


@dataclass(frozen=True, slots=True)
class ProductView:
    """A product with its availability.

    A stock level can arrive before the product's listing (they travel on different
    topics); it is kept in an unlisted view that the listing completes. Queries show
    listed products only.
    """

    product_id: str
    listed: bool = False
    sku: str = ""
    name: str = ""
    description: str = ""
    category: str = ""
    price_cents: int = 0
    currency: str = "USD"
    image: str = ""
    on_hand: int = 0
    reserved: int = 0
    available: int = 0

    @property
    def in_stock(self) -> bool:
        return self.available > 0


def apply_listing(view: ProductView | None, listing: Listing) -> ProductView | None:
    """The view with the catalog's listing merged in; None if it was listed already.

    The catalog adds a product once, so a second ProductAdded is a re-publication: applying
    it again would take back a price change made since.
    """
    if view is not None and view.listed:
        return None
    base = view or ProductView(product_id=listing.product_id)
    return replace(
        base,
        listed=True,
        sku=listing.sku,
        name=listing.name,
        description=listing.description,
        category=listing.category,
        # A price change seen first is newer than the listing (the catalog adds first).
        price_cents=base.price_cents or listing.price_cents,
        currency=listing.currency,
        image=listing.image,
    )


def apply_price(view: ProductView | None, product_id: str, price_cents: int) -> ProductView | None:
    """The view at the new price; None if it already has it."""
    base = view or ProductView(product_id=product_id)
    if view is not None and view.price_cents == price_cents:
        return None
    return replace(base, price_cents=price_cents)


def apply_stock(view: ProductView | None, level: StockLevel) -> ProductView | None:
    """The view with the product's latest stock level; None if it already shows it."""
    base = view or ProductView(product_id=level.product_id)
    updated = replace(
        base, on_hand=level.on_hand, reserved=level.reserved, available=level.available
    )
    return None if view is not None and updated == view else updated
