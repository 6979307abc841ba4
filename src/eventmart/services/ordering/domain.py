"""The Order aggregate: its state is the fold of its events; decisions return new events.

The events are the published `ordering.events` contract types: the facts ordering
records are exactly the facts it announces, each carrying its stream version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from eventmart.contracts.common import Address, OrderLine
from eventmart.contracts.ordering import (
    OrderCancelled,
    OrderConfirmed,
    OrderDelivered,
    OrderEvent,
    OrderPaymentAuthorized,
    OrderPlaced,
    OrderShipped,
    OrderStockReserved,
)


class Status(StrEnum):
    PENDING = "PENDING"
    STOCK_RESERVED = "STOCK_RESERVED"
    PAYMENT_AUTHORIZED = "PAYMENT_AUTHORIZED"
    CONFIRMED = "CONFIRMED"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    CANCELLED = "CANCELLED"


class Reason(StrEnum):
    OUT_OF_STOCK = "OUT_OF_STOCK"
    PAYMENT_DECLINED = "PAYMENT_DECLINED"
    PAYMENT_TIMEOUT = "PAYMENT_TIMEOUT"
    CUSTOMER_CANCELLED = "CUSTOMER_CANCELLED"


CANCELLABLE = {Status.PENDING, Status.STOCK_RESERVED, Status.PAYMENT_AUTHORIZED, Status.CONFIRMED}


class OrderError(Exception):
    """A decision the order's current state does not allow."""


@dataclass
class Order:
    order_id: str
    customer_id: str = ""
    status: Status = Status.PENDING
    lines: list[OrderLine] = field(default_factory=list)
    total_cents: int = 0
    address: Address | None = None
    reason: str | None = None
    authorization_id: str | None = None
    shipment_id: str | None = None
    version: int = 0

    # -- folding --------------------------------------------------------------------
    @classmethod
    def from_events(cls, order_id: str, events: list[OrderEvent]) -> Order:
        order = cls(order_id)
        for e in events:
            order.apply(e)
        return order

    def apply(self, e: OrderEvent) -> None:
        if e.version != self.version + 1:
            raise OrderError(f"event version {e.version} does not follow {self.version}")
        match e:
            case OrderPlaced():
                self.customer_id = e.customer_id
                self.lines = list(e.lines)
                self.total_cents = e.total_cents
                self.address = e.shipping_address
            case OrderStockReserved():
                self.status = Status.STOCK_RESERVED
            case OrderPaymentAuthorized():
                self.status = Status.PAYMENT_AUTHORIZED
                self.authorization_id = e.authorization_id
            case OrderConfirmed():
                self.status = Status.CONFIRMED
            case OrderCancelled():
                self.status = Status.CANCELLED
                self.reason = e.reason
            case OrderShipped():
                self.status = Status.SHIPPED
                self.shipment_id = e.shipment_id
            case OrderDelivered():
                self.status = Status.DELIVERED
        self.version = e.version

    def _next(self) -> dict[str, object]:
        return {
            "order_id": self.order_id,
            "customer_id": self.customer_id,
            "version": self.version + 1,
        }

    def _record(self, event: OrderEvent) -> list[OrderEvent]:
        self.apply(event)
        return [event]

    # -- decisions ------------------------------------------------------------------
    @classmethod
    def place(
        cls,
        order_id: str,
        customer_id: str,
        lines: list[OrderLine],
        total_cents: int,
        address: Address,
    ) -> tuple[Order, list[OrderEvent]]:
        if not lines:
            raise OrderError("an order needs at least one line")
        if any(line.quantity <= 0 for line in lines):
            raise OrderError("every line needs a positive quantity")
        if total_cents != sum(line.quantity * line.unit_price_cents for line in lines):
            raise OrderError("total_cents does not match the lines")
        order = cls(order_id)
        events = order._record(
            OrderPlaced(
                order_id=order_id,
                customer_id=customer_id,
                version=1,
                lines=lines,
                total_cents=total_cents,
                shipping_address=address,
            )
        )
        return order, events

    def stock_reserved(self) -> list[OrderEvent]:
        if self.status is not Status.PENDING:
            return []
        return self._record(OrderStockReserved(**self._next()))  # type: ignore[arg-type]

    def payment_authorized(self, authorization_id: str) -> list[OrderEvent]:
        """Authorized, and so confirmed: two facts in one decision."""
        if self.status is not Status.STOCK_RESERVED:
            return []
        events = self._record(
            OrderPaymentAuthorized(
                **self._next(),  # type: ignore[arg-type]
                authorization_id=authorization_id,
            )
        )
        events += self._record(
            OrderConfirmed(
                **self._next(),  # type: ignore[arg-type]
                total_cents=self.total_cents,
            )
        )
        return events

    def cancel(self, reason: Reason, detail: str = "") -> list[OrderEvent]:
        if self.status is Status.CANCELLED:
            return []
        if self.status not in CANCELLABLE:
            raise OrderError(
                f"order {self.order_id} is {self.status.value} and can no longer be cancelled"
            )
        return self._record(
            OrderCancelled(
                **self._next(),  # type: ignore[arg-type]
                reason=reason.value,
                detail=detail,
            )
        )

    def ship(self, shipment_id: str) -> list[OrderEvent]:
        if self.status is not Status.CONFIRMED:
            return []
        return self._record(
            OrderShipped(
                **self._next(),  # type: ignore[arg-type]
                shipment_id=shipment_id,
            )
        )

    def deliver(self, shipment_id: str) -> list[OrderEvent]:
        if self.status is not Status.SHIPPED:
            return []
        return self._record(
            OrderDelivered(
                **self._next(),  # type: ignore[arg-type]
                shipment_id=shipment_id,
            )
        )
