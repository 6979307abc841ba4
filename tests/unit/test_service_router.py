"""ServiceRouter: a plain endpoint runs off the event loop, with one thread-pool hand-off
per request instead of FastAPI's two, and otherwise behaves as FastAPI's own router."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import anyio.to_thread
import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query
from fastapi.testclient import TestClient
from pydantic import BaseModel

from eventmart.platform.runtime import ServiceRouter


class Item(BaseModel):
    item_id: str
    quantity: int
    caller: str
    thread: int


class QuantityIn(BaseModel):
    quantity: int


async def caller() -> str:
    return "ada"


def app_with(router: APIRouter) -> FastAPI:
    @router.put("/items/{item_id}")
    def put_item(
        item_id: str,
        body: QuantityIn,
        who: Annotated[str, Depends(caller)],
        scale: Annotated[int, Query(ge=1)] = 1,
    ) -> Item:
        if item_id == "missing":
            raise HTTPException(404, "no such item")
        return Item(
            item_id=item_id,
            quantity=body.quantity * scale,
            caller=who,
            thread=threading.get_ident(),
        )

    @router.get("/loop")
    async def loop_thread() -> int:
        return threading.get_ident()

    app = FastAPI()
    app.include_router(router)
    return app


@pytest.fixture
def hand_offs(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every call into the thread pool (Starlette and FastAPI both go through anyio)."""
    calls: list[object] = []
    real: Callable[..., Awaitable[Any]] = anyio.to_thread.run_sync

    async def counting(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        calls.append(func)
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    return calls


@pytest.mark.parametrize(("router", "expected"), [(ServiceRouter(), 1), (APIRouter(), 2)])
def test_one_hand_off_per_request(
    hand_offs: list[object], router: APIRouter, expected: int
) -> None:
    # FastAPI's own router is the baseline: endpoint, then response validation.
    with TestClient(app_with(router)) as client:
        hand_offs.clear()
        r = client.put("/items/sku-1", json={"quantity": 2})
    assert r.status_code == 200
    assert len(hand_offs) == expected


def test_the_endpoint_runs_off_the_loop_and_answers_as_before() -> None:
    with TestClient(app_with(ServiceRouter())) as client:
        loop = client.get("/loop").json()
        r = client.put("/items/sku-1?scale=3", json={"quantity": 2})
        assert r.status_code == 200
        body = r.json()
        assert body["thread"] != loop  # blocking work never stalls the event loop
        assert {k: body[k] for k in ("item_id", "quantity", "caller")} == {
            "item_id": "sku-1",
            "quantity": 6,
            "caller": "ada",
        }
        # Validation, the endpoint's own errors and the schema are FastAPI's as ever.
        bad = client.put("/items/sku-1?scale=0", json={"quantity": "many"})
        assert bad.status_code == 422
        assert {tuple(e["loc"]) for e in bad.json()["detail"]} == {
            ("query", "scale"),
            ("body", "quantity"),
        }
        missing = client.put("/items/missing", json={"quantity": 1})
        assert (missing.status_code, missing.json()) == (404, {"detail": "no such item"})
        schema = client.get("/openapi.json").json()
        put = schema["paths"]["/items/{item_id}"]["put"]
        assert put["responses"]["200"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Item"
        }
        assert [p["name"] for p in put["parameters"]] == ["item_id", "scale"]
