"""payment's private messages: timers it sets for itself (not part of the published language)."""

from __future__ import annotations

from eventmart.platform.messages import Command


class PaymentInternal(Command, frozen=True, kw_only=True):
    abstract = True
    namespace = "eventmart.payment.internal"
    topic = "payment.internal"
    key_field = "order_id"

    order_id: str


class CompleteSlowAuthorization(PaymentInternal, frozen=True, kw_only=True):
    """The tok_slow card's late answer, due `payment_slow_delay_s` after the request."""


INTERNAL_MESSAGES = [CompleteSlowAuthorization]
