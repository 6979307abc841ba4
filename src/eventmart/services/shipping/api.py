"""shipping's HTTP API (internal)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel

from eventmart.platform.runtime import Service, ServiceRouter
from eventmart.services.shipping.adapters import ShipmentTable
from eventmart.services.shipping.domain import CARRIER, ShipmentStatus


class ShipmentPublic(BaseModel):
    shipment_id: str
    order_id: str
    customer_id: str
    status: ShipmentStatus
    carrier: str
    tracking_code: str
    created_at_ms: int
    dispatched_at_ms: int | None
    delivered_at_ms: int | None
    cancelled_at_ms: int | None
    cancellation_reason: str


def router(service: Service, shipments: ShipmentTable) -> APIRouter:
    api = ServiceRouter()

    @api.get("/shipments/{order_id}")
    def get_shipment(order_id: str) -> ShipmentPublic:
        assert service.store is not None
        with service.store.db.read() as conn:
            s = shipments.by_order(conn, order_id)
        if s is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"shipment for order {order_id} not found"
            )
        return ShipmentPublic(
            shipment_id=s.shipment_id,
            order_id=s.order_id,
            customer_id=s.customer_id,
            status=s.status,
            carrier=CARRIER,
            tracking_code=s.tracking_code,
            created_at_ms=s.created_at_ms,
            dispatched_at_ms=s.dispatched_at_ms,
            delivered_at_ms=s.delivered_at_ms,
            cancelled_at_ms=s.cancelled_at_ms,
            cancellation_reason=s.cancellation_reason,
        )

    return api
