"""ordering: composition root."""

from __future__ import annotations

from eventmart.contracts.ordering import (
    OrderCancelled,
    OrderConfirmed,
    OrderDelivered,
    OrderPaymentAuthorized,
    OrderPlaced,
    OrderShipped,
    OrderStockReserved,
)
from eventmart.platform.infra import Platform
from eventmart.platform.messaging import Handlers
from eventmart.platform.runtime import Service, Subscription, service_app
from eventmart.platform.saga import ProcessManager
from eventmart.platform.store import ServiceStore
from eventmart.services.ordering.adapters import OrderRepository
from eventmart.services.ordering.api import router
from eventmart.services.ordering.messages import PaymentDeadlineReached
from eventmart.services.ordering.saga import Checkout, CheckoutSaga

NAME = "ordering"


def build(platform: Platform) -> Service:
    store = ServiceStore(platform.database(NAME), migrations=NAME)
    platform.codec.add_types([PaymentDeadlineReached])
    orders = OrderRepository(store)
    sagas = ProcessManager("checkout", Checkout, store.metadata, platform.codec)
    saga = CheckoutSaga(orders, sagas, platform.settings.payment_deadline_s)
    handlers = Handlers()
    saga.register(handlers)
    app = service_app(NAME, platform.settings)
    service = Service(
        name=NAME,
        store=store,
        app=app,
        subscriptions=[Subscription(group=NAME, handlers=handlers)],
        produces=[
            OrderPlaced,
            OrderStockReserved,
            OrderPaymentAuthorized,
            OrderConfirmed,
            OrderCancelled,
            OrderShipped,
            OrderDelivered,
            PaymentDeadlineReached,
        ],
    )
    app.include_router(router(service, orders, saga, sagas))
    return service
