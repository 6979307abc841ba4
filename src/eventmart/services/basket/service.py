"""basket: composition root."""

from __future__ import annotations

from eventmart.contracts.basket import BasketCheckedOut
from eventmart.platform.infra import Platform
from eventmart.platform.runtime import Service, Subscription, service_app
from eventmart.platform.store import ServiceStore
from eventmart.services.basket.adapters import BasketTable, CheckoutTable, PriceTable
from eventmart.services.basket.api import install_error_mapping, router
from eventmart.services.basket.handlers import price_list_handlers

NAME = "basket"


def build(platform: Platform) -> Service:
    store = ServiceStore(platform.database(NAME), migrations=NAME)
    prices = PriceTable(store.metadata)
    baskets = BasketTable(store.metadata)
    checkouts = CheckoutTable(store.metadata)
    app = service_app(NAME, platform.settings)
    install_error_mapping(app)
    service = Service(
        name=NAME,
        store=store,
        app=app,
        produces=[BasketCheckedOut],
        subscriptions=[Subscription(group=NAME, handlers=price_list_handlers(prices))],
    )
    app.include_router(router(service, prices, baskets, checkouts))
    return service
