"""payment: a simulated card processor, driven by the card token like test cards are.

tok_visa approves, tok_declined declines, tok_timeout never answers, tok_slow answers late.
"""

from __future__ import annotations

from eventmart.platform.messages import Command, Event


class PaymentCommand(Command, frozen=True, kw_only=True):
    abstract = True
    namespace = "eventmart.payment"
    topic = "payment.commands"
    key_field = "order_id"

    order_id: str


class AuthorizePayment(PaymentCommand, frozen=True, kw_only=True):
    amount_cents: int
    card_token: str
    currency: str = "USD"


class CapturePayment(PaymentCommand, frozen=True, kw_only=True):
    pass


class VoidPayment(PaymentCommand, frozen=True, kw_only=True):
    """Compensation: cancel an authorization (or one that arrives after this)."""

    reason: str = ""


class RefundPayment(PaymentCommand, frozen=True, kw_only=True):
    reason: str = ""


class PaymentEvent(Event, frozen=True, kw_only=True):
    abstract = True
    namespace = "eventmart.payment"
    topic = "payment.events"
    key_field = "order_id"

    order_id: str


class PaymentAuthorized(PaymentEvent, frozen=True, kw_only=True):
    authorization_id: str
    amount_cents: int


class PaymentDeclined(PaymentEvent, frozen=True, kw_only=True):
    reason: str


class PaymentCaptured(PaymentEvent, frozen=True, kw_only=True):
    amount_cents: int


class PaymentVoided(PaymentEvent, frozen=True, kw_only=True):
    pass


class PaymentRefunded(PaymentEvent, frozen=True, kw_only=True):
    amount_cents: int
