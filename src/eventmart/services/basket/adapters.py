"""The basket's tables and queries (SQLAlchemy Core: SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    bindparam,
    delete,
    func,
    select,
    update,
)

from eventmart.platform.db import upsert_statement
from eventmart.platform.messages import now_ms
from eventmart.services.basket.domain import Item, Price


class PriceTable:
    """The local price list: products as the catalog announced them (event-carried state),
    so pricing a basket never calls the catalog. Applied in log order, which per product is
    the catalog's order (the topic is keyed by product id)."""

    def __init__(self, metadata: MetaData) -> None:
        self.t = Table(
            "products",
            metadata,
            Column("product_id", String(64), primary_key=True),
            Column("sku", String(64), nullable=False),
            Column("name", String(200), nullable=False),
            Column("price_cents", BigInteger, nullable=False),
            Column("currency", String(3), nullable=False),
        )
        t = self.t
        # Statements built once (their cache keys are memoized on the objects).
        self._get = select(t).where(t.c.product_id == bindparam("b_id"))
        self._many = select(t).where(t.c.product_id.in_(bindparam("b_ids", expanding=True)))
        self._set_price = update(t).where(t.c.product_id == bindparam("b_id"))

    def put(self, conn: Connection, price: Price) -> None:
        """Insert or overwrite (a replay of the catalog's events re-announces products)."""
        values = {
            "product_id": price.product_id,
            "sku": price.sku,
            "name": price.name,
            "price_cents": price.price_cents,
            "currency": price.currency,
        }
        conn.execute(upsert_statement(conn, self.t), values)

    def set_price(self, conn: Connection, product_id: str, price_cents: int) -> bool:
        """False when the product is not in the list."""
        changed = conn.execute(
            self._set_price, {"b_id": product_id, "price_cents": price_cents}
        ).rowcount
        return bool(changed)

    def get(self, conn: Connection, product_id: str) -> Price | None:
        row = conn.execute(self._get, {"b_id": product_id}).first()
        return Price(**row._mapping) if row else None

    def many(self, conn: Connection, product_ids: Iterable[str]) -> dict[str, Price]:
        ids = list(product_ids)
        if not ids:
            return {}
        rows = conn.execute(self._many, {"b_ids": ids}).all()
        return {r.product_id: Price(**r._mapping) for r in rows}


class BasketTable:
    """One basket per customer: a `baskets` row (the lock a write takes) and its items."""

    def __init__(self, metadata: MetaData) -> None:
        self.baskets = Table(
            "baskets",
            metadata,
            Column("customer_id", String(64), primary_key=True),
            Column("updated_at_ms", BigInteger, nullable=False),
        )
        self.items_t = Table(
            "basket_items",
            metadata,
            Column("customer_id", String(64), nullable=False),
            Column("product_id", String(64), nullable=False),
            Column("quantity", Integer, nullable=False),
            Column("added_at_ms", BigInteger, nullable=False),
            PrimaryKeyConstraint("customer_id", "product_id"),
        )
        t = self.items_t
        self._items = (
            select(t.c.product_id, t.c.quantity)
            .where(t.c.customer_id == bindparam("b_customer"))
            .order_by(t.c.added_at_ms, t.c.product_id)
        )
        self._remove = delete(t).where(
            t.c.customer_id == bindparam("b_customer"), t.c.product_id == bindparam("b_product")
        )
        self._clear = delete(t).where(t.c.customer_id == bindparam("b_customer"))

    def lock(self, conn: Connection, customer_id: str) -> None:
        """Take the customer's basket for this transaction (creating its row if need be).

        On PostgreSQL the upsert holds the row lock until commit, so two writes to one
        basket (two tabs, a double-clicked checkout) run one after the other and each sees
        the other's result; SQLite's BEGIN IMMEDIATE already serializes writers.
        """
        conn.execute(
            upsert_statement(conn, self.baskets),
            {"customer_id": customer_id, "updated_at_ms": now_ms()},
        )

    def items(self, conn: Connection, customer_id: str) -> list[Item]:
        rows = conn.execute(self._items, {"b_customer": customer_id}).all()
        return [Item(r.product_id, r.quantity) for r in rows]

    def put(self, conn: Connection, customer_id: str, item: Item) -> None:
        """Set an item's quantity; a product already in the basket keeps its place (its
        `added_at_ms`)."""
        conn.execute(
            upsert_statement(conn, self.items_t, update=("quantity",)),
            {
                "customer_id": customer_id,
                "product_id": item.product_id,
                "quantity": item.quantity,
                "added_at_ms": now_ms(),
            },
        )

    def remove(self, conn: Connection, customer_id: str, product_id: str) -> None:
        conn.execute(self._remove, {"b_customer": customer_id, "b_product": product_id})

    def clear(self, conn: Connection, customer_id: str) -> None:
        conn.execute(self._clear, {"b_customer": customer_id})

    def count(self, conn: Connection) -> int:
        """Items in all baskets (for tests and ops)."""
        return int(conn.execute(select(func.count()).select_from(self.items_t)).scalar() or 0)


@dataclass(frozen=True, slots=True)
class Checkout:
    """A checkout that happened: the order it started, and a digest of the request that
    asked for it (to tell a retry from a different request under the same key)."""

    order_id: str
    request_sha256: str


class CheckoutTable:
    """Checkouts by (customer, Idempotency-Key). The primary key is what makes a checkout
    happen once: of two concurrent requests with one key, the second insert fails."""

    def __init__(self, metadata: MetaData) -> None:
        self.t = Table(
            "checkouts",
            metadata,
            Column("customer_id", String(64), nullable=False),
            Column("idempotency_key", String(100), nullable=False),
            Column("order_id", String(64), nullable=False, unique=True),
            Column("request_sha256", String(64), nullable=False),
            Column("created_at", DateTime(timezone=True), nullable=False),
            PrimaryKeyConstraint("customer_id", "idempotency_key"),
        )
        t = self.t
        self._find = select(t.c.order_id, t.c.request_sha256).where(
            t.c.customer_id == bindparam("b_customer"), t.c.idempotency_key == bindparam("b_key")
        )
        self._insert = t.insert()

    def find(self, conn: Connection, customer_id: str, idempotency_key: str) -> Checkout | None:
        found = conn.execute(self._find, {"b_customer": customer_id, "b_key": idempotency_key})
        row = found.first()
        return Checkout(row.order_id, row.request_sha256) if row else None

    def record(
        self,
        conn: Connection,
        customer_id: str,
        idempotency_key: str,
        checkout: Checkout,
    ) -> None:
        """Raises `sqlalchemy.exc.IntegrityError` if this key was already used."""
        conn.execute(
            self._insert,
            {
                "customer_id": customer_id,
                "idempotency_key": idempotency_key,
                "order_id": checkout.order_id,
                "request_sha256": checkout.request_sha256,
                "created_at": datetime.now(UTC),
            },
        )
