"""notification's mails as files: what a mail reader parses back out of them."""

from __future__ import annotations

from email import policy
from email.errors import HeaderParseError
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from eventmart.services.notification.domain import (
    Customer,
    order_cancelled,
    order_confirmed,
)

AT_MS = 1_700_000_000_000


def _parse(raw: bytes) -> EmailMessage:
    parsed = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_a_name_in_any_script_and_the_body_come_back_as_written() -> None:
    zoe = Customer("u-1", "zoe@example.com", "Zoë Ünal 東京")
    mail = order_cancelled(
        zoe,
        order_id="ord-1",
        reason="PAYMENT_DECLINED",
        detail="Kartenzahlung abgelehnt: " + "ß" * 200,
        event_id="evt-1",
        at_ms=AT_MS,
    )
    raw = mail.render()

    raw.decode("ascii")  # 7-bit clean on the wire: headers encoded, body quoted-printable
    assert max(len(line) for line in raw.split(b"\n")) <= 78
    parsed = _parse(raw)
    assert parsed["To"].addresses[0].display_name == "Zoë Ünal 東京"
    assert parsed["To"].addresses[0].addr_spec == "zoe@example.com"
    assert parsed["Message-ID"] == "<evt-1@eventmart.local>"
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content() == mail.body
    assert "Hello Zoë Ünal 東京," in parsed.get_content()


def test_rendering_twice_gives_the_same_bytes() -> None:
    ada = Customer("u-2", "ada@example.com", "Ada Lovelace")
    mail = order_confirmed(ada, order_id="ord-2", total_cents=12345, event_id="e", at_ms=AT_MS)
    assert mail.render() == mail.render()
    assert _parse(mail.render())["Date"] == "Tue, 14 Nov 2023 22:13:20 +0000"


def test_a_name_that_would_add_a_header_is_refused() -> None:
    sneaky = Customer("u-3", "eve@example.com", "Eve\nBcc: everyone@example.com")
    mail = order_confirmed(sneaky, order_id="ord-3", total_cents=1, event_id="e", at_ms=AT_MS)
    with pytest.raises(HeaderParseError, match="embedded header"):
        mail.render()
