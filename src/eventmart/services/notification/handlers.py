"""notification's handlers: remember customers, mail them about their orders."""

from __future__ import annotations

import logging
from collections.abc import Callable

from eventmart.contracts.identity import UserRegistered
from eventmart.contracts.ordering import OrderCancelled, OrderConfirmed, OrderEvent, OrderShipped
from eventmart.platform.errors import EventmartError
from eventmart.platform.messages import Envelope, now_ms
from eventmart.platform.messaging import Handlers, UnitOfWork
from eventmart.services.notification import domain
from eventmart.services.notification.adapters import CustomerTable, MailDrop, MailTable
from eventmart.services.notification.domain import Customer, Mail, MailKind

log = logging.getLogger(__name__)


class UnknownCustomerError(EventmartError):
    """An order event for a customer whose UserRegistered has not arrived yet (the two
    topics are not ordered against each other). Ordinary, so the runtime retries it."""


def customer_handlers(customers: CustomerTable) -> Handlers:
    """The handlers of the `notification-customers` group (identity.events)."""
    handlers = Handlers()

    @handlers.on(UserRegistered)
    def on_registered(msg: UserRegistered, _env: Envelope, uow: UnitOfWork) -> None:
        customers.put(uow.conn, Customer(user_id=msg.user_id, email=msg.email, name=msg.name))

    return handlers


def order_handlers(customers: CustomerTable, mails: MailTable, drop: MailDrop) -> Handlers:
    """The handlers of the `notification` group (ordering.events): one mail per event."""
    handlers = Handlers()

    def send(
        uow: UnitOfWork, msg: OrderEvent, kind: MailKind, compose: Callable[[Customer], Mail]
    ) -> None:
        if mails.sent(uow.conn, msg.order_id, kind):
            log.info("order %s: %s mail sent already", msg.order_id, kind)
            return
        customer = customers.get(uow.conn, msg.customer_id)
        if customer is None:
            raise UnknownCustomerError(
                f"customer {msg.customer_id} of order {msg.order_id} is unknown "
                f"(their UserRegistered has not arrived yet)"
            )
        mail = compose(customer)
        # The file first, then its row in this transaction: if the commit fails, the
        # redelivery finds the file and only records it; a file is never written twice.
        drop.put(mail.file_name, mail.render())
        mails.add(uow.conn, mail, now_ms())

    @handlers.on(OrderConfirmed)
    def on_confirmed(msg: OrderConfirmed, env: Envelope, uow: UnitOfWork) -> None:
        send(
            uow,
            msg,
            MailKind.ORDER_CONFIRMED,
            lambda c: domain.order_confirmed(
                c,
                order_id=msg.order_id,
                total_cents=msg.total_cents,
                event_id=env.message_id,
                at_ms=env.occurred_at_ms,
            ),
        )

    @handlers.on(OrderCancelled)
    def on_cancelled(msg: OrderCancelled, env: Envelope, uow: UnitOfWork) -> None:
        send(
            uow,
            msg,
            MailKind.ORDER_CANCELLED,
            lambda c: domain.order_cancelled(
                c,
                order_id=msg.order_id,
                reason=msg.reason,
                detail=msg.detail,
                event_id=env.message_id,
                at_ms=env.occurred_at_ms,
            ),
        )

    @handlers.on(OrderShipped)
    def on_shipped(msg: OrderShipped, env: Envelope, uow: UnitOfWork) -> None:
        send(
            uow,
            msg,
            MailKind.ORDER_SHIPPED,
            lambda c: domain.order_shipped(
                c,
                order_id=msg.order_id,
                shipment_id=msg.shipment_id,
                event_id=env.message_id,
                at_ms=env.occurred_at_ms,
            ),
        )

    return handlers
