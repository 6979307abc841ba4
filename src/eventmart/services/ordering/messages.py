"""ordering's private messages (not part of the published language)."""

from __future__ import annotations

from eventmart.platform.messages import Command


class PaymentDeadlineReached(Command, frozen=True, kw_only=True):
    """The payment deadline of a checkout saga fell due (a durable timer)."""

    namespace = "eventmart.ordering.internal"
    topic = "ordering.internal"
    key_field = "order_id"

    order_id: str
