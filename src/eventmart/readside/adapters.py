"""The SQL read store: the views in a few tables (SQLAlchemy Core: SQLite or PostgreSQL)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Connection,
    Index,
    Integer,
    MetaData,
    RowMapping,
    String,
    Table,
    Text,
    bindparam,
    delete,
    func,
    or_,
    select,
    update,
)

from eventmart.platform.db import Database, dialect_insert, upsert_statement
from eventmart.platform.messaging import UnitOfWork
from eventmart.readside.domain import OrderItem, OrderView, ProductView, TimelineEntry
from eventmart.readside.views import (
    ORDERS,
    PRODUCTS,
    PROJECTIONS,
    Page,
    UnknownProjectionError,
    ViewStore,
)


@dataclass
class _Unit:
    """One unit of work's views: those it loaded or saved, as it sees them, and those it
    changed, written back together when the unit of work flushes (before it commits).

    A consumer's batch is one unit of work, so a batch costs a load per distinct view it
    touches and one multi-row upsert per table, instead of a load and a save per event."""

    orders: dict[str, OrderView | None] = field(default_factory=dict)
    # Per order, the timeline entries (type, version) the table already holds.
    stored_timeline: dict[str, set[tuple[str, int]]] = field(default_factory=dict)
    changed_orders: dict[str, OrderView] = field(default_factory=dict)
    products: dict[str, ProductView | None] = field(default_factory=dict)
    changed_products: dict[str, ProductView] = field(default_factory=dict)


class SqlViewStore(ViewStore):
    """The views in SQL tables; writes run in the handler's transaction (`uow.conn`), so
    they commit with the consumer's inbox rows.

    Writes are deferred to the end of the unit of work: `save_*` keeps the view with the
    unit of work (where `load_*` finds it again) and the unit of work's `flush()` — which
    `unit_of_work()` and the consumer runtime call just before committing — writes every
    changed view in one statement per table, ahead of its outbox rows.

    On PostgreSQL, `load_*` takes a transaction-scoped advisory lock on the view's id
    (a row lock cannot cover a view not created yet), so two consumers of one order (its
    checkout and its events arrive on different topics) do not lose each other's update;
    `is_current` share-locks the generation row, so a rebuild's generation change waits
    for a retiring consumer's transaction. SQLite needs neither: a writer holds the
    whole database (BEGIN IMMEDIATE).
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.metadata = MetaData()
        self.orders = Table(
            "order_views",
            self.metadata,
            Column("order_id", String(64), primary_key=True),
            Column("customer_id", String(64), nullable=False),
            Column("status", String(32), nullable=False),
            Column("version", Integer, nullable=False),
            Column("items", JSON, nullable=False),
            Column("total_cents", BigInteger, nullable=False),
            Column("currency", String(3), nullable=False),
            Column("cancellation_reason", String(64)),
            Column("cancellation_detail", Text),
            Column("placed_at_ms", BigInteger, nullable=False),
            Column("updated_at_ms", BigInteger, nullable=False),
        )
        Index(
            "ix_order_views_customer",
            self.orders.c.customer_id,
            self.orders.c.placed_at_ms,
            self.orders.c.order_id,
        )
        self.timeline = Table(
            "order_timeline",
            self.metadata,
            Column("order_id", String(64), primary_key=True),
            Column("type", String(100), primary_key=True),
            Column("version", Integer, primary_key=True),
            Column("status", String(32), nullable=False),
            Column("at_ms", BigInteger, nullable=False),
        )
        self.products = Table(
            "product_views",
            self.metadata,
            Column("product_id", String(64), primary_key=True),
            Column("listed", Boolean, nullable=False),
            Column("sku", String(64), nullable=False),
            Column("name", String(200), nullable=False),
            Column("description", Text, nullable=False),
            Column("category", String(100), nullable=False),
            Column("price_cents", BigInteger, nullable=False),
            Column("currency", String(3), nullable=False),
            Column("image", String(300), nullable=False),
            Column("on_hand", BigInteger, nullable=False),
            Column("reserved", BigInteger, nullable=False),
            Column("available", BigInteger, nullable=False),
        )
        Index(
            "ix_product_views_category",
            self.products.c.listed,
            self.products.c.category,
            self.products.c.sku,
        )
        self.generations = Table(
            "projections",
            self.metadata,
            Column("name", String(100), primary_key=True),
            Column("generation", Integer, nullable=False),
        )
        g = self.generations
        self._current_generation = (
            select(g.c.generation).where(g.c.name == bindparam("b_name")).with_for_update(read=True)
        )
        self._tables: dict[str, tuple[Table, ...]] = {
            ORDERS: (self.orders, self.timeline),
            PRODUCTS: (self.products,),
        }
        # Statements built once (SQLAlchemy caches their compiled form by identity).
        o, t, p = self.orders, self.timeline, self.products
        # An order with its timeline in one query: the order's columns on every timeline
        # row (or once, with no timeline), the entries in timeline order.
        self._select_order = (
            select(
                o,
                t.c.type.label("t_type"),
                t.c.status.label("t_status"),
                t.c.version.label("t_version"),
                t.c.at_ms.label("t_at_ms"),
            )
            .select_from(o.outerjoin(t, t.c.order_id == o.c.order_id))
            .where(o.c.order_id == bindparam("order_id"))
            .order_by(t.c.version, t.c.at_ms, t.c.type)
        )
        self._select_product = select(p).where(p.c.product_id == bindparam("product_id"))
        self._writes: dict[str, _Writes] = {}

    def create(self) -> None:
        self.db.create_all(self.metadata)
        with self.db.transaction() as conn:
            known = set(conn.execute(select(self.generations.c.name)).scalars())
            missing = [{"name": p, "generation": 1} for p in PROJECTIONS if p not in known]
            if missing:
                conn.execute(
                    dialect_insert(conn, self.generations).on_conflict_do_nothing(
                        index_elements=["name"]
                    ),
                    missing,
                )

    # -- orders ---------------------------------------------------------------------
    # -- the unit of work's views ----------------------------------------------------
    def _unit(self, uow: UnitOfWork) -> _Unit:
        unit: _Unit | None = uow.state.get(self)
        if unit is None:
            unit = uow.state[self] = _Unit()
            conn = uow.conn
            uow.before_flush(lambda: self._write(conn, unit))
        return unit

    def _write(self, conn: Connection, unit: _Unit) -> None:
        writes = self._writes.get(conn.dialect.name)
        if writes is None:
            writes = self._writes[conn.dialect.name] = _Writes(conn, self)
        if unit.changed_orders:
            views = list(unit.changed_orders.values())
            conn.execute(writes.upsert_order, [self._order_row(v) for v in views])
            entries = [
                {
                    "order_id": v.order_id,
                    "type": e.type,
                    "version": e.version,
                    "status": e.status,
                    "at_ms": e.at_ms,
                }
                for v in views
                for e in v.timeline
                if (e.type, e.version) not in unit.stored_timeline.get(v.order_id, ())
            ]
            if entries:
                conn.execute(writes.insert_timeline, entries)
            for v in views:
                unit.stored_timeline[v.order_id] = {(e.type, e.version) for e in v.timeline}
            unit.changed_orders.clear()
        if unit.changed_products:
            rows = [self._product_row(v) for v in unit.changed_products.values()]
            conn.execute(writes.upsert_product, rows)
            unit.changed_products.clear()

    # -- orders ---------------------------------------------------------------------
    def load_order(self, uow: UnitOfWork, order_id: str) -> OrderView | None:
        unit = self._unit(uow)
        if order_id in unit.orders:
            return unit.orders[order_id]
        _lock_view(uow.conn, ORDERS, order_id)
        view = self._read_order(uow.conn, order_id)
        if view is not None:
            unit.stored_timeline[order_id] = {(e.type, e.version) for e in view.timeline}
        unit.orders[order_id] = view
        return view

    def _read_order(self, conn: Connection, order_id: str) -> OrderView | None:
        """An order with its timeline, in one query (the order joined to its entries)."""
        rows = conn.execute(self._select_order, {"order_id": order_id}).all()
        if not rows:
            return None
        timeline = [
            TimelineEntry(r.t_type, r.t_status, r.t_version, r.t_at_ms)
            for r in rows
            if r.t_type is not None
        ]
        return self._order(rows[0]._mapping, timeline)

    def save_order(self, uow: UnitOfWork, view: OrderView) -> None:
        unit = self._unit(uow)
        unit.orders[view.order_id] = view
        unit.changed_orders[view.order_id] = view

    @staticmethod
    def _order_row(view: OrderView) -> dict[str, Any]:
        return {
            "order_id": view.order_id,
            "customer_id": view.customer_id,
            "status": view.status,
            "version": view.version,
            "items": [
                {
                    "product_id": i.product_id,
                    "sku": i.sku,
                    "name": i.name,
                    "quantity": i.quantity,
                    "unit_price_cents": i.unit_price_cents,
                }
                for i in view.items
            ],
            "total_cents": view.total_cents,
            "currency": view.currency,
            "cancellation_reason": view.cancellation_reason,
            "cancellation_detail": view.cancellation_detail,
            "placed_at_ms": view.placed_at_ms,
            "updated_at_ms": view.updated_at_ms,
        }

    def order(self, order_id: str) -> OrderView | None:
        with self.db.read() as conn:
            return self._read_order(conn, order_id)

    def orders_by_customer(self, customer_id: str, page: int, page_size: int) -> Page[OrderView]:
        t = self.orders
        where = t.c.customer_id == customer_id
        with self.db.read() as conn:
            total = conn.execute(select(func.count()).select_from(t).where(where)).scalar()
            rows = conn.execute(
                select(t)
                .where(where)
                .order_by(t.c.placed_at_ms.desc(), t.c.order_id.desc())
                .offset((page - 1) * page_size)
                .limit(page_size)
            ).all()
            timelines = self._timelines(conn, [r.order_id for r in rows])
        return Page(
            items=[self._order(r._mapping, timelines[r.order_id]) for r in rows],
            page=page,
            page_size=page_size,
            total=int(total or 0),
        )

    def _timelines(
        self, conn: Connection, order_ids: Sequence[str]
    ) -> dict[str, list[TimelineEntry]]:
        out: dict[str, list[TimelineEntry]] = {o: [] for o in order_ids}
        if not order_ids:
            return out
        t = self.timeline
        rows = conn.execute(
            select(t)
            .where(t.c.order_id.in_(order_ids))
            .order_by(t.c.order_id, t.c.version, t.c.at_ms, t.c.type)
        ).all()
        for r in rows:
            out[r.order_id].append(TimelineEntry(r.type, r.status, r.version, r.at_ms))
        return out

    @staticmethod
    def _order(row: RowMapping, timeline: list[TimelineEntry]) -> OrderView:
        return OrderView(
            order_id=row["order_id"],
            customer_id=row["customer_id"],
            status=row["status"],
            version=row["version"],
            items=tuple(OrderItem(**i) for i in row["items"]),
            total_cents=row["total_cents"],
            currency=row["currency"],
            cancellation_reason=row["cancellation_reason"],
            cancellation_detail=row["cancellation_detail"],
            placed_at_ms=row["placed_at_ms"],
            updated_at_ms=row["updated_at_ms"],
            timeline=tuple(timeline),
        )

    # -- products -------------------------------------------------------------------
    def load_product(self, uow: UnitOfWork, product_id: str) -> ProductView | None:
        unit = self._unit(uow)
        if product_id in unit.products:
            return unit.products[product_id]
        _lock_view(uow.conn, PRODUCTS, product_id)
        row = uow.conn.execute(self._select_product, {"product_id": product_id}).first()
        view = ProductView(**row._mapping) if row else None
        unit.products[product_id] = view
        return view

    def save_product(self, uow: UnitOfWork, view: ProductView) -> None:
        unit = self._unit(uow)
        unit.products[view.product_id] = view
        unit.changed_products[view.product_id] = view

    @staticmethod
    def _product_row(view: ProductView) -> dict[str, Any]:
        return {
            "product_id": view.product_id,
            "listed": view.listed,
            "sku": view.sku,
            "name": view.name,
            "description": view.description,
            "category": view.category,
            "price_cents": view.price_cents,
            "currency": view.currency,
            "image": view.image,
            "on_hand": view.on_hand,
            "reserved": view.reserved,
            "available": view.available,
        }

    def product(self, product_id: str) -> ProductView | None:
        t = self.products
        with self.db.read() as conn:
            row = conn.execute(
                select(t).where(t.c.product_id == product_id, t.c.listed.is_(True))
            ).first()
        return ProductView(**row._mapping) if row else None

    def search_products(
        self, q: str | None, category: str | None, page: int, page_size: int
    ) -> Page[ProductView]:
        t = self.products
        where: list[ColumnElement[bool]] = [t.c.listed.is_(True)]
        if q:
            needle = q.lower()
            where.append(
                or_(
                    *(
                        func.lower(c).contains(needle, autoescape=True)
                        for c in (t.c.name, t.c.description, t.c.sku)
                    )
                )
            )
        if category:
            where.append(t.c.category == category)
        with self.db.read() as conn:
            total = conn.execute(select(func.count()).select_from(t).where(*where)).scalar()
            rows = conn.execute(
                select(t)
                .where(*where)
                .order_by(t.c.sku, t.c.product_id)
                .offset((page - 1) * page_size)
                .limit(page_size)
            ).all()
        return Page(
            items=[ProductView(**r._mapping) for r in rows],
            page=page,
            page_size=page_size,
            total=int(total or 0),
        )

    # -- generations ----------------------------------------------------------------
    def generation(self, projection: str) -> int:
        self._known(projection)
        g = self.generations
        with self.db.read() as conn:
            found = conn.execute(select(g.c.generation).where(g.c.name == projection)).scalar()
        return int(found) if found is not None else 1

    def is_current(self, uow: UnitOfWork, projection: str, generation: int) -> bool:
        found = uow.conn.execute(self._current_generation, {"b_name": projection}).scalar()
        return (int(found) if found is not None else 1) == generation

    def start_generation(self, projection: str) -> int:
        tables = self._known(projection)
        g = self.generations
        with self.db.transaction() as conn:
            bumped = conn.execute(
                update(g).where(g.c.name == projection).values(generation=g.c.generation + 1)
            ).rowcount
            if not bumped:
                conn.execute(g.insert().values(name=projection, generation=2))
            for table in tables:
                conn.execute(delete(table))
            return int(
                conn.execute(select(g.c.generation).where(g.c.name == projection)).scalar_one()
            )

    def snapshot(self, projection: str) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        with self.db.read() as conn:
            for table in self._known(projection):
                rows = conn.execute(select(table).order_by(*table.primary_key.columns)).all()
                out[table.name] = [dict(r._mapping) for r in rows]
        return out

    def _known(self, projection: str) -> tuple[Table, ...]:
        tables = self._tables.get(projection)
        if tables is None:
            raise UnknownProjectionError(projection)
        return tables


def _lock_view(conn: Connection, projection: str, view_id: str) -> None:
    if conn.dialect.name == "postgresql":
        digest = hashlib.blake2b(f"{projection}/{view_id}".encode(), digest_size=8).digest()
        key = int.from_bytes(digest, "big", signed=True)
        conn.execute(select(func.pg_advisory_xact_lock(key)))


class _Writes:
    """The multi-row writes of a unit of work, built once per SQL dialect: executed with
    a list of rows, each is one executemany."""

    def __init__(self, conn: Connection, store: SqlViewStore) -> None:
        self.upsert_order = upsert_statement(conn, store.orders)
        self.upsert_product = upsert_statement(conn, store.products)
        self.insert_timeline = dialect_insert(conn, store.timeline).on_conflict_do_nothing(
            index_elements=[c.name for c in store.timeline.primary_key.columns]
        )
