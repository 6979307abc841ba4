"""The projections: contract events folded into views, one consumer group per projection.

A projection's group is named after its generation (`readside.orders.g3`); a rebuild
moves the projection to a new generation, whose group has no offsets and so reads the
log from the start. Handlers are fenced by generation: once a rebuild has started, a
consumer of the old generation cannot write into the emptied views.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from eventmart.contracts.basket import BasketCheckedOut
from eventmart.contracts.catalog import ProductAdded, ProductPriceChanged
from eventmart.contracts.common import OrderLine
from eventmart.contracts.inventory import StockLevelChanged
from eventmart.contracts.ordering import (
    OrderCancelled,
    OrderConfirmed,
    OrderDelivered,
    OrderEvent,
    OrderPaymentAuthorized,
    OrderPlaced,
    OrderShipped,
    OrderStockReserved,
)
from eventmart.platform.errors import RetryLaterError
from eventmart.platform.messages import Envelope
from eventmart.platform.messaging import Handlers, UnitOfWork
from eventmart.readside.domain import (
    CHECKOUT,
    CHECKOUT_VERSION,
    Listing,
    OrderChange,
    OrderItem,
    StockLevel,
    apply_listing,
    apply_order_change,
    apply_price,
    apply_stock,
)
from eventmart.readside.views import ORDERS, PRODUCTS, UnknownProjectionError, ViewStore

ORDER_EVENTS: tuple[type[OrderEvent], ...] = (
    OrderPlaced,
    OrderStockReserved,
    OrderPaymentAuthorized,
    OrderConfirmed,
    OrderCancelled,
    OrderShipped,
    OrderDelivered,
)


def group_name(projection: str, generation: int) -> str:
    return f"readside.{projection}.g{generation}"


# -- events -> changes -------------------------------------------------------------------
def _items(lines: list[OrderLine]) -> tuple[OrderItem, ...]:
    return tuple(
        OrderItem(
            product_id=line.product_id,
            sku=line.sku,
            name=line.name,
            quantity=line.quantity,
            unit_price_cents=line.unit_price_cents,
        )
        for line in lines
    )


def checkout_change(msg: BasketCheckedOut, env: Envelope) -> OrderChange:
    return OrderChange(
        order_id=msg.order_id,
        customer_id=msg.customer_id,
        type=CHECKOUT,
        version=CHECKOUT_VERSION,
        at_ms=env.occurred_at_ms,
        items=_items(msg.lines),
        total_cents=msg.total_cents,
        currency=msg.currency,
    )


def order_change(msg: OrderEvent, env: Envelope) -> OrderChange:
    change = OrderChange(
        order_id=msg.order_id,
        customer_id=msg.customer_id,
        type=type(msg).__name__,
        version=msg.version,
        at_ms=env.occurred_at_ms,
    )
    if isinstance(msg, OrderPlaced):
        return replace(
            change, items=_items(msg.lines), total_cents=msg.total_cents, currency=msg.currency
        )
    if isinstance(msg, OrderConfirmed):
        return replace(change, total_cents=msg.total_cents)
    if isinstance(msg, OrderCancelled):
        return replace(
            change, cancellation_reason=msg.reason, cancellation_detail=msg.detail or None
        )
    return change


# -- projection functions (the handlers' bodies) ----------------------------------------
def project_order(views: ViewStore, uow: UnitOfWork, change: OrderChange) -> None:
    updated = apply_order_change(views.load_order(uow, change.order_id), change)
    if updated is not None:
        views.save_order(uow, updated)


def project_checkout(
    views: ViewStore, uow: UnitOfWork, msg: BasketCheckedOut, env: Envelope
) -> None:
    project_order(views, uow, checkout_change(msg, env))


def project_order_event(views: ViewStore, uow: UnitOfWork, msg: OrderEvent, env: Envelope) -> None:
    project_order(views, uow, order_change(msg, env))


def project_product_added(views: ViewStore, uow: UnitOfWork, msg: ProductAdded) -> None:
    listing = Listing(
        product_id=msg.product_id,
        sku=msg.sku,
        name=msg.name,
        description=msg.description,
        category=msg.category,
        price_cents=msg.price_cents,
        currency=msg.currency,
        image=msg.image,
    )
    updated = apply_listing(views.load_product(uow, msg.product_id), listing)
    if updated is not None:
        views.save_product(uow, updated)


def project_price_changed(views: ViewStore, uow: UnitOfWork, msg: ProductPriceChanged) -> None:
    current = views.load_product(uow, msg.product_id)
    updated = apply_price(current, msg.product_id, msg.new_price_cents)
    if updated is not None:
        views.save_product(uow, updated)


def project_stock_level(views: ViewStore, uow: UnitOfWork, msg: StockLevelChanged) -> None:
    level = StockLevel(msg.product_id, msg.on_hand, msg.reserved, msg.available)
    updated = apply_stock(views.load_product(uow, msg.product_id), level)
    if updated is not None:
        views.save_product(uow, updated)


# -- consumer groups --------------------------------------------------------------------
class GenerationFence:
    """Refuses a unit of work once the projection has moved past this generation.

    It raises RetryLaterError: the consumer pauses and rewinds rather than dead-letters,
    and its worker switches to the new generation's group within a second. Checked once
    per unit of work (a consumer's batch is one).
    """

    def __init__(self, views: ViewStore, projection: str, generation: int) -> None:
        self.views = views
        self.projection = projection
        self.generation = generation

    def check(self, uow: UnitOfWork) -> None:
        if self in uow.state:
            return
        if not self.views.is_current(uow, self.projection, self.generation):
            raise RetryLaterError(
                f"projection {self.projection} was rebuilt; generation {self.generation} "
                "is retired",
                delay_s=1.0,
            )
        uow.state[self] = True


def orders_handlers(views: ViewStore, fence: GenerationFence) -> Handlers:
    handlers = Handlers()

    @handlers.on(BasketCheckedOut)
    def on_checkout(msg: BasketCheckedOut, env: Envelope, uow: UnitOfWork) -> None:
        fence.check(uow)
        project_checkout(views, uow, msg, env)

    def on_order_event(msg: OrderEvent, env: Envelope, uow: UnitOfWork) -> None:
        fence.check(uow)
        project_order_event(views, uow, msg, env)

    for event_type in ORDER_EVENTS:
        handlers.add(event_type, on_order_event)
    return handlers


def products_handlers(views: ViewStore, fence: GenerationFence) -> Handlers:
    handlers = Handlers()

    @handlers.on(ProductAdded)
    def on_added(msg: ProductAdded, _env: Envelope, uow: UnitOfWork) -> None:
        fence.check(uow)
        project_product_added(views, uow, msg)

    @handlers.on(ProductPriceChanged)
    def on_price(msg: ProductPriceChanged, _env: Envelope, uow: UnitOfWork) -> None:
        fence.check(uow)
        project_price_changed(views, uow, msg)

    @handlers.on(StockLevelChanged)
    def on_stock(msg: StockLevelChanged, _env: Envelope, uow: UnitOfWork) -> None:
        fence.check(uow)
        project_stock_level(views, uow, msg)

    return handlers


_HANDLERS: dict[str, Callable[[ViewStore, GenerationFence], Handlers]] = {
    ORDERS: orders_handlers,
    PRODUCTS: products_handlers,
}


def projection_handlers(views: ViewStore, projection: str, generation: int) -> Handlers:
    """The fenced handlers of one generation of a projection."""
    build = _HANDLERS.get(projection)
    if build is None:
        raise UnknownProjectionError(projection)
    return build(views, GenerationFence(views, projection, generation))
