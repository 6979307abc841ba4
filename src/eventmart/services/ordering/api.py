"""ordering's HTTP API: the write side's view of an order, customer cancel, ops history."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, status
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from eventmart.platform.auth import AdminUser, CurrentUser, Principal
from eventmart.platform.errors import ConcurrencyError
from eventmart.platform.runtime import Service, ServiceRouter
from eventmart.platform.saga import ProcessManager
from eventmart.services.ordering.adapters import OrderRepository, decode
from eventmart.services.ordering.domain import Order, OrderError
from eventmart.services.ordering.saga import Checkout, CheckoutSaga


def _view(order: Order) -> dict[str, Any]:
    return {
        "id": order.order_id,
        "customer_id": order.customer_id,
        "status": order.status.value,
        "cancellation_reason": order.reason,
        "total_cents": order.total_cents,
        "items": [
            {
                "product_id": line.product_id,
                "sku": line.sku,
                "name": line.name,
                "quantity": line.quantity,
                "unit_price_cents": line.unit_price_cents,
            }
            for line in order.lines
        ],
        "version": order.version,
    }


def router(
    service: Service, orders: OrderRepository, saga: CheckoutSaga, sagas: ProcessManager[Checkout]
) -> APIRouter:
    api = ServiceRouter()

    def visible(order: Order | None, who: Principal, order_id: str) -> Order:
        # Another customer's order is "not found", not "forbidden": no existence leak.
        if order is None or (order.customer_id != who.user_id and not who.is_admin):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"order {order_id} not found")
        return order

    @api.get("/orders/{order_id}")
    def get_order(order_id: str, who: CurrentUser) -> dict[str, Any]:
        assert service.store is not None
        with service.store.db.read() as conn:
            return _view(visible(orders.load(conn, order_id), who, order_id))

    @retry(
        retry=retry_if_exception_type(ConcurrencyError),
        stop=stop_after_attempt(5),
        wait=wait_random_exponential(0.01, 0.2),
        reraise=True,
    )
    def cancel_once(order_id: str, who: Principal) -> Order:
        with service.uow() as uow:
            order = visible(orders.load(uow.conn, order_id), who, order_id)
            saga.cancel_by_customer(uow, order)
            return order

    @api.post("/orders/{order_id}/cancel", status_code=status.HTTP_202_ACCEPTED)
    def cancel(order_id: str, who: CurrentUser) -> dict[str, Any]:
        try:
            order = cancel_once(order_id, who)
        except OrderError as e:
            raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from e
        return _view(order)

    @api.get("/orders/{order_id}/history")
    def history(order_id: str, _admin: AdminUser) -> dict[str, Any]:
        with service.uow() as uow:
            stored = orders.events(uow.conn, order_id)
            if not stored:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"order {order_id} not found")
            instance = sagas.load(uow, order_id)
            steps = sagas.history(uow, order_id)
        return {
            "order_id": order_id,
            "events": [
                {
                    "version": e.version,
                    "type": e.type,
                    "position": e.position,
                    "recorded_at_ms": e.recorded_at_ms,
                    "data": orjson.loads(orjson.dumps(decode(e), default=_builtins)),
                }
                for e in stored
            ],
            "saga": None
            if instance is None
            else {
                "status": instance.status.value,
                "step": instance.step_name,
                "steps": [
                    {"seq": s.seq, "step": s.step, "at_ms": s.at_ms, "detail": s.detail}
                    for s in steps
                ],
            },
        }

    return api


def _builtins(obj: object) -> Any:
    import msgspec

    return msgspec.to_builtins(obj)
