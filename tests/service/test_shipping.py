"""shipping: a confirmed order's shipment is created, dispatched and delivered on durable
timers (across a restart too); a cancellation stops it before dispatch, never after."""

from __future__ import annotations

from sqlalchemy import select

from eventmart.contracts.ordering import OrderCancelled, OrderConfirmed
from eventmart.contracts.shipping import (
    ShipmentCancelled,
    ShipmentCreated,
    ShipmentDelivered,
    ShipmentDispatched,
)
from eventmart.platform.db import Database
from eventmart.platform.messages import Message, new_id
from eventmart.platform.settings import Settings
from eventmart.platform.store import ServiceStore
from eventmart.services.shipping.fulfillment import dispatch_timer_id
from eventmart.services.shipping.messages import DispatchShipment
from tests.service.harness import ServiceHarness, running


def _confirmed(order_id: str) -> OrderConfirmed:
    return OrderConfirmed(order_id=order_id, customer_id="c1", version=4, total_cents=2500)


def _cancelled(order_id: str, reason: str = "CUSTOMER_CANCELLED") -> OrderCancelled:
    return OrderCancelled(order_id=order_id, customer_id="c1", version=5, reason=reason)


def _deliver(h: ServiceHarness, message: Message) -> str:
    """Publish one message and return its id (to wait until the service handled it)."""
    record = h.writer.record(message)
    producer = h.platform.bus.producer()
    try:
        producer.send([record])
    finally:
        producer.close()
    return dict(record.headers)["ce_id"].decode()


def _handled(h: ServiceHarness, message_id: str) -> bool:
    store = h.service.store
    assert store is not None
    t = store.inbox.table
    with store.db.read() as conn:
        found = conn.execute(select(t.c.message_id).where(t.c.message_id == message_id)).first()
    return found is not None


def _quiet(h: ServiceHarness) -> bool:
    store = h.service.store
    assert store is not None
    with store.db.read() as conn:
        return store.outbox.pending(conn) == 0


def _timer_set(store: ServiceStore, timer_id: str) -> bool:
    t = store.timers.table
    with store.db.read() as conn:
        return (
            conn.execute(select(t.c.timer_id).where(t.c.timer_id == timer_id)).first() is not None
        )


def test_confirmed_order_is_created_dispatched_and_delivered(settings: Settings) -> None:
    order = new_id()
    fast = settings.model_copy(
        update={"shipping_dispatch_delay_s": 0.2, "shipping_delivery_delay_s": 0.2}
    )
    with running("shipping", fast) as h:
        h.publish(_confirmed(order))
        (created,) = h.wait_for(ShipmentCreated, key=order)
        (dispatched,) = h.wait_for(ShipmentDispatched, key=order)
        (delivered,) = h.wait_for(ShipmentDelivered, key=order)
        assert created.shipment_id == dispatched.shipment_id == delivered.shipment_id
        assert dispatched.tracking_code.startswith("EM") and dispatched.carrier

        shipment = h.client.get(f"/shipments/{order}").json()
        assert shipment["status"] == "DELIVERED"
        assert shipment["shipment_id"] == created.shipment_id
        assert shipment["tracking_code"] == dispatched.tracking_code
        assert shipment["dispatched_at_ms"] - shipment["created_at_ms"] >= 200
        assert shipment["delivered_at_ms"] - shipment["dispatched_at_ms"] >= 200

        again = _deliver(h, _confirmed(order))
        h.eventually(lambda: _handled(h, again) and _quiet(h))
        assert len(h.emitted(ShipmentCreated, key=order)) == 1
        assert h.client.get(f"/shipments/{order}").json()["status"] == "DELIVERED"
        missing = h.client.get(f"/shipments/{new_id()}")
        assert missing.status_code == 404 and "not found" in missing.json()["detail"]


def test_cancellation_stops_a_shipment_only_before_dispatch(settings: Settings) -> None:
    early, unconfirmed, late = new_id(), new_id(), new_id()
    slow = settings.model_copy(update={"shipping_dispatch_delay_s": 60.0})
    with running("shipping", slow) as h:
        store = h.service.store
        assert store is not None
        h.publish(_confirmed(early), _confirmed(late))
        (created,) = h.wait_for(ShipmentCreated, key=early)
        assert _timer_set(store, dispatch_timer_id(created.shipment_id))

        # Cancelled before dispatch: cancelled, its timer withdrawn, and a timer that had
        # fired already dispatches nothing.
        h.publish(_cancelled(early))
        (cancel,) = h.wait_for(ShipmentCancelled, key=early)
        assert (cancel.shipment_id, cancel.reason) == (created.shipment_id, "CUSTOMER_CANCELLED")
        assert not _timer_set(store, dispatch_timer_id(created.shipment_id))
        fired = _deliver(h, DispatchShipment(order_id=early, shipment_id=created.shipment_id))

        # Cancelled before it was confirmed (a redriven confirmation): no shipment at all.
        h.publish(_cancelled(unconfirmed, "PAYMENT_TIMEOUT"))
        redriven = _deliver(h, _confirmed(unconfirmed))

        # Dispatched already: the cancellation is ignored.
        (late_created,) = h.wait_for(ShipmentCreated, key=late)
        h.publish(DispatchShipment(order_id=late, shipment_id=late_created.shipment_id))
        h.wait_for(ShipmentDispatched, key=late)
        late_cancel = _deliver(h, _cancelled(late))

        h.eventually(
            lambda: all(_handled(h, m) for m in (fired, redriven, late_cancel)) and _quiet(h)
        )
        assert h.client.get(f"/shipments/{early}").json()["status"] == "CANCELLED"
        assert h.emitted(ShipmentDispatched, key=early) == []
        assert h.emitted(ShipmentCreated, key=unconfirmed) == []
        assert h.client.get(f"/shipments/{unconfirmed}").status_code == 404
        assert h.client.get(f"/shipments/{late}").json()["status"] == "DISPATCHED"
        assert h.emitted(ShipmentCancelled, key=late) == []


def test_dispatch_survives_a_restart(settings: Settings) -> None:
    order = new_id()
    timed = settings.model_copy(
        update={"shipping_dispatch_delay_s": 2.0, "shipping_delivery_delay_s": 0.1}
    )
    with running("shipping", timed) as h:
        h.publish(_confirmed(order))
        (created,) = h.wait_for(ShipmentCreated, key=order)
    # Stopped before the dispatch was due: only the timer row remembers it.
    db = Database(timed.store_url("shipping"))
    try:
        t = ServiceStore(db).timers.table
        with db.read() as conn:
            query = select(t.c.timer_id).where(
                t.c.timer_id == dispatch_timer_id(created.shipment_id)
            )
            assert conn.execute(query).first() is not None
    finally:
        db.dispose()

    with running("shipping", timed) as h:
        (dispatched,) = h.wait_for(ShipmentDispatched, key=order)
        (delivered,) = h.wait_for(ShipmentDelivered, key=order)
        assert dispatched.shipment_id == delivered.shipment_id == created.shipment_id
        assert len(h.emitted(ShipmentCreated, key=order)) == 1
        assert h.client.get(f"/shipments/{order}").json()["status"] == "DELIVERED"
