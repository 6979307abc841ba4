"""The Cassandra read store (distributed profile): one table per query, idempotent writes.

Tables, in keyspace `eventmart_views`, per projection generation N (a rebuild gets new,
empty tables: see "Generations" below):

- `order_by_id_gN`, PRIMARY KEY ((order_id), event_version, event_type): the order's
  fields are static columns, its timeline entries the clustering rows. One partition read
  gives the whole view; one single-partition batch writes it, atomically.
- `orders_by_customer_gN`, PRIMARY KEY ((customer_id), placed_at_ms, order_id), clustered
  newest first: keys only. A page reads the customer's keys, then the page's orders by id
  (one `IN` request), so the mutable order fields live in one place.
- `product_by_id_gN`, PRIMARY KEY (product_id): the product view, listed or not.
- `products_by_category_gN`, PRIMARY KEY ((category), sku, product_id): category listing,
  by SKU; with the name and description for a `q` within a category. A page then reads
  its products from `product_by_id_gN` (one `IN` request): price and stock change with
  every order, and are kept in one place only.
- `product_search_gN`, PRIMARY KEY ((bucket), sku, product_id): every listed product in a
  few partitions (bucket = crc32(product_id) mod SEARCH_BUCKETS), for `q` without a
  category and for the whole catalogue. Cassandra has no substring match (SAI in 5.0
  matches equality, ranges and analysed tokens, not `%x%`; SASI is deprecated and off by
  default), so a `q` search reads these partitions, about 100 bytes a product, and
  matches in Python: right for a shop's catalogue (thousands to tens of thousands of
  products); a bigger one wants a search engine fed by the same events.
  The listing fields these index rows carry never change once a product is listed (the
  catalog adds a product once), which is what makes writing them ahead of the view safe.
- `projections`, PRIMARY KEY (name): each projection's current generation.

Idempotency and concurrent writers. Cassandra has no transaction spanning the consumer's
inbox (SQL, see docs/readside.md) and these tables, so "exactly once" is "at least once,
with effects that a redelivery cannot change": the projections' folds ignore what a view
already shows (the version guard, timeline entries keyed by (type, version), listings
applied once), so re-applying a message is a no-op. What the fold cannot survive is a lost
update: with Kafka's cooperative-sticky assignment an order's checkout (basket.events) and
its life (ordering.events), or a product's listing and its stock, may be consumed by two
members at once, and so may any view while a rebuild shares its group with the running
service. SQL serializes those writers with a lock; here each view carries a revision and
is written with a compare-and-set on it (a lightweight transaction, conditional batch on
the view's partition). A writer that lost the race raises ViewChangedError, a
RetryLaterError: the consumer handles the message again on a fresh load.

Index rows are written before the view's compare-and-set ("write-ahead") and a replaced
one is deleted after it, so a crash between the two leaves at worst a stale index row,
never a view missing from its index: a customer's page keeps each order's smallest
`placed_at_ms` (it only ever decreases), and a page skips products not listed yet.

Generations. Each generation has its own tables: `start_generation` creates the next
generation's tables, moves the generation with a compare-and-set, and drops generations
older than the one it retires. A consumer's unit of work is bound to the generation it
asked `is_current` about, so a retired consumer that is still finishing a batch writes
into its own, retired tables: it cannot touch the new generation's views (the SQL store
gets that from a row lock, which Cassandra does not have).
"""

from __future__ import annotations

import json
import re
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cassandra import (
    ConsistencyLevel,
    OperationTimedOut,
    ProtocolVersion,
    RequestExecutionException,
)
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import UNSET_VALUE, BatchStatement, BatchType

from eventmart.platform.errors import ConfigurationError, RetryLaterError
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

KEYSPACE = "eventmart_views"
# Local development and CI: one node. A production keyspace is created by operations
# with NetworkTopologyStrategy; `create()` leaves an existing keyspace as it is.
LOCAL_REPLICATION = {"class": "SimpleStrategy", "replication_factor": 1}
SEARCH_BUCKETS = 4  # partitions of product_search; may change with any new generation
REQUEST_TIMEOUT_S = 10.0
# Schema changes wait for the cluster's schema agreement: slower, and rare.
SCHEMA_TIMEOUT_S = 60.0
# How long a query may use the generation it read last (another process's rebuild shows
# within this); consumers and rebuilds always read it afresh.
GENERATION_TTL_S = 1.0
# A lost compare-and-set is retried on a fresh load after this pause.
CONFLICT_RETRY_S = 0.05
UNAVAILABLE_RETRY_S = 1.0

_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
_GENERATION_TABLE = re.compile(r"^(?P<base>[a-z_]+)_g(?P<generation>\d+)$")

# The driver's errors that mean "Cassandra is not answering now", not "this is wrong".
_UNAVAILABLE = (RequestExecutionException, OperationTimedOut, NoHostAvailable)

T = TypeVar("T")


class ViewChangedError(RetryLaterError):
    """Another writer changed the view since this unit of work loaded it; handle the
    message again (the consumer pauses the partition briefly and rewinds to it)."""


class ViewStoreUnavailableError(RetryLaterError):
    """Cassandra did not answer; the consumer pauses instead of dead-lettering."""


# -- connections ------------------------------------------------------------------------
_sessions: dict[tuple[tuple[str, ...], int], Any] = {}
_sessions_lock = threading.Lock()


def shared_session(hosts: Sequence[str], port: int) -> Any:
    """One driver session per cluster address in a process (the driver's advice: a
    session pools connections to every node and is thread-safe). Connects on first use;
    the driver closes it at exit."""
    key = (tuple(hosts), port)
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None or session.is_shutdown:
            profile = ExecutionProfile(
                load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
                consistency_level=ConsistencyLevel.LOCAL_QUORUM,
                serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL,
                request_timeout=REQUEST_TIMEOUT_S,
            )
            cluster = Cluster(
                list(hosts),
                port=port,
                protocol_version=ProtocolVersion.V5,  # Cassandra 4.0 and later
                execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                connect_timeout=REQUEST_TIMEOUT_S,
            )
            session = cluster.connect()
            _sessions[key] = session
        return session


# -- rows <-> views ---------------------------------------------------------------------
ORDER_FIELDS = (
    "customer_id",
    "status",
    "version",
    "items",
    "total_cents",
    "currency",
    "cancellation_reason",
    "cancellation_detail",
    "placed_at_ms",
    "updated_at_ms",
)
PRODUCT_FIELDS = (
    "listed",
    "sku",
    "name",
    "description",
    "category",
    "price_cents",
    "currency",
    "image",
    "on_hand",
    "reserved",
    "available",
)


def _items_json(items: Iterable[OrderItem]) -> str:
    return json.dumps(
        [
            {
                "product_id": i.product_id,
                "sku": i.sku,
                "name": i.name,
                "quantity": i.quantity,
                "unit_price_cents": i.unit_price_cents,
            }
            for i in items
        ],
        separators=(",", ":"),
    )


def _timeline_key(entry: TimelineEntry) -> tuple[int, int, str]:
    return entry.version, entry.at_ms, entry.type


def _order_from_rows(rows: Iterable[Any]) -> tuple[OrderView | None, int | None]:
    first: Any = None
    timeline: list[TimelineEntry] = []
    for r in rows:
        if first is None:
            first = r
        if r.event_type is not None:
            timeline.append(
                TimelineEntry(r.event_type, r.event_status, r.event_version, r.event_at_ms)
            )
    if first is None or first.rev is None:
        return None, None
    view = OrderView(
        order_id=first.order_id,
        customer_id=first.customer_id,
        status=first.status,
        version=first.version,
        items=tuple(OrderItem(**i) for i in json.loads(first.items)),
        total_cents=first.total_cents,
        currency=first.currency,
        cancellation_reason=first.cancellation_reason,
        cancellation_detail=first.cancellation_detail,
        placed_at_ms=first.placed_at_ms,
        updated_at_ms=first.updated_at_ms,
        timeline=tuple(sorted(timeline, key=_timeline_key)),
    )
    return view, int(first.rev)


def _product_from_row(row: Any) -> tuple[ProductView | None, int | None]:
    if row is None or row.rev is None:
        return None, None
    view = ProductView(product_id=row.product_id, **{f: getattr(row, f) for f in PRODUCT_FIELDS})
    return view, int(row.rev)


def _keep_null(new: T | None, old: T | None) -> Any:
    """A None that would overwrite nothing is left unset: no tombstone for it."""
    return UNSET_VALUE if new is None and old is None else new


@dataclass
class _UnitState:
    """What the store knows about one unit of work: the generation it writes to, per
    projection, and the views it read or wrote, with their revisions."""

    generations: dict[str, int] = field(default_factory=dict)
    stored: dict[tuple[str, str], tuple[Any, int | None]] = field(default_factory=dict)


# -- the store --------------------------------------------------------------------------
class CassandraViewStore(ViewStore):
    """The views in Cassandra tables, one per query (see the module's docstring).

    Writes happen at once, not in the handler's SQL transaction (the consumer's inbox);
    they are compare-and-set and idempotent, so a redelivered or retried message changes
    nothing. Reads and writes use LOCAL_QUORUM, compare-and-set LOCAL_SERIAL.
    """

    def __init__(
        self,
        hosts: Sequence[str],
        port: int,
        keyspace: str = KEYSPACE,
    ) -> None:
        if not _IDENTIFIER.match(keyspace):
            raise ConfigurationError(
                f"Cassandra keyspace {keyspace!r} is not a plain identifier "
                "(lower-case letters, digits, underscores; at most 48)"
            )
        if not hosts:
            raise ConfigurationError("no Cassandra hosts given (EVENTMART_CASSANDRA_HOSTS)")
        self.hosts = tuple(hosts)
        self.port = port
        self.keyspace = keyspace
        self._session: Any = None
        self._lock = threading.Lock()
        self._created = False
        self._prepared: dict[str, Any] = {}
        self._generations: dict[str, tuple[int, float]] = {}  # projection -> (gen, read at)

    # -- plumbing -------------------------------------------------------------------
    @property
    def session(self) -> Any:
        """The process's driver session for this cluster (connects on first use)."""
        if self._session is None:
            self._session = shared_session(self.hosts, self.port)
        return self._session

    def _ready(self) -> Any:
        if not self._created:
            self.create()
        return self.session

    def _statement(self, cql: str) -> Any:
        prepared = self._prepared.get(cql)
        if prepared is None:
            prepared = self._ready().prepare(cql)
            with self._lock:
                self._prepared[cql] = prepared
        return prepared

    def _run(self, cql: str, params: Sequence[Any] = ()) -> Any:
        return self._ready().execute(self._statement(cql), params)

    def _table(self, base: str, generation: int) -> str:
        return f"{self.keyspace}.{base}_g{generation}"

    def _unit(self, uow: UnitOfWork) -> _UnitState:
        state: _UnitState | None = uow.state.get(self)
        if state is None:
            state = uow.state[self] = _UnitState()
        return state

    def _unit_generation(self, uow: UnitOfWork, projection: str) -> int:
        state = self._unit(uow)
        generation = state.generations.get(projection)
        if generation is None:
            generation = state.generations[projection] = self._current_generation(projection)
        return generation

    @contextmanager
    def _consumer_call(self) -> Iterator[None]:
        """Cassandra being away is a reason to wait, not to dead-letter the message."""
        try:
            yield
        except _UNAVAILABLE as e:
            raise ViewStoreUnavailableError(
                f"Cassandra ({', '.join(self.hosts)}:{self.port}) did not answer: {e}",
                delay_s=UNAVAILABLE_RETRY_S,
            ) from e

    # -- schema ---------------------------------------------------------------------
    def _ddl(self, projection: str, generation: int) -> dict[str, str]:
        """The CREATE TABLE statements of one generation of a projection, by table name."""
        if projection == ORDERS:
            return {
                f"order_by_id_g{generation}": f"""
                    CREATE TABLE IF NOT EXISTS {self._table("order_by_id", generation)} (
                        order_id text,
                        event_version int,
                        event_type text,
                        event_status text,
                        event_at_ms bigint,
                        customer_id text static,
                        status text static,
                        version int static,
                        items text static,
                        total_cents bigint static,
                        currency text static,
                        cancellation_reason text static,
                        cancellation_detail text static,
                        placed_at_ms bigint static,
                        updated_at_ms bigint static,
                        rev bigint static,
                        PRIMARY KEY ((order_id), event_version, event_type)
                    )""",
                f"orders_by_customer_g{generation}": f"""
                    CREATE TABLE IF NOT EXISTS {self._table("orders_by_customer", generation)} (
                        customer_id text,
                        placed_at_ms bigint,
                        order_id text,
                        PRIMARY KEY ((customer_id), placed_at_ms, order_id)
                    ) WITH CLUSTERING ORDER BY (placed_at_ms DESC, order_id DESC)""",
            }
        if projection == PRODUCTS:
            return {
                f"product_by_id_g{generation}": f"""
                    CREATE TABLE IF NOT EXISTS {self._table("product_by_id", generation)} (
                        product_id text PRIMARY KEY,
                        listed boolean,
                        sku text,
                        name text,
                        description text,
                        category text,
                        price_cents bigint,
                        currency text,
                        image text,
                        on_hand bigint,
                        reserved bigint,
                        available bigint,
                        rev bigint
                    )""",
                f"products_by_category_g{generation}": f"""
                    CREATE TABLE IF NOT EXISTS {self._table("products_by_category", generation)} (
                        category text,
                        sku text,
                        product_id text,
                        name text,
                        description text,
                        PRIMARY KEY ((category), sku, product_id)
                    )""",
                f"product_search_g{generation}": f"""
                    CREATE TABLE IF NOT EXISTS {self._table("product_search", generation)} (
                        bucket int,
                        sku text,
                        product_id text,
                        name text,
                        description text,
                        PRIMARY KEY ((bucket), sku, product_id)
                    )""",
            }
        raise UnknownProjectionError(projection)

    def _existing_tables(self) -> set[str]:
        rows = self.session.execute(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s",
            (self.keyspace,),
        )
        return {r.table_name for r in rows}

    def _create_tables(self, projection: str, generation: int, existing: set[str]) -> None:
        for name, ddl in self._ddl(projection, generation).items():
            if name not in existing:
                self.session.execute(ddl, timeout=SCHEMA_TIMEOUT_S)

    def create(self) -> None:
        """The keyspace (SimpleStrategy, RF 1, if it does not exist yet), the generations
        table and the current generation's tables of each projection. Idempotent; the
        schema statements run only for what is missing."""
        session = self.session
        with self._lock:
            if self._created:
                return
            found = session.execute(
                "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = %s",
                (self.keyspace,),
            ).one()
            if found is None:
                replication = ", ".join(f"'{k}': '{v}'" for k, v in LOCAL_REPLICATION.items())
                session.execute(
                    f"CREATE KEYSPACE IF NOT EXISTS {self.keyspace} "
                    f"WITH replication = {{{replication}}}",
                    timeout=SCHEMA_TIMEOUT_S,
                )
            existing = self._existing_tables()
            if "projections" not in existing:
                session.execute(
                    f"CREATE TABLE IF NOT EXISTS {self.keyspace}.projections "
                    "(name text PRIMARY KEY, generation int)",
                    timeout=SCHEMA_TIMEOUT_S,
                )
            known = {
                r.name: int(r.generation)
                for r in session.execute(
                    f"SELECT name, generation FROM {self.keyspace}.projections"
                )
            }
            for projection in PROJECTIONS:
                if projection not in known:
                    session.execute(
                        f"INSERT INTO {self.keyspace}.projections (name, generation) "
                        "VALUES (%s, 1) IF NOT EXISTS",
                        (projection,),
                    )
            # Another process may have won the insert or moved on: read what holds now.
            for projection in PROJECTIONS:
                row = session.execute(
                    f"SELECT generation FROM {self.keyspace}.projections WHERE name = %s",
                    (projection,),
                ).one()
                generation = int(row.generation) if row is not None else 1
                self._create_tables(projection, generation, existing)
                self._generations[projection] = (generation, time.monotonic())
            self._created = True

    # -- orders ---------------------------------------------------------------------
    def _read_order(self, generation: int, order_id: str) -> tuple[OrderView | None, int | None]:
        rows = self._run(
            f"SELECT * FROM {self._table('order_by_id', generation)} WHERE order_id = ?",
            (order_id,),
        )
        return _order_from_rows(rows)

    def load_order(self, uow: UnitOfWork, order_id: str) -> OrderView | None:
        with self._consumer_call():
            state = self._unit(uow)
            key = (ORDERS, order_id)
            if key in state.stored:  # read or written by this unit of work
                view: OrderView | None = state.stored[key][0]
                return view
            view, rev = self._read_order(self._unit_generation(uow, ORDERS), order_id)
            state.stored[key] = (view, rev)
            return view

    def save_order(self, uow: UnitOfWork, view: OrderView) -> None:
        with self._consumer_call():
            generation = self._unit_generation(uow, ORDERS)
            state = self._unit(uow)
            key = (ORDERS, view.order_id)
            if key not in state.stored:
                state.stored[key] = self._read_order(generation, view.order_id)
            prior, rev = state.stored[key]
            index = self._table("orders_by_customer", generation)
            old_entry = (prior.customer_id, prior.placed_at_ms) if prior is not None else None
            new_entry = (view.customer_id, view.placed_at_ms)
            if new_entry != old_entry and view.customer_id:
                self._run(
                    f"INSERT INTO {index} (customer_id, placed_at_ms, order_id) VALUES (?, ?, ?)",
                    (*new_entry, view.order_id),
                )
            table = self._table("order_by_id", generation)
            new_rev = (rev or 0) + 1
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            batch.add(
                self._statement(
                    f"UPDATE {table} SET {', '.join(f'{f} = ?' for f in ORDER_FIELDS)}, rev = ? "
                    "WHERE order_id = ? IF rev = ?"
                ),
                (
                    view.customer_id,
                    view.status,
                    view.version,
                    _items_json(view.items),
                    view.total_cents,
                    view.currency,
                    _keep_null(
                        view.cancellation_reason, prior.cancellation_reason if prior else None
                    ),
                    _keep_null(
                        view.cancellation_detail, prior.cancellation_detail if prior else None
                    ),
                    view.placed_at_ms,
                    view.updated_at_ms,
                    new_rev,
                    view.order_id,
                    rev,
                ),
            )
            # Entries the stored view lacks; the compare-and-set makes "lacks" exact, so the
            # first (type, version) stored stays, as with the SQL store's insert-or-ignore.
            stored_entries = {(e.type, e.version) for e in prior.timeline} if prior else set()
            insert_entry = self._statement(
                f"INSERT INTO {table} (order_id, event_version, event_type, event_status, "
                "event_at_ms) VALUES (?, ?, ?, ?, ?)"
            )
            for e in view.timeline:
                if (e.type, e.version) not in stored_entries:
                    batch.add(insert_entry, (view.order_id, e.version, e.type, e.status, e.at_ms))
            if not self.session.execute(batch).was_applied:
                del state.stored[key]
                raise ViewChangedError(
                    f"order view {view.order_id} changed since it was loaded "
                    "(another consumer wrote it); handling the message again",
                    delay_s=CONFLICT_RETRY_S,
                )
            state.stored[key] = (view, new_rev)
            if old_entry is not None and old_entry != new_entry and old_entry[0]:
                self._run(
                    f"DELETE FROM {index} WHERE customer_id = ? AND placed_at_ms = ? "
                    "AND order_id = ?",
                    (*old_entry, view.order_id),
                )

    def order(self, order_id: str) -> OrderView | None:
        view, _ = self._read_order(self._current_generation(ORDERS), order_id)
        return view

    def orders_by_customer(self, customer_id: str, page: int, page_size: int) -> Page[OrderView]:
        generation = self._current_generation(ORDERS)
        rows = self._run(
            f"SELECT placed_at_ms, order_id FROM {self._table('orders_by_customer', generation)} "
            "WHERE customer_id = ?",
            (customer_id,),
        )
        placed: dict[str, int] = {}
        for r in rows:  # a stale entry (see the module's docstring) has a later time
            placed[r.order_id] = min(r.placed_at_ms, placed.get(r.order_id, r.placed_at_ms))
        ranked = sorted(placed.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
        window = [order_id for order_id, _ in ranked[(page - 1) * page_size : page * page_size]]
        found = self._orders_by_id(generation, window)
        items = [found[order_id] for order_id in window if order_id in found]
        return Page(items=items, page=page, page_size=page_size, total=len(ranked))

    def _orders_by_id(self, generation: int, order_ids: Sequence[str]) -> dict[str, OrderView]:
        """A page's orders in one request (`IN` on the partition key: the coordinator
        fans out; for a page, far cheaper than one request per order from Python)."""
        if not order_ids:
            return {}
        rows = self._run(
            f"SELECT * FROM {self._table('order_by_id', generation)} WHERE order_id IN ?",
            (list(order_ids),),
        )
        by_order: dict[str, list[Any]] = {}
        for r in rows:
            by_order.setdefault(r.order_id, []).append(r)
        out: dict[str, OrderView] = {}
        for order_id, order_rows in by_order.items():
            view, _ = _order_from_rows(order_rows)
            if view is not None:
                out[order_id] = view
        return out

    # -- products -------------------------------------------------------------------
    def _read_product(
        self, generation: int, product_id: str
    ) -> tuple[ProductView | None, int | None]:
        row = self._run(
            f"SELECT * FROM {self._table('product_by_id', generation)} WHERE product_id = ?",
            (product_id,),
        ).one()
        return _product_from_row(row)

    def load_product(self, uow: UnitOfWork, product_id: str) -> ProductView | None:
        with self._consumer_call():
            state = self._unit(uow)
            key = (PRODUCTS, product_id)
            if key in state.stored:
                view: ProductView | None = state.stored[key][0]
                return view
            view, rev = self._read_product(self._unit_generation(uow, PRODUCTS), product_id)
            state.stored[key] = (view, rev)
            return view

    def _index_rows(self, view: ProductView | None) -> list[tuple[str, tuple[Any, ...]]]:
        """The product's rows in the category and search tables: (table, key values)."""
        if view is None or not view.listed:
            return []
        rows: list[tuple[str, tuple[Any, ...]]] = []
        if view.category:  # an empty partition key is not allowed (and never queried)
            rows.append(("products_by_category", (view.category, view.sku, view.product_id)))
        bucket = zlib.crc32(view.product_id.encode()) % SEARCH_BUCKETS
        rows.append(("product_search", (bucket, view.sku, view.product_id)))
        return rows

    def save_product(self, uow: UnitOfWork, view: ProductView) -> None:
        with self._consumer_call():
            generation = self._unit_generation(uow, PRODUCTS)
            state = self._unit(uow)
            key = (PRODUCTS, view.product_id)
            if key not in state.stored:
                state.stored[key] = self._read_product(generation, view.product_id)
            prior, rev = state.stored[key]
            old_rows, new_rows = self._index_rows(prior), self._index_rows(view)
            listing_changed = prior is None or (prior.name, prior.description) != (
                view.name,
                view.description,
            )
            first_column = {"products_by_category": "category", "product_search": "bucket"}
            for base, values in new_rows:
                if listing_changed or (base, values) not in old_rows:
                    self._run(
                        f"INSERT INTO {self._table(base, generation)} "
                        f"({first_column[base]}, sku, product_id, name, description) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (*values, view.name, view.description),
                    )
            table = self._table("product_by_id", generation)
            new_rev = (rev or 0) + 1
            applied = self._run(
                f"UPDATE {table} SET {', '.join(f'{f} = ?' for f in PRODUCT_FIELDS)}, rev = ? "
                "WHERE product_id = ? IF rev = ?",
                (*(getattr(view, f) for f in PRODUCT_FIELDS), new_rev, view.product_id, rev),
            ).was_applied
            if not applied:
                del state.stored[key]
                raise ViewChangedError(
                    f"product view {view.product_id} changed since it was loaded "
                    "(another consumer wrote it); handling the message again",
                    delay_s=CONFLICT_RETRY_S,
                )
            state.stored[key] = (view, new_rev)
            for base, values in old_rows:
                if (base, values) not in new_rows:
                    self._run(
                        f"DELETE FROM {self._table(base, generation)} "
                        f"WHERE {first_column[base]} = ? AND sku = ? AND product_id = ?",
                        values,
                    )

    def product(self, product_id: str) -> ProductView | None:
        view, _ = self._read_product(self._current_generation(PRODUCTS), product_id)
        return view if view is not None and view.listed else None

    def search_products(
        self, q: str | None, category: str | None, page: int, page_size: int
    ) -> Page[ProductView]:
        generation = self._current_generation(PRODUCTS)
        columns = "sku, product_id, name, description"
        if category:
            rows = list(
                self._run(
                    f"SELECT {columns} FROM {self._table('products_by_category', generation)} "
                    "WHERE category = ?",
                    (category,),
                )
            )
        else:
            rows = sorted(
                self._run(
                    f"SELECT {columns} FROM {self._table('product_search', generation)} "
                    "WHERE bucket IN ?",
                    (list(range(SEARCH_BUCKETS)),),
                ),
                key=lambda r: (r.sku, r.product_id),
            )
        if q:
            needle = q.lower()
            rows = [
                r
                for r in rows
                if needle in r.name.lower()
                or needle in r.description.lower()
                or needle in r.sku.lower()
            ]
        window = [r.product_id for r in rows[(page - 1) * page_size : page * page_size]]
        found: dict[str, ProductView] = {}
        if window:
            for r in self._run(
                f"SELECT * FROM {self._table('product_by_id', generation)} WHERE product_id IN ?",
                (window,),
            ):
                view, _ = _product_from_row(r)
                if view is not None and view.listed:  # not yet: its index row came first
                    found[view.product_id] = view
        items = [found[p] for p in window if p in found]
        return Page(items=items, page=page, page_size=page_size, total=len(rows))

    # -- generations ----------------------------------------------------------------
    def _known(self, projection: str) -> None:
        if projection not in PROJECTIONS:
            raise UnknownProjectionError(projection)

    def _read_generation(self, projection: str, *, serial: bool = False) -> int:
        statement = self._statement(
            f"SELECT generation FROM {self.keyspace}.projections WHERE name = ?"
        ).bind((projection,))
        if serial:  # sees compare-and-sets still being committed
            statement.consistency_level = ConsistencyLevel.LOCAL_SERIAL
        row = self._ready().execute(statement).one()
        generation = int(row.generation) if row is not None else 1
        self._generations[projection] = (generation, time.monotonic())
        return generation

    def _current_generation(self, projection: str) -> int:
        cached = self._generations.get(projection)
        if cached is not None and time.monotonic() - cached[1] < GENERATION_TTL_S:
            return cached[0]
        return self._read_generation(projection)

    def generation(self, projection: str) -> int:
        self._known(projection)
        return self._read_generation(projection)

    def is_current(self, uow: UnitOfWork, projection: str, generation: int) -> bool:
        """Also binds the unit of work to `generation`: its writes go to that
        generation's tables, even if a rebuild starts before it ends. So the answer may be
        up to GENERATION_TTL_S old: a retired consumer that does not know yet writes into
        its own retired tables, where it harms nothing, and stops at its next batch."""
        with self._consumer_call():
            self._unit(uow).generations[projection] = generation
            return self._current_generation(projection) == generation

    def start_generation(self, projection: str) -> int:
        self._known(projection)
        self._ready()
        bump = self._statement(
            f"UPDATE {self.keyspace}.projections SET generation = ? WHERE name = ? "
            "IF generation = ?"
        )
        while True:
            retired = self._read_generation(projection, serial=True)
            generation = retired + 1
            # The tables exist before any reader or consumer can see the new generation.
            self._create_tables(projection, generation, self._existing_tables())
            if self._ready().execute(bump, (generation, projection, retired)).was_applied:
                break
        self._generations[projection] = (generation, time.monotonic())
        # The retired generation's tables stay until the next rebuild: its consumers may be
        # finishing a batch, and another process's queries may still use them for a second.
        ours = set(self._ddl(projection, 0))
        for name in self._existing_tables():
            m = _GENERATION_TABLE.match(name)
            if m and f"{m['base']}_g0" in ours and int(m["generation"]) < retired:
                self.session.execute(
                    f"DROP TABLE IF EXISTS {self.keyspace}.{name}", timeout=SCHEMA_TIMEOUT_S
                )
        return generation

    def snapshot(self, projection: str) -> dict[str, list[dict[str, Any]]]:
        """The views in the SQL store's shape (its table and column names, key order), so
        a rebuild is compared the same way on both stores. The index tables are derived
        from these rows and checked by the queries."""
        self._known(projection)
        generation = self._read_generation(projection)
        if projection == ORDERS:
            orders: list[dict[str, Any]] = []
            timeline: list[dict[str, Any]] = []
            rows = self._run(f"SELECT * FROM {self._table('order_by_id', generation)}")
            by_order: dict[str, list[Any]] = {}
            for r in rows:
                by_order.setdefault(r.order_id, []).append(r)
            for order_id in sorted(by_order):
                view, _ = _order_from_rows(by_order[order_id])
                if view is None:
                    continue
                orders.append(
                    {
                        "order_id": view.order_id,
                        **{f: getattr(view, f) for f in ORDER_FIELDS if f != "items"},
                        "items": json.loads(_items_json(view.items)),
                    }
                )
                timeline.extend(
                    {
                        "order_id": view.order_id,
                        "type": e.type,
                        "version": e.version,
                        "status": e.status,
                        "at_ms": e.at_ms,
                    }
                    for e in view.timeline
                )
            timeline.sort(key=lambda t: (t["order_id"], t["type"], t["version"]))
            return {"order_views": orders, "order_timeline": timeline}
        products: list[dict[str, Any]] = []
        for r in self._run(f"SELECT * FROM {self._table('product_by_id', generation)}"):
            product, _ = _product_from_row(r)
            if product is not None:
                products.append(
                    {
                        "product_id": product.product_id,
                        **{f: getattr(product, f) for f in PRODUCT_FIELDS},
                    }
                )
        products.sort(key=lambda p: p["product_id"])
        return {"product_views": products}
