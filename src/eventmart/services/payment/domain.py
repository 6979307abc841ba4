"""The payment's rules: how the simulated card processor decides, and its status machine.

Pure: no I/O, no framework. Every command is a function of the payment as recorded (or
None) that returns a `Decision`: the state to record, whether to announce the resulting
status, and what to do with the slow-authorization timer. Announcing always tells the
payment's *current* status, so answering a repeated command is the same as answering the
first one (a second AuthorizePayment re-announces, it never authorizes twice).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum

# The test cards, as card processors' sandboxes have them.
TOK_VISA = "tok_visa"
TOK_DECLINED = "tok_declined"
TOK_TIMEOUT = "tok_timeout"
TOK_SLOW = "tok_slow"

CARD_DECLINED = "card declined"
UNKNOWN_CARD = "unknown card token"
INVALID_AMOUNT = "invalid amount"


class PaymentStatus(StrEnum):
    PENDING = "PENDING"  # asked, no answer yet (tok_timeout never answers, tok_slow later)
    AUTHORIZED = "AUTHORIZED"
    DECLINED = "DECLINED"
    CAPTURED = "CAPTURED"
    VOIDED = "VOIDED"
    REFUNDED = "REFUNDED"


class PaymentError(ValueError):
    """A command that can never succeed on this payment (a bug upstream, not a retry)."""


class SlowTimer(StrEnum):
    KEEP = "KEEP"
    START = "START"
    CANCEL = "CANCEL"


@dataclass(frozen=True, slots=True)
class Payment:
    """One order's payment. `reason` says why it ended DECLINED, VOIDED or REFUNDED."""

    order_id: str
    status: PaymentStatus
    amount_cents: int
    currency: str
    card_token: str
    authorization_id: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    """What a command does. `payment` is the payment after it (None: still no record);
    `changed` says whether to write it; `announce` whether to publish its status."""

    payment: Payment | None
    changed: bool = False
    announce: bool = False
    slow_timer: SlowTimer = SlowTimer.KEEP
    note: str = ""  # why nothing changed, for the log


def announces(status: PaymentStatus) -> bool:
    """Every status but PENDING is an answer the processor can give."""
    return status is not PaymentStatus.PENDING


def _repeat(current: Payment, note: str) -> Decision:
    return Decision(current, announce=announces(current.status), note=note)


def _to(
    current: Payment,
    status: PaymentStatus,
    *,
    authorization_id: str | None = None,
    reason: str | None = None,
) -> Decision:
    after = dataclasses.replace(
        current,
        status=status,
        authorization_id=current.authorization_id if authorization_id is None else authorization_id,
        reason=current.reason if reason is None else reason,
    )
    return Decision(after, changed=True, announce=True)


def authorize(
    current: Payment | None,
    *,
    order_id: str,
    amount_cents: int,
    currency: str,
    card_token: str,
    authorization_id: str,
) -> Decision:
    """Decide an authorization. `authorization_id` is used only if one is granted now."""
    if current is not None:
        # Idempotent by order: whatever happened first (including a void that overtook
        # this request) is the answer; a pending request stays pending.
        return _repeat(current, f"payment already {current.status}")
    new = Payment(order_id, PaymentStatus.PENDING, amount_cents, currency, card_token)
    if amount_cents <= 0:
        return _to(new, PaymentStatus.DECLINED, reason=INVALID_AMOUNT)
    if card_token == TOK_VISA:
        return _to(new, PaymentStatus.AUTHORIZED, authorization_id=authorization_id)
    if card_token == TOK_DECLINED:
        return _to(new, PaymentStatus.DECLINED, reason=CARD_DECLINED)
    if card_token == TOK_TIMEOUT:
        return Decision(new, changed=True)
    if card_token == TOK_SLOW:
        return Decision(new, changed=True, slow_timer=SlowTimer.START)
    return _to(new, PaymentStatus.DECLINED, reason=UNKNOWN_CARD)


def complete_slow(current: Payment | None, *, authorization_id: str) -> Decision:
    """The slow card answers: approve, unless the payment was voided (or settled) since."""
    if current is None:
        return Decision(None, note="no payment awaits a slow authorization")
    if current.status is not PaymentStatus.PENDING or current.card_token != TOK_SLOW:
        # A void got there first: a late approval must never reach the saga.
        return Decision(current, note=f"payment is {current.status}; nothing to complete")
    return _to(current, PaymentStatus.AUTHORIZED, authorization_id=authorization_id)


def void(current: Payment | None, *, order_id: str, reason: str = "") -> Decision:
    """Cancel an authorization, a pending request, or one that has not arrived yet."""
    if current is None:
        # Recorded so that an AuthorizePayment arriving after this is never authorized.
        marker = Payment(order_id, PaymentStatus.VOIDED, 0, "", "", reason=reason)
        return Decision(marker, changed=True, announce=True)
    match current.status:
        case PaymentStatus.PENDING:
            decision = _to(current, PaymentStatus.VOIDED, reason=reason)
            return dataclasses.replace(decision, slow_timer=SlowTimer.CANCEL)
        case PaymentStatus.AUTHORIZED:
            return _to(current, PaymentStatus.VOIDED, reason=reason)
        case PaymentStatus.VOIDED:
            return _repeat(current, "already voided")
        case _:
            # Captured or refunded money is the refund's business; a declined payment
            # holds nothing to void (and its decline was announced already).
            return Decision(current, note=f"a {current.status} payment cannot be voided")


def capture(current: Payment | None, *, order_id: str) -> Decision:
    """Take the authorized money. Capturing anything but an authorization is a bug."""
    if current is None:
        raise PaymentError(f"order {order_id}: no payment to capture")
    match current.status:
        case PaymentStatus.AUTHORIZED:
            return _to(current, PaymentStatus.CAPTURED)
        case PaymentStatus.CAPTURED:
            return _repeat(current, "already captured")
        case _:
            raise PaymentError(
                f"order {order_id}: cannot capture a {current.status} payment "
                f"(only an AUTHORIZED one)"
            )


def refund(current: Payment | None, *, order_id: str, reason: str = "") -> Decision:
    """Give captured money back; a payment not captured yet is voided instead."""
    if current is not None and current.status is PaymentStatus.CAPTURED:
        return _to(current, PaymentStatus.REFUNDED, reason=reason)
    if current is not None and current.status is PaymentStatus.REFUNDED:
        return _repeat(current, "already refunded")
    return void(current, order_id=order_id, reason=reason)
