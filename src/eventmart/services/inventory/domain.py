"""Inventory's rules: one `StockItem` per product, event-sourced.

The aggregate's state is the fold of its events; a command method checks the invariants,
records the new event and applies it, so state and recorded changes never disagree.
Invariants: quantities are positive; `0 <= reserved <= on_hand` at every version (so
`available = on_hand - reserved` is never negative); an order reserves a product at most
once at a time; only what an order holds can be released, committed or returned.

Pure: the standard library only. Serialization and storage live in `adapters.py`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar

# The most an administrator may receive in one delivery (a typo guard, not a business limit).
MAX_RECEIVE = 100_000


class InventoryError(ValueError):
    """A change the aggregate refuses; the message names the product and the reason."""


class InsufficientStockError(InventoryError):
    """Fewer units are available than a reservation asks for."""


# -- events (private to the inventory service; the published ones are in contracts) ----


@dataclass(frozen=True, slots=True)
class StockReceived:
    """Units arrived (a delivery, or the demo stock)."""

    quantity: int


@dataclass(frozen=True, slots=True)
class StockReserved:
    """Units held for an order until it commits, releases or `expires_at_ms` passes."""

    order_id: str
    quantity: int
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class ReservationReleased:
    """An order's held units are available again."""

    order_id: str
    quantity: int
    reason: str


@dataclass(frozen=True, slots=True)
class ReservationCommitted:
    """An order's held units are sold: they leave on_hand and reserved together."""

    order_id: str
    quantity: int


@dataclass(frozen=True, slots=True)
class SaleReturned:
    """A sold order was cancelled: its units are back on hand."""

    order_id: str
    quantity: int


StockEvent = (
    StockReceived | StockReserved | ReservationReleased | ReservationCommitted | SaleReturned
)
_E = TypeVar("_E", bound=StockEvent)
EVENT_TYPES: tuple[type[StockEvent], ...] = (
    StockReceived,
    StockReserved,
    ReservationReleased,
    ReservationCommitted,
    SaleReturned,
)


@dataclass(frozen=True, slots=True)
class StockState:
    """A snapshot of a `StockItem` at one version: enough to continue the fold from there."""

    on_hand: int
    reserved: int
    reservations: dict[str, int]
    committed: dict[str, int]


def stream_id(product_id: str) -> str:
    return f"stock-{product_id}"


@dataclass
class StockItem:
    """A product's stock. `version` is the stream version it was loaded at; `changes` are
    the events recorded since, to append with that version as the expected one."""

    product_id: str
    version: int = 0
    on_hand: int = 0
    reserved: int = 0
    reservations: dict[str, int] = field(default_factory=dict)
    committed: dict[str, int] = field(default_factory=dict)
    changes: list[StockEvent] = field(default_factory=list)

    # -- reading ----------------------------------------------------------------------
    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    @property
    def current_version(self) -> int:
        """The version the stream will have once `changes` are appended."""
        return self.version + len(self.changes)

    def can_reserve(self, quantity: int) -> bool:
        return quantity > 0 and self.available >= quantity

    # -- commands ---------------------------------------------------------------------
    def receive(self, quantity: int) -> StockReceived:
        _positive(self.product_id, quantity)
        if quantity > MAX_RECEIVE:
            raise InventoryError(
                f"{self.product_id}: a delivery is at most {MAX_RECEIVE} units, not {quantity}"
            )
        return self._record(StockReceived(quantity=quantity))

    def reserve(self, order_id: str, quantity: int, expires_at_ms: int) -> StockReserved:
        _positive(self.product_id, quantity)
        if order_id in self.reservations:
            raise InventoryError(f"{self.product_id}: order {order_id} already holds a reservation")
        if self.available < quantity:
            raise InsufficientStockError(
                f"{self.product_id}: {quantity} wanted, {self.available} available"
            )
        return self._record(
            StockReserved(order_id=order_id, quantity=quantity, expires_at_ms=expires_at_ms)
        )

    def release(self, order_id: str, reason: str) -> ReservationReleased:
        quantity = self._held(self.reservations, order_id, "reservation")
        return self._record(
            ReservationReleased(order_id=order_id, quantity=quantity, reason=reason)
        )

    def commit(self, order_id: str) -> ReservationCommitted:
        quantity = self._held(self.reservations, order_id, "reservation")
        return self._record(ReservationCommitted(order_id=order_id, quantity=quantity))

    def return_sale(self, order_id: str) -> SaleReturned:
        quantity = self._held(self.committed, order_id, "sale")
        return self._record(SaleReturned(order_id=order_id, quantity=quantity))

    # -- the fold ---------------------------------------------------------------------
    def apply(self, event: StockEvent) -> None:
        """Move the state by one event (no checks: events are facts already decided)."""
        match event:
            case StockReceived(quantity=q):
                self.on_hand += q
            case StockReserved(order_id=o, quantity=q):
                self.reserved += q
                self.reservations[o] = q
            case ReservationReleased(order_id=o, quantity=q):
                self.reserved -= q
                self.reservations.pop(o, None)
            case ReservationCommitted(order_id=o, quantity=q):
                self.reserved -= q
                self.on_hand -= q
                self.reservations.pop(o, None)
                self.committed[o] = self.committed.get(o, 0) + q
            case SaleReturned(order_id=o, quantity=q):
                self.on_hand += q
                self.committed.pop(o, None)

    @classmethod
    def rebuild(
        cls,
        product_id: str,
        events: Iterable[StockEvent],
        *,
        snapshot: StockState | None = None,
        snapshot_version: int = 0,
    ) -> StockItem:
        """The item at the end of `events`, starting from `snapshot` (taken at
        `snapshot_version`) if given; `events` are the ones after it."""
        item = cls(product_id=product_id)
        if snapshot is not None:
            item.on_hand = snapshot.on_hand
            item.reserved = snapshot.reserved
            item.reservations = dict(snapshot.reservations)
            item.committed = dict(snapshot.committed)
            item.version = snapshot_version
        for e in events:
            item.apply(e)
            item.version += 1
        return item

    def snapshot(self) -> StockState:
        """The state now (including recorded changes), for `rebuild(snapshot=...)`."""
        return StockState(
            on_hand=self.on_hand,
            reserved=self.reserved,
            reservations=dict(self.reservations),
            committed=dict(self.committed),
        )

    # -- internals --------------------------------------------------------------------
    def _record(self, event: _E) -> _E:
        self.apply(event)
        self.changes.append(event)
        return event

    def _held(self, holdings: dict[str, int], order_id: str, what: str) -> int:
        quantity = holdings.get(order_id)
        if quantity is None:
            raise InventoryError(f"{self.product_id}: order {order_id} holds no {what}")
        return quantity


def _positive(product_id: str, quantity: int) -> None:
    if quantity <= 0:
        raise InventoryError(f"{product_id}: quantity must be greater than zero, not {quantity}")
