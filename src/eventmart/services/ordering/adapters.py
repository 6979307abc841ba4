"""Orders in the event store: one stream per order, the contract events as JSON."""

from __future__ import annotations

import msgspec
from sqlalchemy import Connection

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
from eventmart.platform.messaging import UnitOfWork
from eventmart.platform.store import ServiceStore
from eventmart.platform.store.eventstore import Append, NewEvent, StoredEvent
from eventmart.services.ordering.domain import Order

EVENT_TYPES: dict[str, type[OrderEvent]] = {
    cls.type_name(): cls
    for cls in (
        OrderPlaced,
        OrderStockReserved,
        OrderPaymentAuthorized,
        OrderConfirmed,
        OrderCancelled,
        OrderShipped,
        OrderDelivered,
    )
}


def stream_id(order_id: str) -> str:
    return f"order-{order_id}"


class OrderRepository:
    """Loads an order by folding its stream; saves new events with optimistic concurrency
    and publishes them in the same transaction (the outbox)."""

    def __init__(self, store: ServiceStore) -> None:
        self.store = store

    def events(self, conn: Connection, order_id: str) -> list[StoredEvent]:
        return self.store.events.read_stream(conn, stream_id(order_id))

    def load(self, conn: Connection, order_id: str) -> Order | None:
        stored = self.events(conn, order_id)
        if not stored:
            return None
        return Order.from_events(order_id, [decode(e) for e in stored])

    def save(self, uow: UnitOfWork, order: Order, new: list[OrderEvent]) -> None:
        if not new:
            return
        expected = order.version - len(new)
        self.store.events.append(
            uow.conn,
            [
                Append(
                    stream_id(order.order_id),
                    expected,
                    [NewEvent(type(e).type_name(), msgspec.json.encode(e)) for e in new],
                )
            ],
        )
        for e in new:
            uow.publish(e)


def decode(stored: StoredEvent) -> OrderEvent:
    return msgspec.json.decode(stored.data, type=EVENT_TYPES[stored.type])
