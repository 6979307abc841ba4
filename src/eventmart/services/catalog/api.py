"""The catalog's HTTP API (internal: the gateways call it)."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field

from eventmart.contracts.catalog import ProductAdded, ProductPriceChanged
from eventmart.platform.auth import AdminUser
from eventmart.platform.messages import new_id
from eventmart.platform.runtime import Service, ServiceRouter
from eventmart.services.catalog.adapters import ProductTable
from eventmart.services.catalog.domain import MAX_PRICE_CENTS, Product

PAGE_SIZE = 24


class ProductPublic(BaseModel):
    product_id: str
    sku: str
    name: str
    description: str
    category: str
    price_cents: int
    currency: str
    image: str


class ProductPage(BaseModel):
    items: list[ProductPublic]
    page: int
    page_size: int
    total: int


class ProductCreate(BaseModel):
    sku: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=4000)
    category: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9-]+$")
    price_cents: int = Field(gt=0, le=MAX_PRICE_CENTS)
    image: str = Field(default="", max_length=300)


class PriceChange(BaseModel):
    price_cents: int = Field(gt=0, le=MAX_PRICE_CENTS)


def _public(p: Product) -> ProductPublic:
    return ProductPublic(**{f: getattr(p, f) for f in ProductPublic.model_fields})


def router(service: Service, products: ProductTable) -> APIRouter:
    api = ServiceRouter()

    @api.get("/products")
    def list_products(
        q: Annotated[str | None, Query(max_length=100)] = None,
        category: Annotated[str | None, Query(max_length=100)] = None,
        page: Annotated[int, Query(ge=1, le=10_000)] = 1,
        page_size: Annotated[int, Query(ge=1, le=100)] = PAGE_SIZE,
    ) -> ProductPage:
        assert service.store is not None
        with service.store.db.read() as conn:
            items, total = products.search(conn, q, category, (page - 1) * page_size, page_size)
        return ProductPage(
            items=[_public(p) for p in items], page=page, page_size=page_size, total=total
        )

    @api.get("/products/{product_id}")
    def get_product(product_id: str) -> ProductPublic:
        assert service.store is not None
        with service.store.db.read() as conn:
            found = products.get(conn, product_id)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"product {product_id} not found")
        return _public(found)

    @api.get("/categories")
    def categories() -> list[dict[str, object]]:
        assert service.store is not None
        with service.store.db.read() as conn:
            return [{"category": c, "products": n} for c, n in products.categories(conn)]

    @api.post("/admin/products", status_code=status.HTTP_201_CREATED)
    def add_product(body: ProductCreate, _admin: AdminUser) -> ProductPublic:
        product = Product(product_id=new_id(), **body.model_dump())
        with service.uow() as uow:
            if products.sku_taken(uow.conn, body.sku):
                raise HTTPException(status.HTTP_409_CONFLICT, f"sku: {body.sku} already exists")
            products.add(uow.conn, [product])
            uow.publish(added_event(product))
        return _public(product)

    @api.put("/admin/products/{product_id}/price")
    def change_price(product_id: str, body: PriceChange, _admin: AdminUser) -> ProductPublic:
        with service.uow() as uow:
            found = products.get(uow.conn, product_id)
            if found is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"product {product_id} not found")
            if found.price_cents != body.price_cents:
                products.set_price(uow.conn, product_id, body.price_cents)
                uow.publish(
                    ProductPriceChanged(
                        product_id=product_id,
                        old_price_cents=found.price_cents,
                        new_price_cents=body.price_cents,
                    )
                )
        return _public(dataclasses.replace(found, price_cents=body.price_cents))

    return api


def added_event(p: Product) -> ProductAdded:
    return ProductAdded(
        product_id=p.product_id,
        sku=p.sku,
        name=p.name,
        description=p.description,
        category=p.category,
        price_cents=p.price_cents,
        currency=p.currency,
        image=p.image,
    )
