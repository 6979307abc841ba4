"""The gateways' JSON API over faked services: what process-level testing found at the edge.

Odd path parameters (422 naming them, never a downstream URL built from them), downstream
answers that cannot be passed on (502, not 500), a 500 that keeps the connection usable,
read-your-writes right after checkout, login under overload, and the OpenAPI schema
describing every answer.
"""

from __future__ import annotations

import asyncio
import http.client
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from eventmart.edge import api as edge_api
from eventmart.edge.schema import ID_PATTERN, segment
from eventmart.platform.messages import new_id, uuid7
from tests.edge.support import (
    ADMIN,
    CHECKOUT,
    CUSTOMER,
    ORDER,
    P1,
    Shop,
    json_response,
    order_view,
    running_gateway,
    serving,
    tagged,
    text_of,
)

# Path parameters a browser or phone can send (percent-encoded) that are not plain ids: a
# control character, "?" or "#" (they end the path when put back into a URL), "/" and
# "..", a leading "-", one character too many.
ODD_IDS = ["%0A", "%1D", "abc%3Fq%3D1", "abc%23x", "%3F", "%2E%2E", "%2E", "-x", "a%20b", "x" * 65]
ID_ROUTES = [
    ("GET", "/api/products/{}", "product_id"),
    ("GET", "/api/orders/{}", "order_id"),
    ("GET", "/api/orders/{}/stream", "order_id"),
    ("POST", "/api/orders/{}/cancel", "order_id"),
    ("PUT", "/api/basket/items/{}", "product_id"),
    ("DELETE", "/api/basket/items/{}", "product_id"),
    ("PUT", "/api/admin/products/{}/price", "product_id"),
    ("POST", "/api/admin/inventory/{}/receive", "product_id"),
    ("POST", "/api/ops/dlq/{}/redrive", "letter_id"),
    ("GET", "/api/ops/traces/{}", "trace_id"),
    ("GET", "/api/ops/orders/{}/traces", "order_id"),
    ("GET", "/api/ops/streams/{}", "stream_id"),
]
BODIES = {
    "/api/basket/items/{}": {"quantity": 1},
    "/api/admin/products/{}/price": {"price_cents": 100},
    "/api/admin/inventory/{}/receive": {"quantity": 1},
}


def fresh_order_id() -> str:
    """An order id as basket mints it at checkout, now."""
    return new_id()


# -- 1. path parameters ------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["web", "mobile"])
def test_odd_path_parameters_are_refused_naming_the_parameter(tmp_path: Path, kind: str) -> None:
    with running_gateway(tmp_path, kind) as gw:  # type: ignore[arg-type]
        headers = gw.headers_for(ADMIN)
        for method, route, param in ID_ROUTES:
            for odd in ODD_IDS:
                r = gw.client.request(
                    method, route.format(odd), json=BODIES.get(route), headers=headers
                )
                assert r.status_code == 422, (method, route, odd, r.status_code, r.text)
                locs = [e["loc"] for e in r.json()["detail"]]
                assert locs == [["path", param]], (method, route, odd, locs)
        # Nothing odd ever reached a service.
        assert [r.url.path for _, r in gw.fakes.seen] == []


def test_the_id_pattern_accepts_the_ids_in_use() -> None:
    for ident in (
        str(uuid7()),
        str(uuid.uuid5(uuid.NAMESPACE_URL, "sku")),
        "KIT-001",
        "readside.orders.g3-11-1234",
        "order-" + str(uuid7()),
        "ab" * 16,
        "x" * 64,
    ):
        assert ID_PATTERN.match(ident), ident
    for odd in ("", ".", "..", "-x", "a/b", "a?b", "a#b", "a b", "a\nb", "x" * 65, "é"):
        assert not ID_PATTERN.match(odd), odd


def test_ids_are_percent_encoded_into_downstream_paths() -> None:
    assert segment("a/b?c=1#d e%\n") == "a%2Fb%3Fc%3D1%23d%20e%25%0A"
    assert segment("KIT-001.v2_x") == "KIT-001.v2_x"


# -- 1. what a downstream answers --------------------------------------------------------
def test_a_downstream_redirect_is_a_502_not_a_500(shop: Shop) -> None:
    shop.fakes.on(
        "catalog",
        "GET",
        f"/products/{P1}",
        lambda _r: httpx.Response(302, headers={"location": "http://elsewhere/x"}),
    )
    shop.fakes.on("inventory", "GET", f"/stock/{P1}", {"product_id": P1, "available": 1})

    r = shop.client.get(f"/api/products/{P1}")

    assert r.status_code == 502, r.text
    assert "redirect (302 http://elsewhere/x)" in r.json()["detail"]


def test_a_downstream_body_that_is_not_json_is_a_502(shop: Shop) -> None:
    shop.fakes.on(
        "catalog",
        "GET",
        "/categories",
        lambda _r: httpx.Response(
            200, text="<html>oops</html>", headers={"content-type": "text/html"}
        ),
    )

    r = shop.client.get("/api/categories")

    assert r.status_code == 502
    assert "not JSON (text/html)" in r.json()["detail"]


def test_a_downstream_refusal_with_an_odd_body_keeps_its_status(shop: Shop) -> None:
    shop.login_as(CUSTOMER)
    shop.fakes.on(
        "basket", "GET", "/basket", lambda _r: json_response(409, ["not", "an", "object"])
    )

    r = shop.client.get("/api/basket")

    assert r.status_code == 409
    assert r.json()["detail"] == '["not","an","object"]'


def test_an_answer_that_does_not_fit_the_documented_shape_is_a_502(shop: Shop) -> None:
    shop.login_as(CUSTOMER)
    shop.fakes.on("basket", "GET", "/basket", {"customer_id": CUSTOMER.user_id, "lines": "?"})

    r = shop.client.get("/api/basket")

    assert r.status_code == 502
    assert r.json() == {"detail": "a downstream service answered in an unexpected shape"}


@pytest.fixture
def served(shop: Shop) -> Iterator[tuple[Shop, int]]:
    """The web gateway served by uvicorn on a free port (its services faked)."""
    with serving(shop) as url:
        yield shop, int(url.rsplit(":", 1)[1])


def test_a_500_leaves_the_kept_alive_connection_usable(
    served: tuple[Shop, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    gw, port = served
    catalog = gw.client.app.state.gateway.downstream["catalog"]  # type: ignore[attr-defined]

    async def bug(*_a: Any, **_kw: Any) -> Any:
        raise RuntimeError("a bug somewhere below the route")

    monkeypatch.setattr(catalog, "request", bug)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/api/categories")
        first = conn.getresponse()
        body = orjson.loads(first.read())
        assert first.status == 500
        assert body == {"detail": "internal error in the gateway; it is logged"}
        assert first.getheader("x-correlation-id")
        sock = conn.sock

        monkeypatch.undo()
        gw.fakes.on("catalog", "GET", "/categories", [{"category": "books", "products": 1}])
        conn.request("GET", "/api/categories")  # on the same connection
        second = conn.getresponse()
        assert second.status == 200
        assert orjson.loads(second.read()) == [{"category": "books", "products": 1}]
        assert conn.sock is sock, "the gateway closed the connection after the 500"
    finally:
        conn.close()


# -- 2. read-your-writes after checkout ------------------------------------------------
def write_side(order_id: str, customer: str = CUSTOMER.user_id, **extra: Any) -> dict[str, Any]:
    """ordering's `GET /orders/{id}`."""
    return {
        "id": order_id,
        "customer_id": customer,
        "status": "STOCK_RESERVED",
        "cancellation_reason": None,
        "total_cents": 2598,
        "items": [
            {
                "product_id": P1,
                "sku": "KIT-001",
                "name": "Cast-iron Skillet",
                "quantity": 2,
                "unit_price_cents": 1299,
            }
        ],
        "version": 2,
        **extra,
    }


def not_found(_r: httpx.Request) -> httpx.Response:
    return json_response(404, {"detail": "order not found"})


def test_an_order_the_read_side_has_not_seen_yet_comes_from_ordering(shop: Shop) -> None:
    order_id = fresh_order_id()
    shop.fakes.on("readside", "GET", f"/orders/{order_id}", not_found)
    shop.fakes.on("ordering", "GET", f"/orders/{order_id}", write_side(order_id))
    headers = shop.headers_for(CUSTOMER)

    r = shop.client.get(f"/api/orders/{order_id}", headers=headers)

    assert r.status_code == 200, r.text
    view = r.json()
    assert view["pending_projection"] is True
    assert (view["id"], view["status"], view["total_cents"]) == (order_id, "STOCK_RESERVED", 2598)
    assert view["timeline"] == [] and view["cancellation_reason"] is None
    assert [i["product_id"] for i in view["items"]] == [P1]
    # Ordering decides ownership: it got the caller's credentials.
    (asked,) = shop.fakes.requests("ordering", f"/orders/{order_id}")
    assert asked.headers["authorization"] == headers["Authorization"]


def test_once_projected_the_order_comes_from_the_read_side(shop: Shop) -> None:
    shop.fakes.on("readside", "GET", f"/orders/{ORDER}", order_view("CONFIRMED"))

    r = shop.client.get(f"/api/orders/{ORDER}", headers=shop.headers_for(CUSTOMER))

    assert r.status_code == 200
    assert r.json()["pending_projection"] is False
    assert r.json()["status"] == "CONFIRMED"
    assert not shop.fakes.requests("ordering")


def test_reading_an_order_straight_after_checkout_waits_for_it(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(edge_api, "ORDER_POLL_S", 0.05)
    order_id = fresh_order_id()
    asked: list[int] = []

    def ordering(_r: httpx.Request) -> httpx.Response:
        asked.append(1)
        if len(asked) < 3:  # the BasketCheckedOut reaches ordering at the third look
            return json_response(404, {"detail": "order not found"})
        return json_response(200, write_side(order_id))

    shop.fakes.on("readside", "GET", f"/orders/{order_id}", not_found)
    shop.fakes.on("ordering", "GET", f"/orders/{order_id}", ordering)

    r = shop.client.get(f"/api/orders/{order_id}", headers=shop.headers_for(CUSTOMER))

    assert r.status_code == 200, r.text
    assert (r.json()["id"], r.json()["pending_projection"]) == (order_id, True)
    assert len(asked) == 3


def test_another_customers_pending_order_is_not_found(shop: Shop) -> None:
    order_id = fresh_order_id()
    shop.fakes.on("readside", "GET", f"/orders/{order_id}", not_found)
    # (ordering refuses it itself; the gateway checks again)
    shop.fakes.on("ordering", "GET", f"/orders/{order_id}", write_side(order_id, "someone"))

    r = shop.client.get(f"/api/orders/{order_id}", headers=shop.headers_for(CUSTOMER))

    assert r.status_code == 404
    # The gateway saw it exists and is someone else's: nothing to wait for.
    assert len(shop.fakes.requests("ordering")) == 1


def test_another_customers_order_placed_moments_ago_is_not_found_at_once(shop: Shop) -> None:
    order_id = fresh_order_id()
    theirs = {**order_view("CONFIRMED", id=order_id), "customer_id": "someone"}
    shop.fakes.on("readside", "GET", f"/orders/{order_id}", theirs)

    r = shop.client.get(f"/api/orders/{order_id}", headers=shop.headers_for(CUSTOMER))

    assert r.status_code == 404
    assert len(shop.fakes.requests("readside")) == 1


def test_the_mobile_shape_of_a_pending_order(mobile: Shop) -> None:
    order_id = fresh_order_id()
    mobile.fakes.on("readside", "GET", f"/orders/{order_id}", not_found)
    mobile.fakes.on("ordering", "GET", f"/orders/{order_id}", write_side(order_id))

    r = mobile.client.get(f"/api/orders/{order_id}", headers=mobile.headers_for(CUSTOMER))

    assert r.status_code == 200, r.text
    assert r.json() == {
        "id": order_id,
        "status": "STOCK_RESERVED",
        "total_cents": 2598,
        "items": 2,
        "cancellation_reason": None,
        "updated": None,
        "pending_projection": True,
    }


def sse_orders(body: str) -> list[dict[str, Any]]:
    return [orjson.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]


def test_the_stream_waits_for_an_order_placed_moments_ago(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(edge_api, "ORDER_POLL_S", 0.05)
    order_id = fresh_order_id()
    asked: list[int] = []

    def readside(_r: httpx.Request) -> httpx.Response:
        asked.append(1)
        if len(asked) < 4:  # the read side learns of it at the fourth look
            return json_response(404, {"detail": "order not found"})
        return json_response(200, order_view("DELIVERED", id=order_id))

    shop.fakes.on("readside", "GET", f"/orders/{order_id}", readside)
    shop.fakes.on("ordering", "GET", f"/orders/{order_id}", not_found)  # not even there yet

    with shop.client.stream(
        "GET", f"/api/orders/{order_id}/stream", headers=shop.headers_for(CUSTOMER)
    ) as stream:
        assert stream.status_code == 200
        body = "".join(stream.iter_text())

    (event,) = sse_orders(body)
    assert (event["id"], event["status"]) == (order_id, "DELIVERED")
    assert len(asked) == 4


# The JSON route and the stream wait alike for an order on its way (for 3 s and 10 s).
@pytest.mark.parametrize("suffix", ["", "/stream"])
def test_an_order_that_does_not_come_is_not_found_after_the_wait(
    shop: Shop, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    monkeypatch.setattr(edge_api, "ORDER_WAIT_S", 0.6)
    monkeypatch.setattr(edge_api, "ORDER_GET_WAIT_S", 0.6)
    monkeypatch.setattr(edge_api, "ORDER_POLL_S", 0.05)
    order_id = fresh_order_id()
    shop.fakes.on("readside", "GET", f"/orders/{order_id}", not_found)
    shop.fakes.on("ordering", "GET", f"/orders/{order_id}", not_found)

    started = time.monotonic()
    r = shop.client.get(f"/api/orders/{order_id}{suffix}", headers=shop.headers_for(CUSTOMER))

    assert r.status_code == 404
    assert r.json() == {"detail": f"order {order_id} not found"}
    assert 0.6 <= time.monotonic() - started < 5
    assert len(shop.fakes.requests("readside")) > 3


@pytest.mark.parametrize("suffix", ["", "/stream"])
def test_no_wait_for_an_order_that_cannot_be_on_its_way(shop: Shop, suffix: str) -> None:
    # ORDER was minted long ago: if neither side has it, it is not coming.
    shop.fakes.on("readside", "GET", f"/orders/{ORDER}", not_found)
    shop.fakes.on("ordering", "GET", f"/orders/{ORDER}", not_found)

    r = shop.client.get(f"/api/orders/{ORDER}{suffix}", headers=shop.headers_for(CUSTOMER))

    assert r.status_code == 404
    assert len(shop.fakes.requests("readside")) == 1


def test_which_ids_may_be_in_flight() -> None:
    now = time.time()
    assert edge_api.may_be_in_flight(new_id())
    assert not edge_api.may_be_in_flight(ORDER)  # a UUIDv7 of 2025
    assert not edge_api.may_be_in_flight(str(uuid.uuid4()))
    assert not edge_api.may_be_in_flight("KIT-001")
    old = uuid7()
    assert edge_api.may_be_in_flight(str(old), now + edge_api.IN_FLIGHT_S - 1)
    assert not edge_api.may_be_in_flight(str(old), now + edge_api.IN_FLIGHT_S + 1)
    assert not edge_api.may_be_in_flight(str(old), now - 60)  # from the future


def test_the_order_page_of_an_order_on_its_way_shows_it_being_placed(shop: Shop) -> None:
    shop.login_as(CUSTOMER)
    order_id = fresh_order_id()
    shop.fakes.on("readside", "GET", f"/orders/{order_id}", not_found)
    shop.fakes.on("ordering", "GET", f"/orders/{order_id}", not_found)

    page = shop.get(f"/orders/{order_id}")

    assert page.status_code == 200
    html = page.text
    assert text_of(html, "order-id") == [order_id]
    (note,) = tagged(html, "order-placing")
    assert "hidden" not in note
    assert text_of(html, "order-placing")[0].startswith("Placing your order")
    assert 'data-status=""' in tagged(html, "order-status")[0]
    assert 'data-placing="yes"' in html
    assert f'data-stream="/api/orders/{order_id}/stream"' in html
    assert 'data-state="connecting"' in tagged(html, "live-indicator")[0]
    assert "hidden" in tagged(html, "page-error")[0]
    assert "hidden" in tagged(html, "cancel-order")[0]
    assert not tagged(html, "order-item")


def test_the_order_page_of_a_pending_order_shows_the_write_sides_state(shop: Shop) -> None:
    shop.login_as(CUSTOMER)
    order_id = fresh_order_id()
    shop.fakes.on("readside", "GET", f"/orders/{order_id}", not_found)
    shop.fakes.on("ordering", "GET", f"/orders/{order_id}", write_side(order_id))

    html = shop.get(f"/orders/{order_id}").text

    assert 'data-status="STOCK_RESERVED"' in tagged(html, "order-status")[0]
    assert "hidden" in tagged(html, "order-placing")[0]
    assert len(tagged(html, "order-item")) == 1
    assert text_of(html, "order-total") == ["$25.98"]


def test_the_order_page_of_an_unknown_old_id_is_a_404_page(shop: Shop) -> None:
    shop.login_as(CUSTOMER)
    shop.fakes.on("readside", "GET", f"/orders/{ORDER}", not_found)
    shop.fakes.on("ordering", "GET", f"/orders/{ORDER}", not_found)

    page = shop.get(f"/orders/{ORDER}")

    assert page.status_code == 404
    assert text_of(page.text, "page-error") == [f"order {ORDER} not found"]


# -- 3. login under overload -------------------------------------------------------------
def test_login_is_not_retried_when_identity_is_slow(tmp_path: Path) -> None:
    with running_gateway(tmp_path, "web", retries=2, downstream_timeout_s=0.5) as gw:

        async def slow(_request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(1.0)  # past the gateway's 0.5 s downstream timeout
            return json_response(200, {})

        gw.fakes.on("identity", "POST", "/token", slow)
        gw.fakes.on("catalog", "GET", "/categories", slow)

        r = gw.client.post("/api/auth/token", json={"email": "a@example.com", "password": "pw"})

        assert r.status_code == 503
        assert r.headers["retry-after"]
        assert len(gw.fakes.requests("identity", "/token")) == 1  # one argon2 run, not three
        # (reads are still retried)
        gw.client.get("/api/categories")
        assert len(gw.fakes.requests("catalog", "/categories")) == 3


def test_identitys_busy_answer_passes_through_with_its_retry_after(shop: Shop) -> None:
    busy = {"detail": "identity is busy checking passwords; retry shortly"}
    shop.fakes.on(
        "identity",
        "POST",
        "/token",
        lambda _r: httpx.Response(503, content=orjson.dumps(busy), headers={"retry-after": "7"}),
    )

    r = shop.client.post("/api/auth/token", json={"email": "a@example.com", "password": "pw"})

    assert r.status_code == 503
    assert r.headers["retry-after"] == "7"
    assert r.json()["detail"] == busy["detail"]
    assert len(shop.fakes.requests("identity", "/token")) == 1


def test_the_login_page_shows_identity_busy(shop: Shop) -> None:
    busy = {"detail": "identity is busy checking passwords; retry shortly"}
    shop.fakes.on(
        "identity",
        "POST",
        "/token",
        lambda _r: httpx.Response(503, content=orjson.dumps(busy), headers={"retry-after": "2"}),
    )

    page = shop.client.post("/login", data={"email": "a@example.com", "password": "pw"})

    assert page.status_code == 503
    assert text_of(page.text, "login-error") == [busy["detail"]]


# -- 4. the OpenAPI schema -----------------------------------------------------------------
def operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schema["paths"].items():
        for method, op in item.items():
            yield path, method, op


@pytest.mark.parametrize("kind", ["web", "mobile"])
def test_the_schema_documents_every_error_answer(tmp_path: Path, kind: str) -> None:
    with running_gateway(tmp_path, kind) as gw:  # type: ignore[arg-type]
        schema = gw.client.get("/openapi.json").json()
    error = {"$ref": "#/components/schemas/ErrorOut"}
    for path, method, op in operations(schema):
        codes = op["responses"]
        where = f"{method.upper()} {path}"
        for code in ("413", "429", "502", "503"):
            assert codes[code]["content"]["application/json"]["schema"] == error, where
        assert "Retry-After" in codes["503"]["headers"], where
        params = op.get("parameters", [])
        for p in params:
            if p["in"] == "path":
                assert p["schema"]["pattern"] == ID_PATTERN.pattern, where
                assert "404" in codes or path.endswith("/traces"), where
        if params or "requestBody" in op:
            assert codes["422"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ValidationErrorOut"
            }, where
        if "/admin/" in path or path.startswith("/api/ops"):
            assert {"401", "403"} <= set(codes), where
        elif any(p in path for p in ("/basket", "/orders")):
            assert "401" in codes, where
    checkout = schema["paths"]["/api/basket/checkout"]["post"]
    (key,) = [p for p in checkout["parameters"] if p["name"] == "Idempotency-Key"]
    assert key["in"] == "header" and key["required"] is True
    assert {"400", "409"} <= set(checkout["responses"])
    register = schema["components"]["schemas"]["RegisterIn"]["properties"]["email"]
    assert register["format"] == "email"
    stream = schema["paths"]["/api/orders/{order_id}/stream"]["get"]["responses"]["200"]
    assert list(stream["content"]) == ["text/event-stream"]


@pytest.mark.parametrize(
    ("kind", "models"),
    [
        ("web", ["WebProductPage", "WebProduct", "WebBasket", "WebOrder", "WebOrderPage"]),
        (
            "mobile",
            [
                "MobileProductPage",
                "MobileProduct",
                "MobileBasket",
                "MobileOrder",
                "MobileOrderPage",
            ],
        ),
    ],
)
def test_the_schema_describes_each_bffs_own_shapes(
    tmp_path: Path, kind: str, models: list[str]
) -> None:
    with running_gateway(tmp_path, kind) as gw:  # type: ignore[arg-type]
        schema = gw.client.get("/openapi.json").json()
    paths = schema["paths"]
    answers = [
        paths["/api/products"]["get"],
        paths["/api/products/{product_id}"]["get"],
        paths["/api/basket"]["get"],
        paths["/api/orders/{order_id}"]["get"],
        paths["/api/orders"]["get"],
    ]
    refs = [a["responses"]["200"]["content"]["application/json"]["schema"]["$ref"] for a in answers]
    assert refs == [f"#/components/schemas/{m}" for m in models]
    stream = paths["/api/orders/{order_id}/stream"]["get"]["responses"]["200"]["content"]
    event = stream["text/event-stream"]["schema"]
    assert event["properties"]["event"]["enum"] == ["order"]
    assert event["properties"]["data"]["contentSchema"] == {"$ref": refs[3]}
    for path in ("/api/basket/items/{product_id}",):
        assert paths[path]["put"]["responses"]["200"]["content"]["application/json"]["schema"] == {
            "$ref": f"#/components/schemas/{models[2]}"
        }


def test_checkout_without_an_idempotency_key_is_a_422_naming_it(shop: Shop) -> None:
    headers = shop.headers_for(CUSTOMER)
    # Missing, blank, and not visible ASCII (it is forwarded in a header of our own).
    keys: tuple[str | bytes | None, ...] = (None, "   ", "caf\xe9-1".encode("latin-1"))
    for key in keys:
        sent: dict[str, Any] = headers if key is None else {**headers, "Idempotency-Key": key}
        r = shop.client.post("/api/basket/checkout", json=CHECKOUT, headers=sent)
        assert r.status_code == 422, r.text
        assert [e["loc"] for e in r.json()["detail"]] == [["header", "Idempotency-Key"]]
    assert not shop.fakes.requests("basket")


def test_a_callers_correlation_id_is_adopted_only_when_it_looks_like_one(shop: Shop) -> None:
    shop.fakes.on("catalog", "GET", "/categories", [{"category": "books", "products": 1}])
    for sent, adopted in (
        (b"order-42.retry:1", True),
        ("\xe9t\xe9".encode("latin-1"), False),
        (b"x" * 200, False),
        (b"a b", False),
    ):
        r = shop.client.get("/api/categories", headers={"X-Correlation-ID": sent})
        assert r.status_code == 200, r.text
        answered = r.headers["x-correlation-id"]
        forwarded = shop.fakes.requests("catalog", "/categories")[-1].headers["x-correlation-id"]
        assert forwarded == answered
        assert (answered == sent.decode("latin-1")) is adopted, (sent, answered)
        assert answered.isascii() and " " not in answered


def test_registration_checks_the_email_at_the_edge(shop: Shop) -> None:
    r = shop.client.post(
        "/api/auth/register",
        json={"email": "not-an-address", "password": "correct horse", "name": "Ada"},
    )

    assert r.status_code == 422
    assert [e["loc"] for e in r.json()["detail"]] == [["body", "email"]]
    assert not shop.fakes.requests("identity")


def test_answers_match_their_models_for_both_shapes(shop: Shop, mobile: Shop) -> None:
    """Real-looking answers of every shaped route validate (no 502 from the models)."""
    page = {
        "items": [
            {
                "product_id": P1,
                "sku": "KIT-001",
                "name": "Skillet",
                "description": "Heavy.",
                "category": "kitchen",
                "price_cents": 1299,
                "currency": "USD",
                "image": "",
                "available": 4,
                "in_stock": True,
            }
        ],
        "page": 1,
        "page_size": 24,
        "total": 1,
    }
    basket = {
        "customer_id": CUSTOMER.user_id,
        "items": [
            {
                "product_id": P1,
                "sku": "KIT-001",
                "name": "Skillet",
                "quantity": 2,
                "unit_price_cents": 1299,
                "line_total_cents": 2598,
            }
        ],
        "total_cents": 2598,
        "item_count": 2,
    }
    orders = {"items": [order_view()], "page": 1, "page_size": 20, "total": 1}
    for gw in (shop, mobile):
        gw.fakes.on("readside", "GET", "/products", page)
        gw.fakes.on("catalog", "GET", f"/products/{P1}", page["items"][0])  # type: ignore[index]
        gw.fakes.on("inventory", "GET", f"/stock/{P1}", {"product_id": P1, "available": 4})
        gw.fakes.on("basket", "GET", "/basket", basket)
        gw.fakes.on("basket", "PUT", f"/basket/items/{P1}", basket)
        gw.fakes.on("readside", "GET", "/orders", orders)
        gw.fakes.on("readside", "GET", f"/orders/{ORDER}", order_view())
        h = gw.headers_for(CUSTOMER)
        for r in (
            gw.client.get("/api/products"),
            gw.client.get(f"/api/products/{P1}"),
            gw.client.get("/api/basket", headers=h),
            gw.client.put(f"/api/basket/items/{P1}", json={"quantity": 2}, headers=h),
            gw.client.get("/api/orders", headers=h),
            gw.client.get(f"/api/orders/{ORDER}", headers=h),
        ):
            assert r.status_code == 200, (r.request.url, r.text)
    assert mobile.client.get(f"/api/products/{P1}").json() == {
        "id": P1,
        "name": "Skillet",
        "price_cents": 1299,
        "image": "",
        "in_stock": True,
        "description": "Heavy.",
        "available": 4,
        "notices": [],
    }
    # The web shape passes fields the models do not name through.
    shop.fakes.on("basket", "GET", "/basket", {**basket, "coupon": "NONE"})
    assert shop.client.get("/api/basket", headers=shop.headers_for(CUSTOMER)).json()["coupon"] == (
        "NONE"
    )
