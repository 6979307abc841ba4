"""Statements the stores build once and reuse, on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, select

from eventmart.platform.db import Database, upsert_statement


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
