"""inventory: composition root."""

from __future__ import annotations

import logging

from eventmart.contracts.inventory import (
    StockCommitted,
    StockLevelChanged,
    StockReleased,
    StockReservationFailed,
    StockReserved,
)
from eventmart.demo import demo_products
from eventmart.platform.errors import ConcurrencyError
from eventmart.platform.infra import Platform
from eventmart.platform.runtime import Loop, Service, Subscription, service_app
from eventmart.platform.store import ServiceStore
from eventmart.services.inventory.adapters import (
    OrderReservations,
    ReservationOutcomes,
    StockStreams,
)
from eventmart.services.inventory.api import router
from eventmart.services.inventory.handlers import (
    Inventory,
    expire_reservations,
    inventory_handlers,
)

NAME = "inventory"
EXPIRY_INTERVAL_S = 1.0

log = logging.getLogger(__name__)


def build(platform: Platform) -> Service:
    settings = platform.settings
    store = ServiceStore(platform.database(NAME), migrations=NAME)
    inventory = Inventory(
        StockStreams(store.events),
        OrderReservations(store.metadata),
        ReservationOutcomes(store.metadata),
        settings.reservation_ttl_s,
    )
    app = service_app(NAME, settings)
    service = Service(
        name=NAME,
        store=store,
        app=app,
        subscriptions=[Subscription(group=NAME, handlers=inventory_handlers(inventory))],
        loops=[
            Loop(
                "reservation-expiry",
                lambda: expire_reservations(service, inventory),
                EXPIRY_INTERVAL_S,
            )
        ],
        produces=[
            StockReserved,
            StockReservationFailed,
            StockReleased,
            StockCommitted,
            StockLevelChanged,
        ],
    )
    app.include_router(router(service, inventory))

    def seed() -> None:
        """First start with demo data: receive the demo stock (levels go out via the outbox)."""
        if not settings.demo_data:
            return
        try:
            with service.uow() as uow:
                if inventory.streams.any_stock(uow.conn):
                    return
                inventory.receive(uow, [(p.product_id, p.stock) for p in demo_products()])
        except ConcurrencyError:
            # Another process of the service seeded the same streams at the same moment.
            log.info("demo stock was received by another inventory process")

    service.on_start.append(seed)
    return service
