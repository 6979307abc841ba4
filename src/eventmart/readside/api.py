"""The read side's HTTP API (internal: the gateways call it). Reads only, from the views."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel

from eventmart.platform.bus import Bus
from eventmart.platform.runtime import ServiceRouter
from eventmart.readside.domain import OrderView, ProductView
from eventmart.readside.projections import group_name
from eventmart.readside.views import PROJECTIONS, ViewStore
from eventmart.readside.worker import group_progress, projection_topics

PRODUCT_PAGE_SIZE = 24
ORDER_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


class OrderItemPublic(BaseModel):
    product_id: str
    sku: str
    name: str
    quantity: int
    unit_price_cents: int


class TimelineEntryPublic(BaseModel):
    type: str
    status: str
    at: str


class OrderPublic(BaseModel):
    id: str
    customer_id: str
    status: str
    items: list[OrderItemPublic]
    total_cents: int
    currency: str
    cancellation_reason: str | None
    cancellation_detail: str | None
    timeline: list[TimelineEntryPublic]
    version: int
    updated_at: str


class OrderPage(BaseModel):
    items: list[OrderPublic]
    page: int
    page_size: int
    total: int


class ProductPublic(BaseModel):
    product_id: str
    sku: str
    name: str
    description: str
    category: str
    price_cents: int
    currency: str
    image: str
    available: int
    in_stock: bool


class ProductPage(BaseModel):
    items: list[ProductPublic]
    page: int
    page_size: int
    total: int


class ProjectionStatus(BaseModel):
    name: str
    generation: int
    group: str
    lag: int


def iso_utc(ms: int) -> str:
    """Epoch milliseconds as ISO-8601 UTC (`2025-01-31T12:00:00.250Z`)."""
    at = datetime.fromtimestamp(ms // 1000, tz=UTC).replace(microsecond=(ms % 1000) * 1000)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def order_public(o: OrderView) -> OrderPublic:
    return OrderPublic(
        id=o.order_id,
        customer_id=o.customer_id,
        status=o.status,
        items=[
            OrderItemPublic(
                product_id=i.product_id,
                sku=i.sku,
                name=i.name,
                quantity=i.quantity,
                unit_price_cents=i.unit_price_cents,
            )
            for i in o.items
        ],
        total_cents=o.total_cents,
        currency=o.currency,
        cancellation_reason=o.cancellation_reason,
        cancellation_detail=o.cancellation_detail,
        timeline=[
            TimelineEntryPublic(type=e.type, status=e.status, at=iso_utc(e.at_ms))
            for e in o.timeline
        ],
        version=o.version,
        updated_at=iso_utc(o.updated_at_ms),
    )


def product_public(p: ProductView) -> ProductPublic:
    return ProductPublic(
        product_id=p.product_id,
        sku=p.sku,
        name=p.name,
        description=p.description,
        category=p.category,
        price_cents=p.price_cents,
        currency=p.currency,
        image=p.image,
        available=p.available,
        in_stock=p.in_stock,
    )


def router(views: ViewStore, bus: Bus) -> APIRouter:
    api = ServiceRouter()

    @api.get("/orders")
    def list_orders(
        customer_id: Annotated[str, Query(min_length=1, max_length=64)],
        page: Annotated[int, Query(ge=1, le=10_000)] = 1,
        page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = ORDER_PAGE_SIZE,
    ) -> OrderPage:
        found = views.orders_by_customer(customer_id, page, page_size)
        return OrderPage(
            items=[order_public(o) for o in found.items],
            page=found.page,
            page_size=found.page_size,
            total=found.total,
        )

    @api.get("/orders/{order_id}")
    def get_order(order_id: str) -> OrderPublic:
        found = views.order(order_id)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"order {order_id} not found")
        return order_public(found)

    @api.get("/products")
    def list_products(
        q: Annotated[str | None, Query(max_length=100)] = None,
        category: Annotated[str | None, Query(max_length=100)] = None,
        page: Annotated[int, Query(ge=1, le=10_000)] = 1,
        page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = PRODUCT_PAGE_SIZE,
    ) -> ProductPage:
        found = views.search_products(q, category, page, page_size)
        return ProductPage(
            items=[product_public(p) for p in found.items],
            page=found.page,
            page_size=found.page_size,
            total=found.total,
        )

    @api.get("/products/{product_id}")
    def get_product(product_id: str) -> ProductPublic:
        found = views.product(product_id)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"product {product_id} not found")
        return product_public(found)

    @api.get("/projections")
    def projections() -> list[ProjectionStatus]:
        out = []
        for name in PROJECTIONS:
            generation = views.generation(name)
            group = group_name(name, generation)
            topics = projection_topics(views, name, generation)
            out.append(
                ProjectionStatus(
                    name=name,
                    generation=generation,
                    group=group,
                    lag=group_progress(bus, group, topics).lag,
                )
            )
        return out

    return api
