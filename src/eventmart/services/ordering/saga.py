"""The checkout saga: reserve stock -> authorize payment -> confirm -> capture, with
compensations and a payment deadline (see docs/architecture.md for the whole flow).

Each handler loads the order and the saga, decides, and saves both in the one unit of
work of the message that arrived: the order's events, the saga's state, the commands it
sends and its timers commit together or not at all.
"""

from __future__ import annotations

import logging

import msgspec

from eventmart.contracts.basket import BasketCheckedOut
from eventmart.contracts.common import StockLine
from eventmart.contracts.inventory import (
    CommitStock,
    ReleaseStock,
    ReserveStock,
    StockReservationFailed,
    StockReserved,
)
from eventmart.contracts.payment import (
    AuthorizePayment,
    CapturePayment,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentDeclined,
    RefundPayment,
    VoidPayment,
)
from eventmart.contracts.shipping import ShipmentDelivered, ShipmentDispatched
from eventmart.platform.messages import Envelope
from eventmart.platform.messaging import Handlers, UnitOfWork
from eventmart.platform.saga import ProcessManager, SagaInstance
from eventmart.services.ordering.adapters import OrderRepository
from eventmart.services.ordering.domain import Order, OrderError, Reason
from eventmart.services.ordering.messages import PaymentDeadlineReached

log = logging.getLogger(__name__)

RESERVING = "reserving_stock"
AUTHORIZING = "authorizing_payment"
CAPTURING = "capturing_payment"
DEADLINE = "payment"


class Checkout(msgspec.Struct):
    order_id: str
    customer_id: str
    card_token: str
    total_cents: int
    lines: list[StockLine]


class CheckoutSaga:
    """The orchestrator. `handlers` is the ordering group's handler registry."""

    def __init__(
        self, orders: OrderRepository, sagas: ProcessManager[Checkout], payment_deadline_s: float
    ) -> None:
        self.orders = orders
        self.sagas = sagas
        self.payment_deadline_s = payment_deadline_s

    def register(self, handlers: Handlers) -> None:
        handlers.add(BasketCheckedOut, self.on_checked_out)
        handlers.add(StockReserved, self.on_stock_reserved)
        handlers.add(StockReservationFailed, self.on_stock_failed)
        handlers.add(PaymentAuthorized, self.on_payment_authorized)
        handlers.add(PaymentDeclined, self.on_payment_declined)
        handlers.add(PaymentCaptured, self.on_payment_captured)
        handlers.add(PaymentDeadlineReached, self.on_deadline)
        handlers.add(ShipmentDispatched, self.on_dispatched)
        handlers.add(ShipmentDelivered, self.on_delivered)

    def _load(self, uow: UnitOfWork, order_id: str) -> tuple[Order, SagaInstance[Checkout]] | None:
        order = self.orders.load(uow.conn, order_id)
        saga = self.sagas.load(uow, order_id)
        if order is None or saga is None:
            log.warning("no checkout for order %s; ignoring the reply", order_id)
            return None
        return order, saga

    def _at_step(
        self, uow: UnitOfWork, order_id: str, step: str
    ) -> tuple[Order, SagaInstance[Checkout]] | None:
        """The order and its saga if the saga is running and waiting at `step`; else None
        (a reply that comes late, twice, or out of turn changes nothing)."""
        found = self._load(uow, order_id)
        if found is None or not found[1].running or found[1].step_name != step:
            return None
        return found

    # -- the flow -------------------------------------------------------------------
    def on_checked_out(self, msg: BasketCheckedOut, _env: Envelope, uow: UnitOfWork) -> None:
        if self.orders.load(uow.conn, msg.order_id) is not None:
            return  # the same checkout announced twice
        order, events = Order.place(
            msg.order_id, msg.customer_id, list(msg.lines), msg.total_cents, msg.shipping_address
        )
        self.orders.save(uow, order, events)
        saga = self.sagas.start(
            msg.order_id,
            Checkout(
                order_id=msg.order_id,
                customer_id=msg.customer_id,
                card_token=msg.card_token,
                total_cents=msg.total_cents,
                lines=[
                    StockLine(product_id=line.product_id, quantity=line.quantity)
                    for line in msg.lines
                ],
            ),
        )
        saga.step(RESERVING, send=[ReserveStock(order_id=msg.order_id, lines=saga.data.lines)])
        self.sagas.save(uow, saga)

    def on_stock_reserved(self, msg: StockReserved, _env: Envelope, uow: UnitOfWork) -> None:
        found = self._load(uow, msg.order_id)
        if found is None:
            return
        order, saga = found
        release = ReleaseStock(order_id=msg.order_id, reason="order cancelled")
        if not saga.running:
            # Cancelled while the reservation was on its way: undo it now.
            uow.publish(release)
            return
        if saga.step_name != RESERVING:
            return
        self.orders.save(uow, order, order.stock_reserved())
        saga.step(
            AUTHORIZING,
            compensation=release,
            send=[
                AuthorizePayment(
                    order_id=msg.order_id,
                    amount_cents=saga.data.total_cents,
                    card_token=saga.data.card_token,
                )
            ],
        )
        saga.set_deadline(
            DEADLINE, self.payment_deadline_s, PaymentDeadlineReached(order_id=msg.order_id)
        )
        self.sagas.save(uow, saga)

    def on_stock_failed(self, msg: StockReservationFailed, _env: Envelope, uow: UnitOfWork) -> None:
        found = self._at_step(uow, msg.order_id, RESERVING)
        if found is None:
            return
        order, saga = found
        detail = f"unavailable: {', '.join(msg.unavailable)}" if msg.unavailable else msg.reason
        self.orders.save(uow, order, order.cancel(Reason.OUT_OF_STOCK, detail))
        saga.compensate(f"stock reservation failed: {msg.reason}")
        self.sagas.save(uow, saga)

    def on_payment_authorized(
        self, msg: PaymentAuthorized, _env: Envelope, uow: UnitOfWork
    ) -> None:
        found = self._load(uow, msg.order_id)
        if found is None:
            return
        order, saga = found
        if not saga.running or saga.step_name != AUTHORIZING:
            if order.status.value == "CANCELLED":
                # Authorized after the order was cancelled (deadline, customer): void it.
                uow.publish(VoidPayment(order_id=msg.order_id, reason="order cancelled"))
            return
        saga.clear_deadline(DEADLINE)
        self.orders.save(uow, order, order.payment_authorized(msg.authorization_id))
        saga.step(
            CAPTURING,
            send=[CommitStock(order_id=msg.order_id), CapturePayment(order_id=msg.order_id)],
            compensation=RefundPayment(order_id=msg.order_id, reason="order cancelled"),
            detail=f"authorization {msg.authorization_id}",
        )
        self.sagas.save(uow, saga)

    def on_payment_declined(self, msg: PaymentDeclined, _env: Envelope, uow: UnitOfWork) -> None:
        found = self._at_step(uow, msg.order_id, AUTHORIZING)
        if found is None:
            return
        order, saga = found
        self.orders.save(uow, order, order.cancel(Reason.PAYMENT_DECLINED, msg.reason))
        saga.compensate(f"payment declined: {msg.reason}")
        self.sagas.save(uow, saga)

    def on_deadline(self, msg: PaymentDeadlineReached, _env: Envelope, uow: UnitOfWork) -> None:
        found = self._at_step(uow, msg.order_id, AUTHORIZING)
        if found is None:
            return
        order, saga = found
        self.orders.save(
            uow,
            order,
            order.cancel(
                Reason.PAYMENT_TIMEOUT,
                f"no answer from payment within {self.payment_deadline_s:g}s",
            ),
        )
        # The authorization may still be on its way: void it too.
        saga.step(
            "payment_timed_out",
            compensation=VoidPayment(order_id=msg.order_id, reason="payment timeout"),
        )
        saga.compensate("payment deadline reached")
        self.sagas.save(uow, saga)

    def on_payment_captured(self, msg: PaymentCaptured, _env: Envelope, uow: UnitOfWork) -> None:
        found = self._at_step(uow, msg.order_id, CAPTURING)
        if found is None:
            return
        _order, saga = found
        saga.complete(f"captured {msg.amount_cents} cents")
        self.sagas.save(uow, saga)

    def cancel_by_customer(self, uow: UnitOfWork, order: Order) -> None:
        """Cancel before shipping; raises OrderError when it is too late."""
        events = order.cancel(Reason.CUSTOMER_CANCELLED, "cancelled by the customer")
        if not events:
            return
        self.orders.save(uow, order, events)
        saga = self.sagas.load(uow, order.order_id)
        if saga is None:
            return
        if saga.running and saga.step_name == AUTHORIZING:
            saga.step(
                "cancelling",
                compensation=VoidPayment(order_id=order.order_id, reason="customer cancelled"),
            )
        saga.compensate("customer cancelled")
        self.sagas.save(uow, saga)

    def on_dispatched(self, msg: ShipmentDispatched, _env: Envelope, uow: UnitOfWork) -> None:
        order = self.orders.load(uow.conn, msg.order_id)
        if order is None:
            return
        events = order.ship(msg.shipment_id)
        if not events and order.status.value == "CANCELLED":
            log.warning(
                "shipment %s dispatched for cancelled order %s", msg.shipment_id, msg.order_id
            )
        self.orders.save(uow, order, events)

    def on_delivered(self, msg: ShipmentDelivered, _env: Envelope, uow: UnitOfWork) -> None:
        order = self.orders.load(uow.conn, msg.order_id)
        if order is not None:
            self.orders.save(uow, order, order.deliver(msg.shipment_id))


__all__ = ["CheckoutSaga", "OrderError"]
