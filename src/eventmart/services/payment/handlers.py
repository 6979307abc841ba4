"""payment's message handlers: the saga's commands and its own slow-card timer."""

from __future__ import annotations

import logging

from eventmart.contracts.payment import (
    AuthorizePayment,
    CapturePayment,
    PaymentAuthorized,
    PaymentCaptured,
    PaymentDeclined,
    PaymentEvent,
    PaymentRefunded,
    PaymentVoided,
    RefundPayment,
    VoidPayment,
)
from eventmart.platform.errors import PoisonMessageError
from eventmart.platform.messages import Envelope, new_id
from eventmart.platform.messaging import Handlers, UnitOfWork
from eventmart.services.payment import domain
from eventmart.services.payment.adapters import PaymentTable
from eventmart.services.payment.domain import Decision, Payment, PaymentStatus, SlowTimer
from eventmart.services.payment.messages import CompleteSlowAuthorization

log = logging.getLogger(__name__)

PRODUCES: list[type[PaymentEvent]] = [
    PaymentAuthorized,
    PaymentDeclined,
    PaymentCaptured,
    PaymentVoided,
    PaymentRefunded,
]


def slow_timer_id(order_id: str) -> str:
    return f"payment.slow:{order_id}"


def new_authorization_id() -> str:
    return f"auth_{new_id().replace('-', '')}"


def announcement(p: Payment) -> PaymentEvent | None:
    """The event that tells the payment's status (none while it is pending)."""
    match p.status:
        case PaymentStatus.AUTHORIZED:
            return PaymentAuthorized(
                order_id=p.order_id,
                authorization_id=p.authorization_id,
                amount_cents=p.amount_cents,
            )
        case PaymentStatus.DECLINED:
            return PaymentDeclined(order_id=p.order_id, reason=p.reason)
        case PaymentStatus.CAPTURED:
            return PaymentCaptured(order_id=p.order_id, amount_cents=p.amount_cents)
        case PaymentStatus.VOIDED:
            return PaymentVoided(order_id=p.order_id)
        case PaymentStatus.REFUNDED:
            return PaymentRefunded(order_id=p.order_id, amount_cents=p.amount_cents)
        case PaymentStatus.PENDING:
            return None


def payment_handlers(payments: PaymentTable, slow_delay_s: float) -> Handlers:
    """The handlers of the `payment` group; `slow_delay_s` is how late tok_slow answers."""
    handlers = Handlers()

    def apply(uow: UnitOfWork, order_id: str, decision: Decision, command: str) -> None:
        p = decision.payment
        if decision.changed and p is not None:
            payments.save(uow.conn, p)
        if decision.slow_timer is SlowTimer.START:
            uow.schedule(
                slow_timer_id(order_id), slow_delay_s, CompleteSlowAuthorization(order_id=order_id)
            )
        elif decision.slow_timer is SlowTimer.CANCEL:
            uow.cancel_timer(slow_timer_id(order_id))
        event = announcement(p) if decision.announce and p is not None else None
        if event is not None:
            uow.publish(event)
        if decision.note:
            log.info("%s for order %s: %s", command, order_id, decision.note)

    @handlers.on(AuthorizePayment)
    def authorize(msg: AuthorizePayment, _env: Envelope, uow: UnitOfWork) -> None:
        current = payments.get(uow.conn, msg.order_id, for_update=True)
        decision = domain.authorize(
            current,
            order_id=msg.order_id,
            amount_cents=msg.amount_cents,
            currency=msg.currency,
            card_token=msg.card_token,
            authorization_id=new_authorization_id(),
        )
        apply(uow, msg.order_id, decision, "AuthorizePayment")

    @handlers.on(CompleteSlowAuthorization)
    def complete_slow(msg: CompleteSlowAuthorization, _env: Envelope, uow: UnitOfWork) -> None:
        current = payments.get(uow.conn, msg.order_id, for_update=True)
        decision = domain.complete_slow(current, authorization_id=new_authorization_id())
        apply(uow, msg.order_id, decision, "CompleteSlowAuthorization")

    @handlers.on(VoidPayment)
    def void(msg: VoidPayment, _env: Envelope, uow: UnitOfWork) -> None:
        current = payments.get(uow.conn, msg.order_id, for_update=True)
        decision = domain.void(current, order_id=msg.order_id, reason=msg.reason)
        apply(uow, msg.order_id, decision, "VoidPayment")

    @handlers.on(CapturePayment)
    def capture(msg: CapturePayment, _env: Envelope, uow: UnitOfWork) -> None:
        current = payments.get(uow.conn, msg.order_id, for_update=True)
        try:
            decision = domain.capture(current, order_id=msg.order_id)
        except domain.PaymentError as e:
            raise PoisonMessageError(str(e)) from e
        apply(uow, msg.order_id, decision, "CapturePayment")

    @handlers.on(RefundPayment)
    def refund(msg: RefundPayment, _env: Envelope, uow: UnitOfWork) -> None:
        current = payments.get(uow.conn, msg.order_id, for_update=True)
        decision = domain.refund(current, order_id=msg.order_id, reason=msg.reason)
        apply(uow, msg.order_id, decision, "RefundPayment")

    return handlers
