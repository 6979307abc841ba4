"""payment's HTTP API (internal: ops and the invariant checker read it)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel

from eventmart.platform.runtime import Service, ServiceRouter
from eventmart.services.payment.adapters import PaymentTable
from eventmart.services.payment.domain import Payment, PaymentStatus

MAX_LIST = 10_000


class PaymentPublic(BaseModel):
    order_id: str
    status: PaymentStatus
    amount_cents: int
    currency: str
    authorization_id: str
    reason: str
    updated_at_ms: int


def _public(p: Payment, updated_at_ms: int) -> PaymentPublic:
    # The card token stays inside: a processor never hands it back.
    return PaymentPublic(
        order_id=p.order_id,
        status=p.status,
        amount_cents=p.amount_cents,
        currency=p.currency,
        authorization_id=p.authorization_id,
        reason=p.reason,
        updated_at_ms=updated_at_ms,
    )


def router(service: Service, payments: PaymentTable) -> APIRouter:
    api = ServiceRouter()

    @api.get("/payments/{order_id}")
    def get_payment(order_id: str) -> PaymentPublic:
        assert service.store is not None
        with service.store.db.read() as conn:
            found = payments.get_with_time(conn, order_id)
        if found is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"payment for order {order_id} not found"
            )
        return _public(*found)

    @api.get("/payments")
    def list_payments(
        status: Annotated[PaymentStatus | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = MAX_LIST,
    ) -> list[PaymentPublic]:
        """Payments (oldest change first), optionally in one status."""
        assert service.store is not None
        with service.store.db.read() as conn:
            rows = payments.by_status(conn, status, limit)
        return [_public(p, at) for p, at in rows]

    return api
