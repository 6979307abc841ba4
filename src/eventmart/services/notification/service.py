"""notification: composition root."""

from __future__ import annotations

from eventmart.platform.infra import Platform
from eventmart.platform.runtime import Service, Subscription, service_app
from eventmart.platform.store import ServiceStore
from eventmart.services.notification.adapters import CustomerTable, MailDrop, MailTable
from eventmart.services.notification.api import router
from eventmart.services.notification.handlers import customer_handlers, order_handlers

NAME = "notification"
# Customers are learned in a group of their own: while an order event waits (retrying)
# for its customer's UserRegistered, that event must be able to arrive.
CUSTOMERS_GROUP = f"{NAME}-customers"


def build(platform: Platform) -> Service:
    settings = platform.settings
    store = ServiceStore(platform.database(NAME), migrations=NAME)
    customers = CustomerTable(store.metadata)
    mails = MailTable(store.metadata)
    drop = MailDrop(settings.data_dir.absolute() / "mail")
    app = service_app(NAME, settings)
    service = Service(
        name=NAME,
        store=store,
        app=app,
        subscriptions=[
            Subscription(group=NAME, handlers=order_handlers(customers, mails, drop)),
            Subscription(group=CUSTOMERS_GROUP, handlers=customer_handlers(customers)),
        ],
    )
    app.include_router(router(service, mails, drop))
    return service
