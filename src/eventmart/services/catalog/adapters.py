"""The catalog's tables and queries (SQLAlchemy Core: SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    MetaData,
    String,
    Table,
    Text,
    func,
    or_,
    select,
)

from eventmart.services.catalog.domain import Product


class ProductTable:
    def __init__(self, metadata: MetaData) -> None:
        self.t = Table(
            "products",
            metadata,
            Column("product_id", String(64), primary_key=True),
            Column("sku", String(64), nullable=False, unique=True),
            Column("name", String(200), nullable=False),
            Column("description", Text, nullable=False),
            Column("category", String(100), nullable=False),
            Column("price_cents", BigInteger, nullable=False),
            Column("currency", String(3), nullable=False),
            Column("image", String(300), nullable=False),
        )
        Index("ix_products_category", self.t.c.category)

    def add(self, conn: Connection, products: Sequence[Product]) -> None:
        conn.execute(
            self.t.insert(),
            [
                {
                    "product_id": p.product_id,
                    "sku": p.sku,
                    "name": p.name,
                    "description": p.description,
                    "category": p.category,
                    "price_cents": p.price_cents,
                    "currency": p.currency,
                    "image": p.image,
                }
                for p in products
            ],
        )

    def get(self, conn: Connection, product_id: str) -> Product | None:
        row = conn.execute(select(self.t).where(self.t.c.product_id == product_id)).first()
        return Product(**row._mapping) if row else None

    def sku_taken(self, conn: Connection, sku: str) -> bool:
        return conn.execute(select(self.t.c.sku).where(self.t.c.sku == sku)).first() is not None

    def set_price(self, conn: Connection, product_id: str, price_cents: int) -> None:
        conn.execute(
            self.t.update().where(self.t.c.product_id == product_id).values(price_cents=price_cents)
        )

    def count(self, conn: Connection) -> int:
        return int(conn.execute(select(func.count()).select_from(self.t)).scalar() or 0)

    def search(
        self, conn: Connection, q: str | None, category: str | None, offset: int, limit: int
    ) -> tuple[list[Product], int]:
        where = []
        if q:
            pattern = f"%{q.lower()}%"
            where.append(
                or_(
                    func.lower(self.t.c.name).like(pattern),
                    func.lower(self.t.c.description).like(pattern),
                    func.lower(self.t.c.sku).like(pattern),
                )
            )
        if category:
            where.append(self.t.c.category == category)
        total = conn.execute(select(func.count()).select_from(self.t).where(*where)).scalar()
        rows = conn.execute(
            select(self.t).where(*where).order_by(self.t.c.sku).offset(offset).limit(limit)
        ).all()
        return [Product(**r._mapping) for r in rows], int(total or 0)

    def categories(self, conn: Connection) -> list[tuple[str, int]]:
        rows = conn.execute(
            select(self.t.c.category, func.count())
            .group_by(self.t.c.category)
            .order_by(self.t.c.category)
        ).all()
        return [(r[0], int(r[1])) for r in rows]
