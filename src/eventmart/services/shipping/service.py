"""shipping: composition root."""

from __future__ import annotations

from eventmart.contracts.shipping import (
    ShipmentCancelled,
    ShipmentCreated,
    ShipmentDelivered,
    ShipmentDispatched,
)
from eventmart.platform.infra import Platform
from eventmart.platform.runtime import Service, Subscription, service_app
from eventmart.platform.store import ServiceStore
from eventmart.services.shipping.adapters import CancelledOrderTable, ShipmentTable
from eventmart.services.shipping.api import router
from eventmart.services.shipping.fulfillment import ShipmentSteps, TimerFulfillment
from eventmart.services.shipping.handlers import shipping_handlers

NAME = "shipping"


def build(platform: Platform) -> Service:
    settings = platform.settings
    store = ServiceStore(platform.database(NAME), migrations=NAME)
    shipments = ShipmentTable(store.metadata)
    cancelled = CancelledOrderTable(store.metadata)
    # The embedded fulfillment; a workflow engine's implementation plugs in here.
    fulfillment = TimerFulfillment(
        ShipmentSteps(shipments),
        dispatch_delay_s=settings.shipping_dispatch_delay_s,
        delivery_delay_s=settings.shipping_delivery_delay_s,
    )
    private = fulfillment.private_messages()
    platform.codec.add_types(private)
    app = service_app(NAME, settings)
    service = Service(
        name=NAME,
        store=store,
        app=app,
        subscriptions=[
            Subscription(group=NAME, handlers=shipping_handlers(shipments, cancelled, fulfillment))
        ],
        produces=[
            ShipmentCreated,
            ShipmentDispatched,
            ShipmentDelivered,
            ShipmentCancelled,
            *private,
        ],
    )
    app.include_router(router(service, shipments))
    return service
