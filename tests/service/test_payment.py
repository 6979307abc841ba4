"""payment: every test card, the slow card's durable timer and its void, idempotent
answers to repeated commands, and capture / void / refund transitions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from eventmart.contracts.payment import (
    AuthorizePayment,
    CapturePayment,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentDeclined,
    PaymentRefunded,
    PaymentVoided,
    RefundPayment,
    VoidPayment,
)
from eventmart.platform.dlq import DeadLetters
from eventmart.platform.messages import Message, new_id
from eventmart.platform.settings import Settings
from eventmart.services.payment.handlers import slow_timer_id
from eventmart.services.payment.messages import CompleteSlowAuthorization
from tests.service.harness import ServiceHarness, running


def _payment(h: ServiceHarness, order_id: str) -> dict[str, Any]:
    response = h.client.get(f"/payments/{order_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _status_is(h: ServiceHarness, order_id: str, status: str) -> bool:
    response = h.client.get(f"/payments/{order_id}")
    return response.status_code == 200 and response.json()["status"] == status


def _quiet(h: ServiceHarness) -> bool:
    """Every message the service committed has been published (nothing left to emit)."""
    store = h.service.store
    assert store is not None
    with store.db.read() as conn:
        return store.outbox.pending(conn) == 0


def _handled(h: ServiceHarness, message_id: str) -> bool:
    store = h.service.store
    assert store is not None
    t = store.inbox.table
    with store.db.read() as conn:
        found = conn.execute(select(t.c.message_id).where(t.c.message_id == message_id)).first()
    return found is not None


def _deliver(h: ServiceHarness, message: Message) -> str:
    """Publish one message and return its id (to wait until the service handled it)."""
    record = h.writer.record(message)
    producer = h.platform.bus.producer()
    try:
        producer.send([record])
    finally:
        producer.close()
    return dict(record.headers)["ce_id"].decode()


def _authorize(order_id: str, token: str, amount_cents: int = 4200) -> AuthorizePayment:
    return AuthorizePayment(order_id=order_id, amount_cents=amount_cents, card_token=token)


def test_each_test_card_answers_as_documented(settings: Settings) -> None:
    visa, declined, unknown, free, timeout = (new_id() for _ in range(5))
    with running("payment", settings) as h:
        h.publish(
            _authorize(visa, "tok_visa"),
            _authorize(declined, "tok_declined"),
            _authorize(unknown, "tok_mastercard"),
            _authorize(free, "tok_visa", amount_cents=0),
            _authorize(timeout, "tok_timeout"),
        )
        (ok,) = h.wait_for(PaymentAuthorized, key=visa)
        assert ok.amount_cents == 4200 and ok.authorization_id
        assert h.wait_for(PaymentDeclined, key=declined)[0].reason == "card declined"
        assert h.wait_for(PaymentDeclined, key=unknown)[0].reason == "unknown card token"
        assert h.wait_for(PaymentDeclined, key=free)[0].reason == "invalid amount"

        h.eventually(lambda: _status_is(h, timeout, "PENDING") and _quiet(h))
        assert h.emitted(PaymentAuthorized, key=timeout) == []
        assert h.emitted(PaymentDeclined, key=timeout) == []

        visa_row = _payment(h, visa)
        assert visa_row["status"] == "AUTHORIZED"
        assert visa_row["authorization_id"] == ok.authorization_id
        assert "card_token" not in visa_row
        listed = h.client.get("/payments", params={"status": "AUTHORIZED"}).json()
        assert [p["order_id"] for p in listed] == [visa]
        assert len(h.client.get("/payments").json()) == 5
        bad = h.client.get("/payments", params={"status": "PAID"})
        assert bad.status_code == 422 and "status" in str(bad.json()["detail"])
        missing = h.client.get(f"/payments/{new_id()}")
        assert missing.status_code == 404 and "not found" in missing.json()["detail"]


def test_repeated_commands_reannounce_the_recorded_outcome(settings: Settings) -> None:
    visa, declined, timeout = new_id(), new_id(), new_id()
    with running("payment", settings) as h:
        # Separate publishes are separate messages: the inbox does not stop the second one.
        h.publish(_authorize(visa, "tok_visa"), _authorize(declined, "tok_declined"))
        h.publish(_authorize(visa, "tok_visa", amount_cents=1), _authorize(declined, "tok_visa"))
        h.publish(_authorize(timeout, "tok_timeout"), _authorize(timeout, "tok_timeout"))
        first, second = h.wait_for(PaymentAuthorized, key=visa, count=2)
        assert first == second and first.amount_cents == 4200
        assert [d.reason for d in h.wait_for(PaymentDeclined, key=declined, count=2)] == [
            "card declined",
            "card declined",
        ]
        h.eventually(lambda: _status_is(h, timeout, "PENDING") and _quiet(h))
        assert h.emitted(PaymentAuthorized, key=visa) and len(h.emitted(PaymentAuthorized)) == 2
        assert h.emitted(PaymentDeclined, key=timeout) == []


def test_slow_card_answers_after_the_delay_by_a_durable_timer(settings: Settings) -> None:
    order = new_id()
    slow = settings.model_copy(update={"payment_slow_delay_s": 0.3})
    with running("payment", slow) as h:
        h.publish(_authorize(order, "tok_slow"))
        (answer,) = h.wait_for(PaymentAuthorized, key=order)
        assert answer.amount_cents == 4200
        ((asked, _),) = h.emitted(AuthorizePayment, key=order)
        ((answered, _),) = h.emitted(PaymentAuthorized, key=order)
        assert answered.occurred_at_ms - asked.occurred_at_ms >= 300
        assert len(h.emitted(CompleteSlowAuthorization, key=order)) == 1
        assert _payment(h, order)["status"] == "AUTHORIZED"


def test_slow_card_voided_before_it_answers_is_never_authorized(settings: Settings) -> None:
    order = new_id()
    slow = settings.model_copy(update={"payment_slow_delay_s": 60.0})
    with running("payment", slow) as h:
        store = h.service.store
        assert store is not None
        timers = store.timers.table

        def timer_set() -> bool:
            with store.db.read() as conn:
                query = select(timers.c.timer_id).where(timers.c.timer_id == slow_timer_id(order))
                return conn.execute(query).first() is not None

        h.publish(_authorize(order, "tok_slow"))
        h.eventually(lambda: _status_is(h, order, "PENDING"))
        assert timer_set()
        h.publish(VoidPayment(order_id=order, reason="PAYMENT_TIMEOUT"))
        h.wait_for(PaymentVoided, key=order)
        assert not timer_set()
        assert _payment(h, order)["reason"] == "PAYMENT_TIMEOUT"

        # As if the timer had fired just before the void withdrew it, and the saga asked again.
        late = _deliver(h, CompleteSlowAuthorization(order_id=order))
        h.publish(_authorize(order, "tok_slow"))
        h.wait_for(PaymentVoided, key=order, count=2)
        h.eventually(lambda: _handled(h, late) and _quiet(h))
        assert h.emitted(PaymentAuthorized, key=order) == []
        assert _payment(h, order)["status"] == "VOIDED"


def test_capture_void_and_refund_transitions(settings: Settings) -> None:
    captured, voided, refunded, unseen, declined = (new_id() for _ in range(5))
    with running("payment", settings) as h:
        h.publish(
            *(_authorize(o, "tok_visa") for o in (captured, voided, refunded)),
            _authorize(declined, "tok_declined"),
        )
        for o in (captured, voided, refunded):
            h.wait_for(PaymentAuthorized, key=o)
        h.wait_for(PaymentDeclined, key=declined)

        # Captured: capture again re-announces; a void is ignored; a refund gives it back.
        h.publish(CapturePayment(order_id=captured))
        h.publish(CapturePayment(order_id=captured))
        assert [c.amount_cents for c in h.wait_for(PaymentCaptured, key=captured, count=2)] == [
            4200,
            4200,
        ]
        h.publish(VoidPayment(order_id=captured))
        h.publish(RefundPayment(order_id=captured, reason="CUSTOMER_CANCELLED"))
        h.publish(RefundPayment(order_id=captured))
        assert len(h.wait_for(PaymentRefunded, key=captured, count=2)) == 2
        assert _payment(h, captured)["status"] == "REFUNDED"

        # Authorized: void, void again (re-announced), then capturing it is a bug upstream.
        h.publish(VoidPayment(order_id=voided), VoidPayment(order_id=voided))
        h.wait_for(PaymentVoided, key=voided, count=2)
        h.publish(CapturePayment(order_id=voided), CapturePayment(order_id=declined))

        # A refund before capture is a void.
        h.publish(RefundPayment(order_id=refunded))
        h.wait_for(PaymentVoided, key=refunded)
        assert _payment(h, refunded)["status"] == "VOIDED"

        # A void that overtakes its authorization: recorded, so the authorization never happens.
        h.publish(VoidPayment(order_id=unseen))
        h.wait_for(PaymentVoided, key=unseen)
        h.publish(_authorize(unseen, "tok_visa"))
        h.wait_for(PaymentVoided, key=unseen, count=2)

        def dead() -> dict[str, str]:
            return {d.key: d.reason for d in DeadLetters(h.platform.bus).list("payment")}

        letters = h.eventually(lambda: len(dead()) == 2 and dead())
        assert "cannot capture a VOIDED payment" in letters[voided]
        assert "cannot capture a DECLINED payment" in letters[declined]
        h.eventually(lambda: _quiet(h))
        assert h.emitted(PaymentVoided, key=captured) == []
        assert h.emitted(PaymentAuthorized, key=unseen) == []
        assert h.emitted(PaymentCaptured, key=voided) == []
