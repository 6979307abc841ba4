"""Statements the stores build once and reuse, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    and_,
    bindparam,
    delete,
    func,
    select,
)
from sqlalchemy.exc import IntegrityError

from eventmart.platform.db import Database, DriverStatement, FastInsert, upsert_statement


def _items(db: Database) -> Table:
    table = Table(
        "items",
        MetaData(),
        Column("owner", String(20), primary_key=True),
        Column("product", String(20), primary_key=True),
        Column("quantity", Integer, nullable=False),
        Column("added_at_ms", BigInteger, nullable=False),
    )
    table.metadata.create_all(db.engine)
    return table


def _rows(db: Database, table: Table) -> list[tuple[str, int, int]]:
    with db.read() as conn:
        query = select(table.c.product, table.c.quantity, table.c.added_at_ms).order_by(
            table.c.product
        )
        return [(p, q, a) for p, q, a in conn.execute(query)]


def test_upsert_updates_every_other_column_unless_told_which(database: Database) -> None:
    table = _items(database)
    row = {"owner": "ann", "product": "kettle", "quantity": 1, "added_at_ms": 100}
    with database.transaction() as conn:
        conn.execute(upsert_statement(conn, table), row)
        conn.execute(upsert_statement(conn, table), {**row, "quantity": 2, "added_at_ms": 200})
    assert _rows(database, table) == [("kettle", 2, 200)]

    # Only the named columns change: the row keeps when it was added.
    with database.transaction() as conn:
        statement = upsert_statement(conn, table, update=("quantity",))
        conn.execute(statement, {**row, "quantity": 5, "added_at_ms": 300})
        conn.execute(statement, {**row, "product": "mug", "quantity": 1, "added_at_ms": 400})
    assert _rows(database, table) == [("kettle", 5, 200), ("mug", 1, 400)]


def test_one_statement_object_serves_each_dialect_and_choice(database: Database) -> None:
    table = _items(database)
    with database.transaction() as conn:
        assert upsert_statement(conn, table) is upsert_statement(conn, table)
        assert upsert_statement(conn, table, ("quantity",)) is not upsert_statement(conn, table)


def test_driver_statements_read_and_write_as_sqlalchemy_would(database: Database) -> None:
    table = _items(database)
    add = FastInsert(table, ["owner", "product", "quantity", "added_at_ms"])
    by_owner = DriverStatement(
        select(table.c.product, table.c.quantity)
        .where(table.c.owner == bindparam("owner"))
        .order_by(table.c.product)
    )
    # A value the statement carries itself ("ann") beside one given per call.
    anns_count = DriverStatement(
        select(func.count())
        .select_from(table)
        .where(and_(table.c.owner == "ann", table.c.quantity >= bindparam("least")))
    )
    remove = DriverStatement(
        delete(table).where(
            and_(table.c.owner == bindparam("owner"), table.c.product == bindparam("product"))
        )
    )
    with database.transaction() as conn:
        add.execute(conn, [("ann", "mug", 2, 1), ("ann", "kettle", 1, 2), ("bob", "mug", 9, 3)])
        assert by_owner.rows(conn, {"owner": "ann"}) == [("kettle", 1), ("mug", 2)]
        assert by_owner.first(conn, {"owner": "bob"}) == ("mug", 9)
        assert by_owner.first(conn, {"owner": "cy"}) is None
        assert anns_count.scalar(conn, {"least": 2}) == 1
        assert remove.run(conn, {"owner": "ann", "product": "mug"}) == 1
        assert remove.run(conn, {"owner": "ann", "product": "mug"}) == 0
        remove.many(conn, [{"owner": "ann", "product": "kettle"}, {"owner": "bob", "product": "x"}])
    # The writes were part of the transaction, and it committed.
    assert _rows(database, table) == [("mug", 9, 3)]


def test_a_driver_error_is_sqlalchemys_and_rolls_back_the_unit(database: Database) -> None:
    table = _items(database)
    add = FastInsert(table, ["owner", "product", "quantity", "added_at_ms"])
    with database.transaction() as conn:
        add.execute(conn, [("ann", "mug", 1, 1)])
    with pytest.raises(IntegrityError), database.transaction() as conn:
        add.execute(conn, [("ann", "kettle", 1, 2)])
        add.execute(conn, [("ann", "mug", 5, 3)])  # the same key again
    assert _rows(database, table) == [("mug", 1, 1)]


def test_a_driver_statement_keeps_bytes_and_refuses_an_expanding_parameter(
    database: Database,
) -> None:
    blobs = Table(
        "blobs",
        MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("body", LargeBinary, nullable=False),
    )
    blobs.metadata.create_all(database.engine)
    body = bytes(range(256))
    with database.transaction() as conn:
        FastInsert(blobs, ["id", "body"]).execute(conn, [(1, body)])
        read = DriverStatement(select(blobs.c.body).where(blobs.c.id == bindparam("id")))
        assert bytes(read.scalar(conn, {"id": 1})) == body
        expanding = DriverStatement(
            select(blobs.c.id).where(blobs.c.id.in_(bindparam("ids", expanding=True)))
        )
        with pytest.raises(ValueError, match="expanding"):
            expanding.rows(conn, {"ids": [1]})
