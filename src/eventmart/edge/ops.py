"""The ops API (administrators): health, lag, dead letters, traces, event streams."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool

from eventmart.edge.gateway import Gateway, passthrough
from eventmart.edge.schema import COMMON_ERRORS, ResourceId, errors, segment
from eventmart.platform.auth import AdminUser
from eventmart.platform.dlq import DeadLetterNotFoundError, DeadLetters
from eventmart.platform.http import DownstreamUnavailableError

T = TypeVar("T")
GroupName = Annotated[str | None, Query(max_length=200, description="one consumer group")]


async def _blocking(fn: Callable[..., T], *args: Any) -> T:
    return await run_in_threadpool(fn, *args)


def ops_router(gw: Gateway) -> APIRouter:
    api = APIRouter(
        prefix="/api/ops", tags=["ops"], responses={**COMMON_ERRORS, **errors(401, 403)}
    )
    platform = gw.platform

    @api.get("/services")
    async def services(_admin: AdminUser) -> list[dict[str, Any]]:
        async def probe(name: str) -> dict[str, Any]:
            d = gw.service(name)
            try:
                r = await d.request("GET", "/readyz")
                state = "ready" if r.status_code == 200 else "starting"
            except DownstreamUnavailableError as e:
                state = f"down: {e.reason}"
            return {
                "service": name,
                "state": state,
                "breaker": d.state,
                "url": d.base_url,
            }

        return list(await asyncio.gather(*(probe(n) for n in gw.downstream)))

    @api.get("/lag", responses=errors(422))
    async def lag(_admin: AdminUser, group: GroupName = None) -> dict[str, Any]:
        rows = await _blocking(platform.bus.lag, group)
        groups: dict[str, dict[str, Any]] = {}
        for r in rows:
            g = groups.setdefault(r.group, {"group": r.group, "lag": 0, "partitions": []})
            g["lag"] += r.lag
            g["partitions"].append(
                {
                    "topic": r.topic,
                    "partition": r.partition,
                    "committed": r.committed,
                    "end": r.end_offset,
                    "lag": r.lag,
                    "owner": r.owner,
                }
            )
        return {"groups": list(groups.values()), "total_lag": sum(r.lag for r in rows)}

    @api.get("/dlq", responses=errors(422))
    async def dlq(_admin: AdminUser, group: GroupName = None) -> list[dict[str, Any]]:
        letters = await _blocking(DeadLetters(platform.bus).list, group)
        return [d.as_dict() for d in letters]

    @api.post("/dlq/{letter_id}/redrive", responses=errors(404, 422))
    async def redrive(letter_id: ResourceId, _admin: AdminUser) -> dict[str, Any]:
        try:
            letter = await _blocking(DeadLetters(platform.bus).redrive, letter_id)
        except DeadLetterNotFoundError as e:
            raise HTTPException(404, str(e)) from e
        return {"redriven": letter.id, "group": letter.group}

    @api.get("/traces/{trace_id}", responses=errors(404, 422))
    async def trace(trace_id: ResourceId, _admin: AdminUser) -> dict[str, Any]:
        spans = await _blocking(platform.spans.trace, trace_id)
        if not spans:
            raise HTTPException(404, f"no spans recorded for trace {trace_id}")
        return {
            "trace_id": trace_id,
            "spans": spans,
            "services": sorted({s["service"] for s in spans}),
        }

    @api.get("/orders/{order_id}/traces", responses=errors(422))
    async def order_traces(order_id: ResourceId, _admin: AdminUser) -> dict[str, Any]:
        ids = await _blocking(platform.spans.traces_for_key, order_id)
        return {"order_id": order_id, "trace_ids": ids}

    @api.get("/streams/{stream_id}", responses=errors(404, 422))
    async def stream(stream_id: ResourceId, request: Request, _admin: AdminUser) -> Any:
        """An aggregate's event history: `order-<id>` (with saga steps) or `stock-<id>`."""
        auth = {"Authorization": request.headers.get("Authorization", "")}
        if request.cookies.get("eventmart_token") and not auth["Authorization"]:
            auth = {"Authorization": f"Bearer {request.cookies['eventmart_token']}"}
        kind, _, ident = stream_id.partition("-")
        if kind == "order" and ident:
            return passthrough(
                await gw.service("ordering").request(
                    "GET", f"/orders/{segment(ident)}/history", headers=auth
                )
            )
        if kind == "stock" and ident:
            return passthrough(
                await gw.service("inventory").request(
                    "GET", f"/stock/{segment(ident)}/history", headers=auth
                )
            )
        raise HTTPException(
            404,
            f"stream_id: unknown stream {stream_id!r} (use order-<order id> or stock-<product id>)",
        )

    return api
