"""notification: one RFC 5322 mail per order event, written once whatever is redelivered
or restarted; an order event that overtakes its customer's registration waits for it."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY
from sqlalchemy import select

from eventmart.contracts.identity import UserRegistered
from eventmart.contracts.ordering import OrderCancelled, OrderConfirmed, OrderShipped
from eventmart.platform.dlq import DeadLetters
from eventmart.platform.messages import OutgoingRecord, new_id
from eventmart.platform.settings import Settings
from eventmart.services.notification.domain import mail_message_id
from tests.service.harness import ServiceHarness, running


def _user(user_id: str, email: str = "ada@example.com") -> UserRegistered:
    return UserRegistered(user_id=user_id, email=email, name="Ada Lovelace", role="customer")


def _confirmed(order_id: str, customer_id: str) -> OrderConfirmed:
    return OrderConfirmed(order_id=order_id, customer_id=customer_id, version=4, total_cents=12345)


def _send(h: ServiceHarness, *records: OutgoingRecord) -> None:
    producer = h.platform.bus.producer()
    try:
        producer.send(list(records))
    finally:
        producer.close()


def _id(record: OutgoingRecord) -> str:
    return dict(record.headers)["ce_id"].decode()


def _mails(h: ServiceHarness, **params: str) -> list[dict[str, Any]]:
    response = h.client.get("/mail", params=params)
    assert response.status_code == 200, response.text
    body: list[dict[str, Any]] = response.json()
    return body


def _files(settings: Settings) -> list[Path]:
    return sorted((settings.data_dir / "mail").glob("*.eml"))


def _parse(path: str | Path) -> EmailMessage:
    with open(path, "rb") as f:
        parsed = BytesParser(policy=policy.default).parse(f)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _handled(h: ServiceHarness, message_id: str) -> bool:
    store = h.service.store
    assert store is not None
    t = store.inbox.table
    with store.db.read() as conn:
        found = conn.execute(select(t.c.message_id).where(t.c.message_id == message_id)).first()
    return found is not None


def _retried() -> float:
    labels = {"group": "notification", "outcome": "retried"}
    return REGISTRY.get_sample_value("eventmart_messages_total", labels) or 0.0


def _customer_known(h: ServiceHarness, user_id: str) -> bool:
    store = h.service.store
    assert store is not None
    with store.db.read() as conn:
        tables = store.metadata.tables
        customers = tables["customers"]
        query = select(customers.c.user_id).where(customers.c.user_id == user_id)
        return conn.execute(query).first() is not None


def test_each_order_event_becomes_one_mail_with_proper_headers(settings: Settings) -> None:
    customer, order = new_id(), new_id()
    with running("notification", settings) as h:
        h.publish(_user(customer))
        h.eventually(lambda: _customer_known(h, customer))
        confirmed = h.writer.record(_confirmed(order, customer))
        cancelled = h.writer.record(
            OrderCancelled(
                order_id=order,
                customer_id=customer,
                version=6,
                reason="PAYMENT_DECLINED",
                detail="card declined",
            )
        )
        shipped = h.writer.record(
            OrderShipped(order_id=order, customer_id=customer, version=5, shipment_id="sh-42")
        )
        _send(h, confirmed, shipped, cancelled)
        mails = h.eventually(lambda: len(_mails(h, order_id=order)) == 3 and _mails(h))
        assert sorted(m["kind"] for m in mails) == [
            "order_cancelled",
            "order_confirmed",
            "order_shipped",
        ]
        assert {m["to"] for m in mails} == {"ada@example.com"}
        assert len(_files(settings)) == 3

        by_kind = {m["kind"]: m for m in mails}
        mail = _parse(by_kind["order_confirmed"]["file"])
        assert mail["From"] == "eventmart <orders@eventmart.local>"
        assert mail["To"] == "Ada Lovelace <ada@example.com>"
        assert mail["Subject"] == f"Your order {order} is confirmed"
        assert mail["Message-ID"] == f"<{mail_message_id(_id(confirmed))}>"
        assert by_kind["order_confirmed"]["message_id"] == mail_message_id(_id(confirmed))
        sent_at = parsedate_to_datetime(mail["Date"]).timestamp()
        assert abs(sent_at * 1000 - int(dict(confirmed.headers)["ce_time"])) < 1000
        body = mail.get_content()
        assert order in body and "123.45 USD" in body and "Hello Ada Lovelace" in body
        assert Path(by_kind["order_confirmed"]["file"]).name == f"{mail['Message-ID'][1:-1]}.eml"

        cancel_mail = _parse(by_kind["order_cancelled"]["file"])
        assert cancel_mail["Subject"] == f"Your order {order} was cancelled"
        assert "payment was declined" in cancel_mail.get_content()
        assert "card declined" in cancel_mail.get_content()
        assert "sh-42" in _parse(by_kind["order_shipped"]["file"]).get_content()

        assert _mails(h, to="ada@example.com", order_id=order) == mails
        assert _mails(h, to="nobody@example.com") == []
        assert h.client.get("/mail", params={"limit": 0}).status_code == 422


def test_duplicates_and_restarts_write_no_second_file(settings: Settings) -> None:
    customer, order, crashed = new_id(), new_id(), new_id()
    with running("notification", settings) as h:
        h.publish(_user(customer))
        h.eventually(lambda: _customer_known(h, customer))
        record = h.writer.record(_confirmed(order, customer))
        republished = h.writer.record(_confirmed(order, customer))
        # The same message twice (a redelivery), then the same event republished anew.
        _send(h, record, record, republished)
        h.eventually(lambda: _handled(h, _id(republished)))
        assert len(_mails(h, order_id=order)) == 1

        # As if an earlier attempt wrote the file and crashed before its commit.
        late = h.writer.record(_confirmed(crashed, customer))
        partial = settings.data_dir / "mail" / f"{mail_message_id(_id(late))}.eml"
        partial.write_bytes(b"Subject: written before the crash\n\n")
        _send(h, late)
        h.eventually(lambda: len(_mails(h, order_id=crashed)) == 1)
        assert partial.read_bytes() == b"Subject: written before the crash\n\n"
        files = _files(settings)
        assert len(files) == 2

    with running("notification", settings) as h:
        again = h.writer.record(_confirmed(order, customer))
        _send(h, record, again)
        h.eventually(lambda: _handled(h, _id(again)))
        assert len(_mails(h, order_id=order)) == 1
        assert _files(settings) == files
        assert not list((settings.data_dir / "mail").glob(".tmp-*"))


def test_order_event_before_its_customer_waits_for_the_registration(settings: Settings) -> None:
    customer, order = new_id(), new_id()
    patient = settings.model_copy(
        update={
            "retry_max_attempts": 100,
            "retry_backoff_initial_s": 0.02,
            "retry_backoff_max_s": 0.05,
        }
    )
    with running("notification", patient) as h:
        before = _retried()
        h.publish(_confirmed(order, customer))
        h.eventually(lambda: _retried() > before)  # it failed: the customer is unknown
        assert _mails(h, order_id=order) == []
        h.publish(_user(customer, email="late@example.com"))
        (mail,) = h.eventually(lambda: _mails(h, order_id=order))
        assert mail["to"] == "late@example.com"
        assert DeadLetters(h.platform.bus).list("notification") == []


def test_after_the_retries_an_order_event_is_dead_lettered_and_can_be_redriven(
    settings: Settings,
) -> None:
    customer, order = new_id(), new_id()
    with running("notification", settings) as h:
        h.publish(_confirmed(order, customer))
        letters = DeadLetters(h.platform.bus)
        (letter,) = h.eventually(lambda: letters.list("notification"))
        assert f"customer {customer} of order {order} is unknown" in letter.reason
        assert letter.error_type == "UnknownCustomerError"
        assert _mails(h, order_id=order) == []

        h.publish(_user(customer))
        h.eventually(lambda: _customer_known(h, customer))
        letters.redrive(letter.id)
        (mail,) = h.eventually(lambda: _mails(h, order_id=order))
        assert _parse(mail["file"])["Subject"] == f"Your order {order} is confirmed"
