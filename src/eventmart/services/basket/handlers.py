"""The basket's message handlers: keep the local price list in step with the catalog."""

from __future__ import annotations

from eventmart.contracts.catalog import ProductAdded, ProductPriceChanged
from eventmart.platform.errors import PoisonMessageError
from eventmart.platform.messages import Envelope
from eventmart.platform.messaging import Handlers, UnitOfWork
from eventmart.services.basket.adapters import PriceTable
from eventmart.services.basket.domain import Price


def price_list_handlers(prices: PriceTable) -> Handlers:
    """Handlers of the "basket" group on catalog.events. Both are idempotent in effect:
    they set values, they never add to them."""
    handlers = Handlers()

    @handlers.on(ProductAdded)
    def product_added(msg: ProductAdded, _env: Envelope, uow: UnitOfWork) -> None:
        prices.put(
            uow.conn,
            Price(
                product_id=msg.product_id,
                sku=msg.sku,
                name=msg.name,
                price_cents=msg.price_cents,
                currency=msg.currency,
            ),
        )

    @handlers.on(ProductPriceChanged)
    def product_price_changed(msg: ProductPriceChanged, _env: Envelope, uow: UnitOfWork) -> None:
        if not prices.set_price(uow.conn, msg.product_id, msg.new_price_cents):
            # The log keeps one product's events in order, so its ProductAdded came first and
            # must have failed. Retrying cannot help; the dead letter says what to redrive.
            raise PoisonMessageError(
                f"price change for product {msg.product_id}, which the basket never saw added "
                f"(redrive its ProductAdded first)"
            )

    return handlers
