"""Read-side projections against a real view store: statuses, the version guard, the
timeline, product and stock merging, queries and generations.

The `views` fixture is parametrized by adapter; a new ViewStore adapter joins its params
and must pass every test here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from sqlalchemy import inspect

from eventmart.contracts.basket import BasketCheckedOut
from eventmart.contracts.catalog import ProductAdded, ProductPriceChanged
from eventmart.contracts.common import Address, OrderLine
from eventmart.contracts.inventory import StockLevelChanged, StockReserved
from eventmart.contracts.ordering import (
    OrderCancelled,
    OrderConfirmed,
    OrderDelivered,
    OrderPaymentAuthorized,
    OrderPlaced,
    OrderShipped,
    OrderStockReserved,
)
from eventmart.platform.errors import RetryLaterError
from eventmart.platform.infra import Platform
from eventmart.platform.messages import Envelope, Message, new_id
from eventmart.platform.messaging import Handlers, MessageWriter, unit_of_work
from eventmart.platform.store import ServiceStore
from eventmart.readside.adapters import SqlViewStore
from eventmart.readside.domain import OrderView, TimelineEntry
from eventmart.readside.projections import projection_handlers
from eventmart.readside.views import (
    ORDERS,
    PRODUCTS,
    VIEWS_DATABASE,
    UnknownProjectionError,
    ViewStore,
)
from tests.unit import readside_stores

CUSTOMER = "cust-1"
ADDRESS = Address(name="Ada", line1="1 Loop St", city="Lyon", postal_code="69001", country="FR")
LINES = [
    OrderLine(product_id="p-1", sku="SKU-1", name="Kettle", quantity=2, unit_price_cents=1500),
    OrderLine(product_id="p-2", sku="SKU-2", name="Mug", quantity=1, unit_price_cents=700),
]
T0 = 1_700_000_000_000


@dataclass
class Projector:
    """Feeds messages to a projection's handlers, one unit of work each, as a consumer does."""

    views: ViewStore
    store: ServiceStore
    writer: MessageWriter
    generation: int = 1
    _handlers: dict[str, Handlers] = field(default_factory=dict)

    def __call__(self, msg: Message, at_ms: int = T0) -> None:
        self.batch([(msg, at_ms)])

    def batch(self, messages: list[tuple[Message, int]]) -> None:
        """Messages in one unit of work, as a consumer handles a polled batch."""
        with unit_of_work(self.store, self.writer) as uow:
            for msg, at_ms in messages:
                projection = (
                    PRODUCTS if msg.topic in ("catalog.events", "inventory.events") else ORDERS
                )
                handlers = self._handlers.get(projection)
                if handlers is None:
                    handlers = projection_handlers(self.views, projection, self.generation)
                    self._handlers[projection] = handlers
                env = Envelope(
                    message_id=new_id(),
                    type=msg.type_name(),
                    key=msg.key(),
                    source="test",
                    occurred_at_ms=at_ms,
                    correlation_id=new_id(),
                )
                handlers.handler(env.type)(msg, env, uow)


@pytest.fixture(scope="session")
def cassandra_keyspace(request: pytest.FixtureRequest) -> Iterator[readside_stores.Keyspace]:
    """The session's Cassandra (tests/engines.py's, or one of our own) and a keyspace."""
    yield from readside_stores.cassandra_keyspace(request)


@pytest.fixture(params=["sql", pytest.param("cassandra", marks=pytest.mark.distributed)])
def views(request: pytest.FixtureRequest, platform: Platform) -> Iterator[ViewStore]:
    """Each store; the consumer's inbox (`project`) is SQL for both, as in the service."""
    if request.param == "sql":
        store = SqlViewStore(platform.database(VIEWS_DATABASE))
        store.create()
        yield store
    else:
        with readside_stores.cassandra_store(request.getfixturevalue("cassandra_keyspace")) as c:
            yield c


@pytest.fixture
def project(views: ViewStore, platform: Platform) -> Projector:
    store = ServiceStore(platform.database(VIEWS_DATABASE))
    store.create()
    return Projector(views, store, MessageWriter(platform.codec, "test"))


def checkout(order_id: str = "o-1", customer_id: str = CUSTOMER) -> BasketCheckedOut:
    return BasketCheckedOut(
        order_id=order_id,
        customer_id=customer_id,
        lines=LINES,
        total_cents=3700,
        shipping_address=ADDRESS,
        card_token="tok_visa",
    )


def order_events(order_id: str = "o-1", customer_id: str = CUSTOMER) -> list[Message]:
    """The happy path, versions 1..7."""
    ids = {"order_id": order_id, "customer_id": customer_id}
    return [
        OrderPlaced(**ids, version=1, lines=LINES, total_cents=3700, shipping_address=ADDRESS),
        OrderStockReserved(**ids, version=2),
        OrderPaymentAuthorized(**ids, version=3, authorization_id="auth-1"),
        OrderConfirmed(**ids, version=4, total_cents=3700),
        OrderShipped(**ids, version=5, shipment_id="s-1"),
        OrderDelivered(**ids, version=6, shipment_id="s-1"),
    ]


def order(views: ViewStore, order_id: str = "o-1") -> OrderView:
    found = views.order(order_id)
    assert found is not None, f"no view for order {order_id}"
    return found


# -- orders ---------------------------------------------------------------------------
def test_order_follows_checkout_and_events_to_delivery(
    views: ViewStore, project: Projector
) -> None:
    project(checkout(), at_ms=T0)
    view = order(views)
    assert (view.status, view.version, view.customer_id) == ("PENDING", 0, CUSTOMER)
    assert [(i.sku, i.quantity, i.unit_price_cents) for i in view.items] == [
        ("SKU-1", 2, 1500),
        ("SKU-2", 1, 700),
    ]
    assert view.total_cents == 3700

    expected = ["PENDING", "STOCK_RESERVED", "PAYMENT_AUTHORIZED", "CONFIRMED"]
    expected += ["SHIPPED", "DELIVERED"]
    for i, (event, status) in enumerate(zip(order_events(), expected, strict=True), start=1):
        project(event, at_ms=T0 + i * 1000)
        view = order(views)
        assert (view.status, view.version, view.updated_at_ms) == (status, i, T0 + i * 1000)

    assert [(e.type, e.status, e.version) for e in view.timeline] == [
        ("BasketCheckedOut", "PENDING", 0),
        ("OrderPlaced", "PENDING", 1),
        ("OrderStockReserved", "STOCK_RESERVED", 2),
        ("OrderPaymentAuthorized", "PAYMENT_AUTHORIZED", 3),
        ("OrderConfirmed", "CONFIRMED", 4),
        ("OrderShipped", "SHIPPED", 5),
        ("OrderDelivered", "DELIVERED", 6),
    ]
    assert view.placed_at_ms == T0 and view.cancellation_reason is None


def test_cancellation_keeps_reason_and_detail(views: ViewStore, project: Projector) -> None:
    project(checkout())
    project(order_events()[0], at_ms=T0 + 1)
    project(
        OrderCancelled(
            order_id="o-1",
            customer_id=CUSTOMER,
            version=2,
            reason="OUT_OF_STOCK",
            detail="SKU-2 unavailable",
        ),
        at_ms=T0 + 2,
    )
    view = order(views)
    assert (view.status, view.cancellation_reason, view.cancellation_detail) == (
        "CANCELLED",
        "OUT_OF_STOCK",
        "SKU-2 unavailable",
    )
    assert view.timeline[-1] == TimelineEntry("OrderCancelled", "CANCELLED", 2, T0 + 2)


def test_stale_and_redelivered_events_change_nothing(views: ViewStore, project: Projector) -> None:
    events = order_events()
    project(checkout())
    for i, e in enumerate(events[:4], start=1):  # up to CONFIRMED, version 4
        project(e, at_ms=T0 + i)
    confirmed = views.snapshot(ORDERS)

    project(events[3], at_ms=T0 + 50)  # OrderConfirmed again, with a new message id
    project(events[1], at_ms=T0 + 60)  # OrderStockReserved (v2), late
    project(checkout(), at_ms=T0 + 70)  # the checkout again
    assert views.snapshot(ORDERS) == confirmed
    view = order(views)
    assert (view.status, view.version, view.updated_at_ms) == ("CONFIRMED", 4, T0 + 4)
    assert len(view.timeline) == len({(e.type, e.version) for e in view.timeline}) == 5


def test_an_unseen_older_event_joins_the_timeline_but_not_the_status(
    views: ViewStore, project: Projector
) -> None:
    events = order_events()
    project(events[0], at_ms=T0 + 1)
    project(events[2], at_ms=T0 + 3)  # PAYMENT_AUTHORIZED, v3
    project(events[1], at_ms=T0 + 2)  # STOCK_RESERVED, v2, arrives after v3
    view = order(views)
    assert (view.status, view.version) == ("PAYMENT_AUTHORIZED", 3)
    assert [e.version for e in view.timeline] == [1, 2, 3]


def test_checkout_and_order_events_interleave_to_the_same_view(
    views: ViewStore, project: Projector
) -> None:
    """basket.events and ordering.events are separate topics: a replay may interleave
    them differently, and must build the same view."""
    built = []
    for position in range(len(order_events()) + 1):
        order_id = f"o-{position}"
        sequence: list[tuple[Message, int]] = [
            (e, T0 + 10 * v) for v, e in enumerate(order_events(order_id), start=1)
        ]
        sequence.insert(position, (checkout(order_id), T0))
        for msg, at in sequence:
            project(msg, at_ms=at)
        built.append(replace(order(views, order_id), order_id="any"))
    assert all(view == built[0] for view in built), built
    assert (built[0].status, built[0].placed_at_ms, built[0].updated_at_ms) == (
        "DELIVERED",
        T0,
        T0 + 60,
    )
    assert [e.version for e in built[0].timeline] == list(range(7))


def test_order_events_without_a_checkout_still_make_a_view(
    views: ViewStore, project: Projector
) -> None:
    project(order_events()[1], at_ms=T0 + 2)  # no checkout, no OrderPlaced yet
    assert (order(views).status, order(views).items) == ("STOCK_RESERVED", ())
    project(checkout(), at_ms=T0)
    view = order(views)
    assert view.status == "STOCK_RESERVED" and len(view.items) == 2 and view.total_cents == 3700
    assert view.placed_at_ms == T0


def test_saving_a_view_twice_keeps_one_copy(views: ViewStore, project: Projector) -> None:
    project(checkout())
    project(order_events()[0], at_ms=T0 + 1)
    view = order(views)
    with unit_of_work(project.store, project.writer) as uow:
        views.save_order(uow, view)
        views.save_order(uow, view)
    assert order(views) == view
    assert len(views.snapshot(ORDERS)["order_timeline"]) == 2


def test_a_batch_in_one_unit_of_work_makes_the_views_one_by_one_makes(
    views: ViewStore, project: Projector
) -> None:
    """A consumer's batch is one unit of work, in which a store may keep the views it
    changed and write them at the end: the views must not depend on that."""
    stock = StockLevelChanged(product_id="p-1", on_hand=5, reserved=1, available=4)
    listing = ProductAdded(
        product_id="p-1", sku="SKU-1", name="Kettle", description="", category="kitchen",
        price_cents=1500,
    )  # fmt: skip
    history: list[tuple[Message, int]] = [(checkout(), T0)]
    for n, event in enumerate(order_events()):
        history.append((event, T0 + 1 + n))
        history.append((event, T0 + 1 + n))  # redelivered within the batch
    history += [(checkout("o-2"), T0 + 50), (stock, T0 + 51), (listing, T0 + 52)]
    price = ProductPriceChanged(product_id="p-1", old_price_cents=1500, new_price_cents=1400)
    history.append((price, T0 + 53))
    for msg, at_ms in history:
        project(msg, at_ms)
    one_by_one = {p: views.snapshot(p) for p in (ORDERS, PRODUCTS)}
    views.start_generation(ORDERS)
    views.start_generation(PRODUCTS)
    batched = Projector(views, project.store, project.writer, generation=2)
    batched.batch(history[:7])
    batched.batch(history[7:])
    assert {p: views.snapshot(p) for p in (ORDERS, PRODUCTS)} == one_by_one
    assert order(views).status == "DELIVERED"
    assert [e.version for e in order(views).timeline] == list(range(7))


def test_orders_by_customer_newest_first_in_pages(views: ViewStore, project: Projector) -> None:
    for n in range(5):
        project(checkout(f"o-{n}"), at_ms=T0 + n * 1000)
    project(checkout("o-other", customer_id="someone-else"), at_ms=T0 + 99_000)
    first = views.orders_by_customer(CUSTOMER, page=1, page_size=2)
    assert first.total == 5 and [o.order_id for o in first.items] == ["o-4", "o-3"]
    last = views.orders_by_customer(CUSTOMER, page=3, page_size=2)
    assert [o.order_id for o in last.items] == ["o-0"]
    assert last.items[0].timeline[0].type == "BasketCheckedOut"
    assert views.orders_by_customer("nobody", page=1, page_size=10).total == 0
    assert views.order("o-missing") is None


# -- products -------------------------------------------------------------------------
def added(pid: str = "p-1", **overrides: Any) -> ProductAdded:
    fields: dict[str, Any] = {
        "product_id": pid,
        "sku": f"SKU-{pid}",
        "name": "Cast-iron Kettle",
        "description": "Boils water, slowly",
        "category": "kitchen",
        "price_cents": 2500,
    }
    return ProductAdded(**{**fields, **overrides})


def level(pid: str = "p-1", available: int = 7) -> StockLevelChanged:
    return StockLevelChanged(product_id=pid, on_hand=available + 1, reserved=1, available=available)


def test_stock_level_merges_with_the_listing_in_either_order(
    views: ViewStore, project: Projector
) -> None:
    project(added("p-a"))
    project(level("p-a", 7))
    project(level("p-b", 7))
    assert views.product("p-b") is None  # stock without a listing is not a product yet
    assert views.search_products(None, None, 1, 10).total == 1
    project(added("p-b"))

    a, b = views.product("p-a"), views.product("p-b")
    assert a is not None and b is not None
    assert (a.available, a.in_stock, a.price_cents) == (b.available, b.in_stock, b.price_cents)
    assert (b.available, b.on_hand, b.reserved, b.in_stock) == (7, 8, 1, True)

    project(level("p-b", 0))
    sold_out = views.product("p-b")
    assert sold_out is not None and (sold_out.available, sold_out.in_stock) == (0, False)


def test_price_changes_and_a_republished_listing_keeps_the_new_price(
    views: ViewStore, project: Projector
) -> None:
    project(added())
    project(ProductPriceChanged(product_id="p-1", old_price_cents=2500, new_price_cents=1999))
    project(added())  # re-published with a new message id
    found = views.product("p-1")
    assert found is not None and found.price_cents == 1999
    project(ProductPriceChanged(product_id="p-1", old_price_cents=2500, new_price_cents=1999))
    assert views.product("p-1") == found


def test_other_inventory_events_are_not_the_products_business(project: Projector) -> None:
    handlers = projection_handlers(project.views, PRODUCTS, 1)
    assert not handlers.handles(StockReserved.type_name())
    assert handlers.handles(StockLevelChanged.type_name())


def test_search_filters_and_pages(views: ViewStore, project: Projector) -> None:
    for n in range(6):
        project(added(f"p-{n}", name=f"Enamel Mug {n}", category="kitchen"))
    project(added("p-x", name="Trowel", description="100% steel", category="garden"))
    project(added("p-y", name="Hose", description="1000 mm", category="garden"))

    assert views.search_products("enamel MUG", None, 1, 100).total == 6
    assert [p.product_id for p in views.search_products("sku-p-x", None, 1, 10).items] == ["p-x"]
    assert [p.name for p in views.search_products("100%", None, 1, 10).items] == ["Trowel"]
    garden = views.search_products(None, "garden", 1, 10)
    assert {p.category for p in garden.items} == {"garden"} and garden.total == 2
    page2 = views.search_products(None, "kitchen", 2, 4)
    assert page2.total == 6 and [p.sku for p in page2.items] == ["SKU-p-4", "SKU-p-5"]
    assert views.search_products("nothing-like-this", None, 1, 10).total == 0


# -- generations ----------------------------------------------------------------------
def test_new_generation_empties_only_its_projection(views: ViewStore, project: Projector) -> None:
    project(checkout())
    project(added())
    assert views.generation(ORDERS) == 1
    assert views.start_generation(ORDERS) == 2
    assert views.generation(ORDERS) == 2 and views.generation(PRODUCTS) == 1
    assert views.snapshot(ORDERS) == {"order_views": [], "order_timeline": []}
    assert views.product("p-1") is not None
    with pytest.raises(UnknownProjectionError, match="orders"):
        views.start_generation("shipments")


def test_a_retired_generation_cannot_write(views: ViewStore, project: Projector) -> None:
    views.start_generation(ORDERS)
    with pytest.raises(RetryLaterError, match="rebuilt"):
        project(checkout())  # handlers of generation 1
    assert views.order("o-1") is None
    project.generation = 2
    project._handlers.clear()
    project(checkout())
    assert views.order("o-1") is not None


def test_sql_snapshot_covers_every_view_table(platform: Platform) -> None:
    """A table the snapshot forgot would make 'replay gives identical views' vacuous."""
    db = platform.database(VIEWS_DATABASE)
    views = SqlViewStore(db)
    views.create()
    ServiceStore(db).create()
    chassis = set(ServiceStore(db).metadata.tables) | {"projections"}
    stored = set(inspect(db.engine).get_table_names()) - chassis
    covered = set(views.snapshot(ORDERS)) | set(views.snapshot(PRODUCTS))
    assert stored == covered
