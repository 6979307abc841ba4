"""shipping's private messages: timers the embedded fulfillment sets for itself (not part
of the published language)."""

from __future__ import annotations

from eventmart.platform.messages import Command


class ShippingInternal(Command, frozen=True, kw_only=True):
    abstract = True
    namespace = "eventmart.shipping.internal"
    topic = "shipping.internal"
    key_field = "order_id"

    order_id: str
    shipment_id: str


class DispatchShipment(ShippingInternal, frozen=True, kw_only=True):
    """Due `shipping_dispatch_delay_s` after the shipment was created."""


class DeliverShipment(ShippingInternal, frozen=True, kw_only=True):
    """Due `shipping_delivery_delay_s` after the shipment was dispatched."""


INTERNAL_MESSAGES = [DispatchShipment, DeliverShipment]
