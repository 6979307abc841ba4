"""shipping's rules: a shipment's status machine. Pure: no I/O, no framework.

CREATED → DISPATCHED → DELIVERED, or CREATED → CANCELLED. Once dispatched a parcel is on
its way: it can no longer be cancelled. Every transition returns a new `Shipment`, or None
when the shipment is already there (or past it), so a repeated step is harmless.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from enum import StrEnum

CARRIER = "eventmart-post"


class ShipmentStatus(StrEnum):
    CREATED = "CREATED"
    DISPATCHED = "DISPATCHED"
    DELIVERED = "DELIVERED"
    CANCELLED = "CANCELLED"


class ShippingError(ValueError):
    """A step that can never apply to this shipment."""


@dataclass(frozen=True, slots=True)
class Shipment:
    """One order's shipment; times are epoch milliseconds (None: not happened)."""

    shipment_id: str
    order_id: str
    customer_id: str
    status: ShipmentStatus
    created_at_ms: int
    tracking_code: str = ""
    dispatched_at_ms: int | None = None
    delivered_at_ms: int | None = None
    cancelled_at_ms: int | None = None
    cancellation_reason: str = ""

    @classmethod
    def create(cls, shipment_id: str, order_id: str, customer_id: str, at_ms: int) -> Shipment:
        return cls(shipment_id, order_id, customer_id, ShipmentStatus.CREATED, at_ms)

    def dispatch(self, at_ms: int) -> Shipment | None:
        """Hand the parcel to the carrier; None if that happened already or it was cancelled."""
        if self.status is not ShipmentStatus.CREATED:
            return None
        return dataclasses.replace(
            self,
            status=ShipmentStatus.DISPATCHED,
            tracking_code=tracking_code(self.shipment_id),
            dispatched_at_ms=at_ms,
        )

    def deliver(self, at_ms: int) -> Shipment | None:
        """The carrier delivered; None if delivered already. Only a dispatched parcel can be."""
        if self.status is ShipmentStatus.DELIVERED:
            return None
        if self.status is not ShipmentStatus.DISPATCHED:
            raise ShippingError(
                f"shipment {self.shipment_id} is {self.status}; only a DISPATCHED one is delivered"
            )
        return dataclasses.replace(self, status=ShipmentStatus.DELIVERED, delivered_at_ms=at_ms)

    def cancel(self, reason: str, at_ms: int) -> Shipment | None:
        """Stop the shipment before it leaves; None if cancelled already.

        Raises ShippingError once dispatched: the parcel is with the carrier."""
        if self.status is ShipmentStatus.CANCELLED:
            return None
        if self.status is not ShipmentStatus.CREATED:
            raise ShippingError(f"shipment {self.shipment_id} is {self.status} already")
        return dataclasses.replace(
            self,
            status=ShipmentStatus.CANCELLED,
            cancelled_at_ms=at_ms,
            cancellation_reason=reason,
        )


def tracking_code(shipment_id: str) -> str:
    """A carrier-style code derived from the shipment id: the same on every retry."""
    digest = hashlib.sha256(shipment_id.encode()).hexdigest()[:12].upper()
    return f"EM{digest}"
