"""shipping: shipments for confirmed orders, dispatched and delivered."""

from __future__ import annotations

from eventmart.platform.messages import Event


class ShippingEvent(Event, frozen=True, kw_only=True):
    abstract = True
    namespace = "eventmart.shipping"
    topic = "shipping.events"
    key_field = "order_id"

    order_id: str
    shipment_id: str


class ShipmentCreated(ShippingEvent, frozen=True, kw_only=True):
    pass


class ShipmentDispatched(ShippingEvent, frozen=True, kw_only=True):
    carrier: str = "eventmart-post"
    tracking_code: str = ""


class ShipmentDelivered(ShippingEvent, frozen=True, kw_only=True):
    pass


class ShipmentCancelled(ShippingEvent, frozen=True, kw_only=True):
    reason: str = ""
