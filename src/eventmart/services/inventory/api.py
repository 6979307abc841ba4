"""Inventory's HTTP API (internal: the gateways and the ops console call it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import BaseModel, ConfigDict, Field

from eventmart.platform.auth import AdminUser
from eventmart.platform.runtime import Service, ServiceRouter
from eventmart.services.inventory.adapters import event_data
from eventmart.services.inventory.domain import MAX_RECEIVE, InventoryError, StockItem
from eventmart.services.inventory.handlers import Inventory

# Product ids are UUIDs; the pattern keeps stream ids printable and bounded.
ProductId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
MAX_IDS_PER_QUERY = 200
HISTORY_PAGE = 1000


class StockLevel(BaseModel):
    product_id: str
    on_hand: int
    reserved: int
    available: int


class StockHistoryEntry(BaseModel):
    version: int
    type: str
    data: dict[str, Any]
    recorded_at: datetime


class ReservationLine(BaseModel):
    product_id: str
    quantity: int
    state: str  # reserved | committed | released | returned


class OrderReservation(BaseModel):
    order_id: str
    lines: list[ReservationLine]


class StockReceipt(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quantity: int = Field(gt=0, le=MAX_RECEIVE)


def _level(item: StockItem) -> StockLevel:
    return StockLevel(
        product_id=item.product_id,
        on_hand=item.on_hand,
        reserved=item.reserved,
        available=item.available,
    )


def _not_found(product_id: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"product {product_id} has no stock record")


def router(service: Service, inventory: Inventory) -> APIRouter:
    api = ServiceRouter()
    streams = inventory.streams
    assert service.store is not None
    db = service.store.db

    @api.get("/stock")
    def list_stock(
        product_id: Annotated[list[str], Query(max_length=MAX_IDS_PER_QUERY)] = [],  # noqa: B006
    ) -> list[StockLevel]:
        with db.read() as conn:
            found = streams.load_many(conn, product_id)
        return [_level(found[pid]) for pid in dict.fromkeys(product_id) if pid in found]

    @api.get("/stock/{product_id}")
    def get_stock(product_id: ProductId) -> StockLevel:
        with db.read() as conn:
            item = streams.load(conn, product_id)
        if item is None:
            raise _not_found(product_id)
        return _level(item)

    @api.get("/stock/{product_id}/history")
    def stock_history(
        product_id: ProductId,
        after_version: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=HISTORY_PAGE)] = HISTORY_PAGE,
    ) -> list[StockHistoryEntry]:
        with db.read() as conn:
            stored = streams.history(conn, product_id, after_version)
            exists = bool(stored) or streams.version(conn, product_id) > 0
        if not exists:
            raise _not_found(product_id)
        return [
            StockHistoryEntry(
                version=e.version,
                type=e.type,
                data=event_data(e),
                recorded_at=datetime.fromtimestamp(e.recorded_at_ms / 1000, tz=UTC),
            )
            for e in stored[:limit]
        ]

    @api.get("/reservations/{order_id}")
    def get_reservation(
        order_id: Annotated[str, Path(min_length=1, max_length=100)],
    ) -> OrderReservation:
        with db.read() as conn:
            lines = inventory.orders.lines(conn, order_id)
        if not lines:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"order {order_id} has no reservation")
        return OrderReservation(
            order_id=order_id,
            lines=[
                ReservationLine(product_id=h.product_id, quantity=h.quantity, state=h.state.value)
                for h in lines
            ],
        )

    @api.post("/admin/stock/{product_id}/receive")
    def receive_stock(product_id: ProductId, body: StockReceipt, _admin: AdminUser) -> StockLevel:
        try:
            with service.uow() as uow:
                (item,) = inventory.receive(uow, [(product_id, body.quantity)])
        except InventoryError as e:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"quantity: {e}") from e
        return _level(item)

    return api
