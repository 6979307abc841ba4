"""Fulfillment: what moves a created shipment to dispatch and delivery, out of band.

The port is `Fulfillment` (`start`, `cancel`); the business steps it drives are
`ShipmentSteps` (`dispatch`, `deliver`), each one unit of work that changes the shipment and
announces it. `TimerFulfillment` is the embedded implementation on durable timers; a
workflow engine (Temporal) can replace it by running the same steps as activities.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod

from eventmart.contracts.shipping import ShipmentDelivered, ShipmentDispatched
from eventmart.platform.errors import PoisonMessageError
from eventmart.platform.messages import Envelope, Message, now_ms
from eventmart.platform.messaging import Handlers, UnitOfWork
from eventmart.services.shipping.adapters import ShipmentTable
from eventmart.services.shipping.domain import CARRIER, Shipment, ShippingError
from eventmart.services.shipping.messages import (
    INTERNAL_MESSAGES,
    DeliverShipment,
    DispatchShipment,
)

log = logging.getLogger(__name__)


class ShipmentSteps:
    """The steps of a shipment's life after creation, each in the caller's unit of work.

    Idempotent: a step already taken (or overtaken by a cancellation) changes and
    announces nothing and returns None. A step that can never apply (no such shipment,
    delivering one never dispatched) raises ShippingError."""

    def __init__(self, shipments: ShipmentTable) -> None:
        self.shipments = shipments

    def dispatch(self, uow: UnitOfWork, shipment_id: str) -> Shipment | None:
        current = self.shipments.by_id(uow.conn, shipment_id, for_update=True)
        if current is None:
            raise ShippingError(f"no shipment {shipment_id} to dispatch")
        after = current.dispatch(now_ms())
        if after is None:
            log.info("shipment %s is %s; not dispatching it", shipment_id, current.status)
            return None
        self.shipments.save(uow.conn, after)
        uow.publish(
            ShipmentDispatched(
                order_id=after.order_id,
                shipment_id=after.shipment_id,
                carrier=CARRIER,
                tracking_code=after.tracking_code,
            )
        )
        return after

    def deliver(self, uow: UnitOfWork, shipment_id: str) -> Shipment | None:
        current = self.shipments.by_id(uow.conn, shipment_id, for_update=True)
        if current is None:
            raise ShippingError(f"no shipment {shipment_id} to deliver")
        after = current.deliver(now_ms())
        if after is None:
            return None
        self.shipments.save(uow.conn, after)
        uow.publish(ShipmentDelivered(order_id=after.order_id, shipment_id=after.shipment_id))
        return after


class Fulfillment(ABC):
    """Takes a created shipment through dispatch and delivery, durably: once `start` has
    committed with the shipment, the steps happen even if every process restarts; once
    `cancel` has committed, no step that has not happened yet will."""

    @abstractmethod
    def start(self, uow: UnitOfWork, shipment: Shipment) -> None:
        """Begin fulfilling `shipment` (called in the unit of work that created it)."""

    @abstractmethod
    def cancel(self, uow: UnitOfWork, shipment: Shipment) -> None:
        """Stop fulfilling `shipment` (called in the unit of work that cancelled it)."""

    def private_messages(self) -> list[type[Message]]:
        """Messages this fulfillment sends to the service itself (none by default)."""
        return []

    def register(self, handlers: Handlers) -> None:
        """Add the handlers this fulfillment needs to the service's group (none by default)."""
        return None


def dispatch_timer_id(shipment_id: str) -> str:
    return f"shipping.dispatch:{shipment_id}"


def delivery_timer_id(shipment_id: str) -> str:
    return f"shipping.deliver:{shipment_id}"


class TimerFulfillment(Fulfillment):
    """The embedded fulfillment: a durable timer dispatches the shipment after
    `dispatch_delay_s`, another delivers it `delivery_delay_s` after that."""

    def __init__(self, steps: ShipmentSteps, dispatch_delay_s: float, delivery_delay_s: float):
        self.steps = steps
        self.dispatch_delay_s = dispatch_delay_s
        self.delivery_delay_s = delivery_delay_s

    def start(self, uow: UnitOfWork, shipment: Shipment) -> None:
        uow.schedule(
            dispatch_timer_id(shipment.shipment_id),
            self.dispatch_delay_s,
            DispatchShipment(order_id=shipment.order_id, shipment_id=shipment.shipment_id),
        )

    def cancel(self, uow: UnitOfWork, shipment: Shipment) -> None:
        # A timer that fired already is harmless: the steps skip a cancelled shipment.
        uow.cancel_timer(dispatch_timer_id(shipment.shipment_id))
        uow.cancel_timer(delivery_timer_id(shipment.shipment_id))

    def private_messages(self) -> list[type[Message]]:
        return list(INTERNAL_MESSAGES)

    def register(self, handlers: Handlers) -> None:
        handlers.add(DispatchShipment, self._dispatch)
        handlers.add(DeliverShipment, self._deliver)

    def _dispatch(self, msg: DispatchShipment, _env: Envelope, uow: UnitOfWork) -> None:
        try:
            dispatched = self.steps.dispatch(uow, msg.shipment_id)
        except ShippingError as e:
            raise PoisonMessageError(str(e)) from e
        if dispatched is not None:
            uow.schedule(
                delivery_timer_id(msg.shipment_id),
                self.delivery_delay_s,
                DeliverShipment(order_id=msg.order_id, shipment_id=msg.shipment_id),
            )

    def _deliver(self, msg: DeliverShipment, _env: Envelope, uow: UnitOfWork) -> None:
        try:
            self.steps.deliver(uow, msg.shipment_id)
        except ShippingError as e:
            raise PoisonMessageError(str(e)) from e
