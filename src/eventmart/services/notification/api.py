"""notification's HTTP API (internal): the mails it wrote."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from eventmart.platform.runtime import Service, ServiceRouter
from eventmart.services.notification.adapters import MailDrop, MailTable

MAX_LIST = 1000


class MailPublic(BaseModel):
    message_id: str
    order_id: str
    to: str
    subject: str
    kind: str
    file: str  # the .eml file's path on the notification service's host


def router(service: Service, mails: MailTable, drop: MailDrop) -> APIRouter:
    api = ServiceRouter()

    @api.get("/mail")
    def list_mail(
        to: Annotated[str | None, Query(max_length=320)] = None,
        order_id: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = MAX_LIST,
    ) -> list[MailPublic]:
        """Mails written, oldest first, optionally to one address or about one order."""
        assert service.store is not None
        with service.store.db.read() as conn:
            rows = mails.find(conn, to, order_id, limit)
        return [
            MailPublic(
                message_id=r["message_id"],
                order_id=r["order_id"],
                to=r["to"],
                subject=r["subject"],
                kind=r["kind"],
                file=str(drop.path(r["file"])),
            )
            for r in rows
        ]

    return api
