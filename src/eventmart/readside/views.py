"""The read store port: the views, by the queries the read side answers.

The port speaks of queries and idempotent upserts, not of a storage technology: the SQL
adapter (`adapters.SqlViewStore`, SQLite or PostgreSQL) keeps the views in a few tables;
a Cassandra adapter keeps one table per query (order by id, orders by customer, products
by category) and passes the same tests.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from eventmart.platform.errors import EventmartError
from eventmart.readside.domain import OrderView, ProductView

if TYPE_CHECKING:
    from eventmart.platform.infra import Platform
    from eventmart.platform.messaging import UnitOfWork

T = TypeVar("T")

# The projections, each its own consumer group and its own set of views.
ORDERS = "orders"
PRODUCTS = "products"
PROJECTIONS = (ORDERS, PRODUCTS)

# The database (SQL adapter) the views live in: views.db on the embedded profile.
VIEWS_DATABASE = "views"


class UnknownProjectionError(EventmartError):
    """A projection name the read side does not have; the message lists those it has."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown projection {name!r}; known: {', '.join(PROJECTIONS)}")
        self.name = name


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    page: int
    page_size: int
    total: int


class ViewStore(ABC):
    """Where projections keep their views and queries read them.

    What every adapter guarantees:
    - writes are idempotent upserts keyed by the view's id: saving a view again leaves one
      copy, and an order's timeline entries are unique per (order, event type, version);
    - writes take the handler's unit of work and join its transaction where the backend
      has one (SQL: views and inbox rows commit together); a backend without one writes
      at once, which the idempotent, version-guarded upserts make safe;
    - `load_*` sees the unit of work's own writes, and on a backend with locks holds the
      view against a concurrent writer until the unit of work ends;
    - a projection's generation starts at 1; `start_generation` moves it on and empties
      the projection's views as one step, and `is_current` (read in the unit of work)
      tells a consumer of an older generation that it has been retired.
    """

    @abstractmethod
    def create(self) -> None:
        """Create the views' storage if it does not exist (idempotent)."""

    # -- orders ---------------------------------------------------------------------
    @abstractmethod
    def load_order(self, uow: UnitOfWork, order_id: str) -> OrderView | None:
        """The order view with its timeline, for a projection about to change it."""

    @abstractmethod
    def save_order(self, uow: UnitOfWork, view: OrderView) -> None:
        """Upsert the order view and add its timeline entries not stored yet."""

    @abstractmethod
    def order(self, order_id: str) -> OrderView | None: ...

    @abstractmethod
    def orders_by_customer(self, customer_id: str, page: int, page_size: int) -> Page[OrderView]:
        """A customer's orders, newest placed first (then by id, descending)."""

    # -- products -------------------------------------------------------------------
    @abstractmethod
    def load_product(self, uow: UnitOfWork, product_id: str) -> ProductView | None:
        """The product view, listed or not, for a projection about to change it."""

    @abstractmethod
    def save_product(self, uow: UnitOfWork, view: ProductView) -> None:
        """Upsert the product view."""

    @abstractmethod
    def product(self, product_id: str) -> ProductView | None:
        """A listed product (a stock level without a listing is not a product yet)."""

    @abstractmethod
    def search_products(
        self, q: str | None, category: str | None, page: int, page_size: int
    ) -> Page[ProductView]:
        """Listed products, by SKU. `q` matches a case-insensitive substring of the name,
        description or SKU; `category` matches exactly."""

    # -- generations ----------------------------------------------------------------
    @abstractmethod
    def generation(self, projection: str) -> int:
        """The projection's current generation (1 until its first rebuild)."""

    @abstractmethod
    def is_current(self, uow: UnitOfWork, projection: str, generation: int) -> bool:
        """Whether `generation` is still the projection's, as this unit of work sees it."""

    @abstractmethod
    def start_generation(self, projection: str) -> int:
        """Move the projection to its next generation with empty views; return it."""

    @abstractmethod
    def snapshot(self, projection: str) -> dict[str, list[dict[str, Any]]]:
        """Every stored row of the projection's views, by table, in key order: what a
        rebuild is compared with."""


def open_view_store(platform: Platform) -> ViewStore:
    """The read store the settings choose: SQL on `views` (views.db) on the embedded
    profile, Cassandra (keyspace `<namespace or eventmart>_views`) on the distributed one.
    Either way the consumers' inbox stays in the SQL `views` database (docs/readside.md)."""
    s = platform.settings
    if s.profile == "distributed":
        from eventmart.readside.cassandra import CassandraViewStore

        hosts = [h.strip() for h in s.cassandra_hosts.split(",") if h.strip()]
        return CassandraViewStore(hosts, s.cassandra_port, keyspace=s.cassandra_keyspace)
    from eventmart.readside.adapters import SqlViewStore

    return SqlViewStore(platform.database(VIEWS_DATABASE))
