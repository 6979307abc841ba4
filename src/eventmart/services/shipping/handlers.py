"""shipping's reactions to the order's life (choreographed: nobody asks it to ship)."""

from __future__ import annotations

import logging

from eventmart.contracts.ordering import OrderCancelled, OrderConfirmed
from eventmart.contracts.shipping import ShipmentCancelled, ShipmentCreated
from eventmart.platform.messages import Envelope, new_id, now_ms
from eventmart.platform.messaging import Handlers, UnitOfWork
from eventmart.services.shipping.adapters import CancelledOrderTable, ShipmentTable
from eventmart.services.shipping.domain import Shipment, ShippingError
from eventmart.services.shipping.fulfillment import Fulfillment

log = logging.getLogger(__name__)


def shipping_handlers(
    shipments: ShipmentTable, cancelled: CancelledOrderTable, fulfillment: Fulfillment
) -> Handlers:
    """The handlers of the `shipping` group, the fulfillment's own included."""
    handlers = Handlers()

    @handlers.on(OrderConfirmed)
    def on_confirmed(msg: OrderConfirmed, _env: Envelope, uow: UnitOfWork) -> None:
        if cancelled.contains(uow.conn, msg.order_id):
            log.info("order %s was cancelled before it was confirmed: no shipment", msg.order_id)
            return
        if shipments.by_order(uow.conn, msg.order_id) is not None:
            return  # confirmed again (a redrive): it has its shipment
        shipment = Shipment.create(new_id(), msg.order_id, msg.customer_id, now_ms())
        shipments.add(uow.conn, shipment)
        uow.publish(ShipmentCreated(order_id=msg.order_id, shipment_id=shipment.shipment_id))
        fulfillment.start(uow, shipment)

    @handlers.on(OrderCancelled)
    def on_cancelled(msg: OrderCancelled, _env: Envelope, uow: UnitOfWork) -> None:
        current = shipments.by_order(uow.conn, msg.order_id, for_update=True)
        if current is None:
            cancelled.record(uow.conn, msg.order_id, msg.reason, now_ms())
            return
        try:
            after = current.cancel(msg.reason, now_ms())
        except ShippingError:
            # The parcel is with the carrier: the order's compensation is a return, not ours.
            log.warning(
                "order %s cancelled (%s) but shipment %s is %s already; ignoring",
                msg.order_id,
                msg.reason,
                current.shipment_id,
                current.status,
            )
            return
        if after is None:
            return
        shipments.save(uow.conn, after)
        uow.publish(
            ShipmentCancelled(
                order_id=after.order_id, shipment_id=after.shipment_id, reason=msg.reason
            )
        )
        fulfillment.cancel(uow, after)

    fulfillment.register(handlers)
    return handlers
