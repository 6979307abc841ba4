"""Inventory's use cases and the handlers of its consumer group ("inventory").

`Inventory` runs each use case in the caller's unit of work (a handler's, an API route's
or the expiry loop's), so the stream appends, the order's rows and the messages announcing
the change commit together. Every use case is idempotent in effect: run again for the same
order, it re-announces what was decided and changes nothing. A ConcurrencyError (another
writer appended to a stream first) propagates: the consumer runtime retries the message
against the new state.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from eventmart.contracts.common import StockLine
from eventmart.contracts.inventory import (
    CommitStock,
    ReleaseStock,
    ReserveStock,
    StockCommitted,
    StockLevelChanged,
    StockReleased,
    StockReservationFailed,
)
from eventmart.contracts.inventory import StockReserved as StockReservedReply
from eventmart.platform.errors import ConcurrencyError, PoisonMessageError
from eventmart.platform.messages import Envelope, now_ms
from eventmart.platform.messaging import Handlers, UnitOfWork
from eventmart.platform.runtime import Service
from eventmart.services.inventory.adapters import (
    Holding,
    LineState,
    OrderReservations,
    Outcome,
    ReservationOutcome,
    ReservationOutcomes,
    StockStreams,
)
from eventmart.services.inventory.domain import StockItem

log = logging.getLogger(__name__)

OUT_OF_STOCK = "OUT_OF_STOCK"
UNKNOWN_PRODUCT = "UNKNOWN_PRODUCT"
# A ReleaseStock came before any ReserveStock for the order: a later reservation would
# only leak stock until it expired, so the order is refused from then on.
ORDER_RELEASED = "ORDER_RELEASED"
RESERVATION_EXPIRED = "RESERVATION_EXPIRED"


class Inventory:
    """The inventory's use cases (see the module docstring for what they guarantee)."""

    def __init__(
        self,
        streams: StockStreams,
        orders: OrderReservations,
        outcomes: ReservationOutcomes,
        reservation_ttl_s: float,
    ) -> None:
        self.streams = streams
        self.orders = orders
        self.outcomes = outcomes
        self.reservation_ttl_s = reservation_ttl_s

    # -- commands from the ordering saga ----------------------------------------------
    def reserve(self, uow: UnitOfWork, order_id: str, lines: Sequence[StockLine]) -> None:
        """All lines or none; the decision is recorded, so a repeat re-announces it."""
        wanted = _merge_lines(order_id, lines)
        decided = self.outcomes.get(uow.conn, order_id)
        if decided is not None:
            self._announce(uow, decided)
            return
        items = self.streams.load_many(uow.conn, wanted)
        unknown = {pid for pid in wanted if pid not in items}
        short = {pid for pid, q in wanted.items() if pid in items and not items[pid].can_reserve(q)}
        if unknown or short:
            outcome = ReservationOutcome(
                order_id,
                Outcome.FAILED,
                OUT_OF_STOCK if short else UNKNOWN_PRODUCT,
                tuple(pid for pid in wanted if pid in unknown or pid in short),
            )
            self.outcomes.record(uow.conn, outcome)
            self._announce(uow, outcome)
            return
        expires_at_ms = now_ms() + int(self.reservation_ttl_s * 1000)
        for pid, quantity in wanted.items():
            items[pid].reserve(order_id, quantity, expires_at_ms)
        self.streams.save(uow.conn, list(items.values()))
        self.orders.add(uow.conn, order_id, list(wanted.items()), expires_at_ms)
        self.outcomes.record(uow.conn, ReservationOutcome(order_id, Outcome.RESERVED))
        uow.publish(
            StockReservedReply(
                order_id=order_id,
                lines=[StockLine(product_id=p, quantity=q) for p, q in wanted.items()],
            )
        )
        _publish_levels(uow, items.values())

    def release(self, uow: UnitOfWork, order_id: str, reason: str) -> None:
        """Give back whatever the order holds (reserved or sold); always answer."""
        holdings = self.orders.lines(uow.conn, order_id)
        if not holdings and self.outcomes.get(uow.conn, order_id) is None:
            self.outcomes.record(
                uow.conn, ReservationOutcome(order_id, Outcome.FAILED, ORDER_RELEASED)
            )
        held = [h for h in holdings if h.state in (LineState.RESERVED, LineState.COMMITTED)]
        items = self._give_back(uow, order_id, held, reason)
        uow.publish(StockReleased(order_id=order_id, reason=reason))
        _publish_levels(uow, items)

    def commit(self, uow: UnitOfWork, order_id: str) -> None:
        """Turn the order's reservation into a sale (on_hand and reserved both drop).

        A line whose reservation expired is reserved again if stock allows; an order that
        holds nothing to commit cannot be helped by retrying, so it is dead-lettered for
        an operator (receive stock, then redrive).
        """
        conn = uow.conn
        holdings = self.orders.lines(conn, order_id)
        if not holdings:
            raise PoisonMessageError(f"order {order_id} holds no reservation to commit")
        reserved: list[Holding] = []
        expired: list[Holding] = []
        for h in holdings:
            if h.state is LineState.RESERVED:
                reserved.append(h)
            elif h.state is LineState.RELEASED and h.reason == RESERVATION_EXPIRED:
                expired.append(h)
            elif h.state is not LineState.COMMITTED:
                raise PoisonMessageError(
                    f"order {order_id}: product {h.product_id} was {h.state.value} "
                    f"({h.reason}) before CommitStock"
                )
        items = self.streams.load_many(conn, (h.product_id for h in reserved + expired))
        short = [h.product_id for h in expired if not items[h.product_id].can_reserve(h.quantity)]
        if short:
            raise PoisonMessageError(
                f"order {order_id}: its reservation expired and {', '.join(short)} "
                "no longer has the stock to commit"
            )
        now = now_ms()
        for h in expired:
            items[h.product_id].reserve(order_id, h.quantity, now)
        for h in reserved + expired:
            items[h.product_id].commit(order_id)
        self.streams.save(conn, list(items.values()))
        self.orders.set_state(
            conn, order_id, [h.product_id for h in reserved + expired], LineState.COMMITTED
        )
        uow.publish(StockCommitted(order_id=order_id))
        _publish_levels(uow, items.values())

    # -- the expiry loop and the admin ----------------------------------------------
    def expire(self, uow: UnitOfWork, order_id: str, now: int) -> bool:
        """Release the order's reservations that expired by `now`; whether any did."""
        due = [
            h
            for h in self.orders.lines(uow.conn, order_id)
            if h.state is LineState.RESERVED and h.expires_at_ms <= now
        ]
        if not due:
            return False  # committed, released or expired by another process meanwhile
        items = self._give_back(uow, order_id, due, RESERVATION_EXPIRED)
        uow.publish(StockReleased(order_id=order_id, reason=RESERVATION_EXPIRED))
        _publish_levels(uow, items)
        return True

    def receive(self, uow: UnitOfWork, deliveries: Sequence[tuple[str, int]]) -> list[StockItem]:
        """Add stock (creating a product's stream on its first delivery); the new levels."""
        items: dict[str, StockItem] = {}
        for pid, quantity in deliveries:
            item = items.get(pid) or self.streams.load(uow.conn, pid) or StockItem(pid)
            item.receive(quantity)
            items[pid] = item
        self.streams.save(uow.conn, list(items.values()))
        _publish_levels(uow, items.values())
        return list(items.values())

    # -- internals --------------------------------------------------------------------
    def _announce(self, uow: UnitOfWork, decided: ReservationOutcome) -> None:
        if decided.outcome is Outcome.RESERVED:
            lines = self.orders.lines(uow.conn, decided.order_id)
            uow.publish(
                StockReservedReply(
                    order_id=decided.order_id,
                    lines=[StockLine(product_id=h.product_id, quantity=h.quantity) for h in lines],
                )
            )
        else:
            uow.publish(
                StockReservationFailed(
                    order_id=decided.order_id,
                    reason=decided.reason,
                    unavailable=list(decided.unavailable),
                )
            )

    def _give_back(
        self, uow: UnitOfWork, order_id: str, held: Sequence[Holding], reason: str
    ) -> list[StockItem]:
        if not held:
            return []
        items = self.streams.load_many(uow.conn, (h.product_id for h in held))
        for h in held:
            if h.state is LineState.RESERVED:
                items[h.product_id].release(order_id, reason)
            else:
                items[h.product_id].return_sale(order_id)
        self.streams.save(uow.conn, list(items.values()))
        for state, new_state in (
            (LineState.RESERVED, LineState.RELEASED),
            (LineState.COMMITTED, LineState.RETURNED),
        ):
            pids = [h.product_id for h in held if h.state is state]
            self.orders.set_state(uow.conn, order_id, pids, new_state, reason)
        return list(items.values())


def _merge_lines(order_id: str, lines: Sequence[StockLine]) -> dict[str, int]:
    """Quantities by product, in first-seen order (a product may appear on several lines)."""
    if not lines:
        raise PoisonMessageError(f"ReserveStock for order {order_id} has no lines")
    wanted: dict[str, int] = {}
    for line in lines:
        if line.quantity <= 0:
            raise PoisonMessageError(
                f"ReserveStock for order {order_id}: quantity of {line.product_id} "
                f"must be greater than zero, not {line.quantity}"
            )
        wanted[line.product_id] = wanted.get(line.product_id, 0) + line.quantity
    return wanted


def _publish_levels(uow: UnitOfWork, items: Iterable[StockItem]) -> None:
    # A level supersedes the one before: a batch announces each product's last level.
    for item in items:
        uow.publish_latest(
            StockLevelChanged(
                product_id=item.product_id,
                on_hand=item.on_hand,
                reserved=item.reserved,
                available=item.available,
            )
        )


def inventory_handlers(inventory: Inventory) -> Handlers:
    handlers = Handlers()

    @handlers.on(ReserveStock)
    def reserve(msg: ReserveStock, _env: Envelope, uow: UnitOfWork) -> None:
        inventory.reserve(uow, msg.order_id, msg.lines)

    @handlers.on(ReleaseStock)
    def release(msg: ReleaseStock, _env: Envelope, uow: UnitOfWork) -> None:
        inventory.release(uow, msg.order_id, msg.reason)

    @handlers.on(CommitStock)
    def commit(msg: CommitStock, _env: Envelope, uow: UnitOfWork) -> None:
        inventory.commit(uow, msg.order_id)

    return handlers


def expire_reservations(service: Service, inventory: Inventory, limit: int = 100) -> int:
    """One tick of the expiry loop: release reservations past their expiry, one order per
    transaction (so one conflict does not hold back the rest); the number released."""
    assert service.store is not None
    now = now_ms()
    with service.store.db.read() as conn:
        due = inventory.orders.due(conn, now, limit)
    released = 0
    for order_id in due:
        try:
            with service.uow() as uow:
                released += inventory.expire(uow, order_id, now)
        except ConcurrencyError as e:
            # A consumer changed the same stream first; the next tick sees its outcome.
            log.info("expiring order %s lost a race (%s); retrying next tick", order_id, e)
    return released
