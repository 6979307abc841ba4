"""payment: composition root."""

from __future__ import annotations

from eventmart.platform.infra import Platform
from eventmart.platform.runtime import Service, Subscription, service_app
from eventmart.platform.store import ServiceStore
from eventmart.services.payment.adapters import PaymentTable
from eventmart.services.payment.api import router
from eventmart.services.payment.handlers import PRODUCES, payment_handlers
from eventmart.services.payment.messages import INTERNAL_MESSAGES

NAME = "payment"


def build(platform: Platform) -> Service:
    store = ServiceStore(platform.database(NAME), migrations=NAME)
    payments = PaymentTable(store.metadata)
    platform.codec.add_types(INTERNAL_MESSAGES)
    app = service_app(NAME, platform.settings)
    handlers = payment_handlers(payments, platform.settings.payment_slow_delay_s)
    service = Service(
        name=NAME,
        store=store,
        app=app,
        subscriptions=[Subscription(group=NAME, handlers=handlers)],
        produces=[*PRODUCES, *INTERNAL_MESSAGES],
    )
    app.include_router(router(service, payments))
    return service
