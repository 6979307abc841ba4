"""The payment's status machine and the test cards' decisions, without any I/O."""

from __future__ import annotations

import dataclasses

import pytest

from eventmart.services.payment import domain
from eventmart.services.payment.domain import (
    Decision,
    Payment,
    PaymentError,
    PaymentStatus,
    SlowTimer,
)

S = PaymentStatus


def _ask(current: Payment | None, token: str, amount: int = 1000) -> Decision:
    return domain.authorize(
        current,
        order_id="o1",
        amount_cents=amount,
        currency="USD",
        card_token=token,
        authorization_id="auth-new",
    )


def _in(status: PaymentStatus, token: str = "tok_visa") -> Payment:
    auth = "auth-1" if status in (S.AUTHORIZED, S.CAPTURED, S.REFUNDED) else ""
    return Payment("o1", status, 1000, "USD", token, authorization_id=auth)


@pytest.mark.parametrize(
    ("token", "amount", "expected"),
    [
        ("tok_visa", 1000, (S.AUTHORIZED, "", True, SlowTimer.KEEP)),
        ("tok_declined", 1000, (S.DECLINED, "card declined", True, SlowTimer.KEEP)),
        ("tok_timeout", 1000, (S.PENDING, "", False, SlowTimer.KEEP)),
        ("tok_slow", 1000, (S.PENDING, "", False, SlowTimer.START)),
        ("tok_amex", 1000, (S.DECLINED, "unknown card token", True, SlowTimer.KEEP)),
        ("", 1000, (S.DECLINED, "unknown card token", True, SlowTimer.KEEP)),
        ("tok_visa", 0, (S.DECLINED, "invalid amount", True, SlowTimer.KEEP)),
        ("tok_slow", -5, (S.DECLINED, "invalid amount", True, SlowTimer.KEEP)),
    ],
)
def test_a_first_authorization_decides_by_card_token(
    token: str, amount: int, expected: tuple[PaymentStatus, str, bool, SlowTimer]
) -> None:
    d = _ask(None, token, amount)
    assert d.payment is not None and d.changed
    assert (d.payment.status, d.payment.reason, d.announce, d.slow_timer) == expected
    authorized = expected[0] is S.AUTHORIZED
    assert d.payment.authorization_id == ("auth-new" if authorized else "")
    assert (d.payment.order_id, d.payment.amount_cents, d.payment.card_token) == (
        "o1",
        amount,
        token,
    )


@pytest.mark.parametrize("status", list(PaymentStatus))
def test_a_repeated_authorization_changes_nothing_and_retells_the_status(
    status: PaymentStatus,
) -> None:
    current = _in(status, token="tok_slow")
    d = _ask(current, "tok_visa", amount=999)
    assert d.payment == current and not d.changed
    assert d.announce is (status is not S.PENDING)
    assert d.slow_timer is SlowTimer.KEEP  # a pending slow request keeps its one timer


def test_slow_authorization_completes_only_a_pending_slow_payment() -> None:
    pending = _in(S.PENDING, token="tok_slow")
    d = domain.complete_slow(pending, authorization_id="auth-late")
    assert d.payment == dataclasses.replace(
        pending, status=S.AUTHORIZED, authorization_id="auth-late"
    )
    assert d.changed and d.announce
    for current in (
        _in(S.VOIDED, token="tok_slow"),
        _in(S.AUTHORIZED, token="tok_slow"),
        _in(S.PENDING, token="tok_timeout"),
        None,
    ):
        late = domain.complete_slow(current, authorization_id="auth-late")
        assert (late.payment, late.changed, late.announce) == (current, False, False)
        assert late.note


@pytest.mark.parametrize(
    ("before", "after", "announce", "timer"),
    [
        (S.AUTHORIZED, S.VOIDED, True, SlowTimer.KEEP),
        (S.PENDING, S.VOIDED, True, SlowTimer.CANCEL),
        (S.VOIDED, S.VOIDED, True, SlowTimer.KEEP),
        (S.CAPTURED, S.CAPTURED, False, SlowTimer.KEEP),
        (S.REFUNDED, S.REFUNDED, False, SlowTimer.KEEP),
        (S.DECLINED, S.DECLINED, False, SlowTimer.KEEP),
    ],
)
def test_void(
    before: PaymentStatus, after: PaymentStatus, announce: bool, timer: SlowTimer
) -> None:
    d = domain.void(_in(before), order_id="o1", reason="PAYMENT_TIMEOUT")
    assert d.payment is not None
    assert (d.payment.status, d.changed, d.announce, d.slow_timer) == (
        after,
        before != after,
        announce,
        timer,
    )
    if before != after:
        assert d.payment.reason == "PAYMENT_TIMEOUT"


def test_a_void_before_its_authorization_is_recorded_and_wins() -> None:
    d = domain.void(None, order_id="o9", reason="PAYMENT_TIMEOUT")
    assert d.payment is not None and d.changed and d.announce
    assert (d.payment.order_id, d.payment.status) == ("o9", S.VOIDED)
    late = _ask(d.payment, "tok_visa")
    assert late.payment == d.payment and not late.changed and late.announce


def test_capture() -> None:
    d = domain.capture(_in(S.AUTHORIZED), order_id="o1")
    assert d.payment is not None and d.payment.status is S.CAPTURED
    assert d.payment.authorization_id == "auth-1" and d.changed and d.announce
    again = domain.capture(d.payment, order_id="o1")
    assert (again.payment, again.changed, again.announce) == (d.payment, False, True)
    for status in (S.PENDING, S.DECLINED, S.VOIDED, S.REFUNDED):
        with pytest.raises(PaymentError, match=f"cannot capture a {status} payment"):
            domain.capture(_in(status), order_id="o1")
    with pytest.raises(PaymentError, match="no payment to capture"):
        domain.capture(None, order_id="o1")


@pytest.mark.parametrize(
    ("before", "after", "changed", "announce", "timer"),
    [
        (S.CAPTURED, S.REFUNDED, True, True, SlowTimer.KEEP),
        (S.REFUNDED, S.REFUNDED, False, True, SlowTimer.KEEP),
        (S.AUTHORIZED, S.VOIDED, True, True, SlowTimer.KEEP),
        (S.PENDING, S.VOIDED, True, True, SlowTimer.CANCEL),
        (S.VOIDED, S.VOIDED, False, True, SlowTimer.KEEP),
        (S.DECLINED, S.DECLINED, False, False, SlowTimer.KEEP),
    ],
)
def test_refund(
    before: PaymentStatus,
    after: PaymentStatus,
    changed: bool,
    announce: bool,
    timer: SlowTimer,
) -> None:
    d = domain.refund(_in(before), order_id="o1", reason="CUSTOMER_CANCELLED")
    assert d.payment is not None
    assert (d.payment.status, d.changed, d.announce, d.slow_timer) == (
        after,
        changed,
        announce,
        timer,
    )
    assert (
        d.payment.amount_cents == 1000
        and d.payment.authorization_id == _in(before).authorization_id
    )
