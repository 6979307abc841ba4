"""The storefront and ops pages, rendered by the web BFF with every downstream service
replaced at the HTTP level: a service a test does not fake is down (connection refused).

Pages read through the BFF's own JSON API; what reaches a fake is therefore exactly what
that API sends downstream.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import httpx
import orjson
import pytest

from eventmart.edge.storefront import CARD_TOKENS
from eventmart.platform.auth import Principal, issue_token
from eventmart.platform.bus import OutgoingRecord, TopicPartition
from tests.edge.support import (
    ADMIN,
    CATALOG,
    CUSTOMER,
    ORDER,
    P1,
    P2,
    P3,
    Handler,
    Shop,
    json_response,
    order_view,
    product,
    tagged,
    text_of,
)


# -- browsing ------------------------------------------------------------------------------
def test_home_shows_categories_featured_products_and_the_search_box(shop: Shop) -> None:
    shop.fakes.on(
        "readside", "GET", "/products", {"items": CATALOG, "page": 1, "page_size": 8, "total": 3}
    )

    page = shop.get("/")

    assert page.status_code == 200
    html = page.text
    assert tagged(html, "search-box")
    assert [
        re.search(r'data-category="([^"]+)"', t).group(1) for t in tagged(html, "category-link")
    ] == [  # type: ignore[union-attr]
        "kitchen",
        "books",
    ]
    assert len(tagged(html, "product-card")) == 3
    assert text_of(html, "product-name") == [
        "Cast-iron Skillet",
        "Ceramic Teapot",
        "Bamboo Cutting Board",
    ]
    assert text_of(html, "product-availability") == ["in stock", "only 3 left", "out of stock"]
    assert shop.fakes.requests("readside", "/products")[0].url.params["page_size"] == "8"
    assert page.headers["content-security-policy"].startswith("default-src 'self'")


def test_home_degrades_when_the_catalog_is_down(shop: Shop) -> None:
    shop.fakes.routes.pop("catalog")
    shop.fakes.on(
        "readside",
        "GET",
        "/products",
        {"items": CATALOG[:1], "page": 1, "page_size": 8, "total": 1},
    )

    page = shop.get("/")

    assert page.status_code == 200
    assert "categories unavailable" in text_of(page.text, "home-notice")[0]
    assert len(tagged(page.text, "product-card")) == 1


def test_listing_passes_the_search_on_and_shows_availability(shop: Shop) -> None:
    shop.fakes.on(
        "readside", "GET", "/products", {"items": CATALOG, "page": 2, "page_size": 3, "total": 9}
    )

    page = shop.get("/products", params={"q": "pot", "category": "kitchen", "page": "2"})

    assert page.status_code == 200
    sent = shop.fakes.requests("readside", "/products")[0].url.params
    assert (sent["q"], sent["category"], sent["page"]) == ("pot", "kitchen", "2")
    html = page.text
    assert 'value="pot"' in tagged(html, "search-box")[0]
    assert text_of(html, "product-availability") == ["in stock", "only 3 left", "out of stock"]
    assert text_of(html, "result-count") == ["9 products, page 2 of 3"]
    assert "page=1" in tagged(html, "page-prev")[0] and "page=3" in tagged(html, "page-next")[0]
    assert 'data-available="3"' in tagged(html, "product-availability")[1]


def test_listing_says_when_availability_is_unknown(shop: Shop) -> None:
    # The read side is down: the API lists from the catalog, without availability.
    catalog_items = [{k: v for k, v in p.items() if k != "available"} for p in CATALOG]
    shop.fakes.on(
        "catalog",
        "GET",
        "/products",
        {"items": catalog_items, "page": 1, "page_size": 24, "total": 3},
    )

    page = shop.get("/products")

    assert page.status_code == 200
    assert "availability is temporarily unknown" in text_of(page.text, "availability-notice")[0]
    assert text_of(page.text, "product-availability") == ["availability unknown"] * 3


def test_empty_listing(shop: Shop) -> None:
    shop.fakes.on(
        "readside", "GET", "/products", {"items": [], "page": 1, "page_size": 24, "total": 0}
    )

    page = shop.get("/products?q=nothing")

    assert tagged(page.text, "no-results")
    assert not tagged(page.text, "page-next")


def test_product_page_aggregates_details_and_stock(shop: Shop) -> None:
    details = {k: v for k, v in CATALOG[1].items() if k != "available"}
    shop.fakes.on("catalog", "GET", f"/products/{P2}", details)
    shop.fakes.on(
        "inventory",
        "GET",
        f"/stock/{P2}",
        {"product_id": P2, "on_hand": 5, "reserved": 2, "available": 3},
    )

    page = shop.get(f"/products/{P2}")

    assert page.status_code == 200
    html = page.text
    assert text_of(html, "product-name") == ["Ceramic Teapot"]
    assert text_of(html, "product-price") == ["$12.99"]
    assert text_of(html, "product-availability") == ["only 3 left"]
    assert not tagged(html, "product-notice")
    assert "disabled" not in tagged(html, "add-to-basket")[0]
    assert 'max="99"' in tagged(html, "add-to-basket-qty")[0]
    assert f'data-product-id="{P2}"' in tagged(html, "add-to-basket-form")[0]


def test_product_page_shows_the_aggregators_notices_when_inventory_is_down(shop: Shop) -> None:
    details = {k: v for k, v in CATALOG[0].items() if k != "available"}
    shop.fakes.on("catalog", "GET", f"/products/{P1}", details)

    page = shop.get(f"/products/{P1}")

    assert page.status_code == 200
    assert text_of(page.text, "product-availability") == ["availability unknown"]
    (notice,) = text_of(page.text, "product-notice")
    assert notice.startswith("availability is temporarily unknown (connection failed")
    assert "disabled" not in tagged(page.text, "add-to-basket")[0]  # unknown is not "none"


def test_product_page_out_of_stock_disables_add_to_basket(shop: Shop) -> None:
    details = {k: v for k, v in CATALOG[2].items() if k != "available"}
    shop.fakes.on("catalog", "GET", f"/products/{P3}", details)
    shop.fakes.on(
        "inventory", "GET", f"/stock/{P3}", lambda _r: json_response(404, {"detail": "no stock"})
    )

    page = shop.get(f"/products/{P3}")

    assert text_of(page.text, "product-availability") == ["out of stock"]
    assert "disabled" in tagged(page.text, "add-to-basket")[0]


def test_unknown_product_is_a_404_page(shop: Shop) -> None:
    shop.fakes.on(
        "catalog",
        "GET",
        "/products/.*",
        lambda _r: json_response(404, {"detail": "product nope not found"}),
    )
    shop.fakes.on(
        "inventory", "GET", "/stock/.*", lambda _r: json_response(404, {"detail": "no stock"})
    )

    page = shop.get("/products/nope")

    assert page.status_code == 404
    assert text_of(page.text, "page-error") == ["product nope not found"]
    assert shop.get("/products/%3Cscript%3E").status_code == 404
    # "$" also matches before a final newline: the page must refuse what the API refuses.
    assert shop.get("/products/nope%0A").status_code == 404


def test_a_product_name_with_markup_is_escaped_everywhere(shop: Shop) -> None:
    evil = product(P1, '<script>alert("x")</script><img src=x onerror=alert(1)>', 10)
    evil["description"] = '<b>bold</b> & "quoted"'
    shop.fakes.on(
        "readside", "GET", "/products", {"items": [evil], "page": 1, "page_size": 24, "total": 1}
    )
    shop.fakes.on(
        "catalog", "GET", f"/products/{P1}", {k: v for k, v in evil.items() if k != "available"}
    )
    shop.fakes.on(
        "inventory",
        "GET",
        f"/stock/{P1}",
        {"product_id": P1, "on_hand": 10, "reserved": 0, "available": 10},
    )

    for url in (
        "/",
        "/products",
        f"/products/{P1}",
        "/products?q=%3Cscript%3Ealert(1)%3C/script%3E",
    ):
        html = shop.get(url).text
        assert "<script>alert" not in html, url
        assert "<img src=x" not in html, url
        assert "<b>bold</b>" not in html, url
    html = shop.get(f"/products/{P1}").text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &#34;quoted&#34;" in html


# -- signing in ----------------------------------------------------------------------------
def token_for(who: Principal, shop: Shop) -> Handler:
    def respond(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        if body == {"email": who.email, "password": "correct horse"}:
            return json_response(
                200,
                {
                    "access_token": issue_token(shop.settings, who),
                    "token_type": "bearer",
                    "user_id": who.user_id,
                    "role": who.role,
                },
            )
        return json_response(401, {"detail": "wrong e-mail or password"})

    return respond


def test_login_sets_an_http_only_cookie_and_goes_back(shop: Shop) -> None:
    shop.fakes.on("identity", "POST", "/token", token_for(CUSTOMER, shop))
    form = shop.get("/login?next=/basket")
    assert form.status_code == 200
    assert tagged(form.text, "login-form") and tagged(form.text, "login-email")
    assert 'name="next" value="/basket"' in form.text

    done = shop.client.post(
        "/login",
        data={"email": CUSTOMER.email, "password": "correct horse", "next": "/basket"},
        follow_redirects=False,
    )

    assert done.status_code == 303
    assert done.headers["location"] == "/basket"
    cookie = done.headers["set-cookie"]
    assert cookie.startswith("eventmart_token=")
    flags = {part.strip().split("=")[0].lower(): part for part in cookie.split(";")}
    assert "httponly" in flags and "path" in flags and flags["path"].strip() == "Path=/"
    assert flags["samesite"].strip().lower() == "samesite=lax"
    assert 0 < int(flags["max-age"].split("=")[1]) <= 12 * 3600
    shop.fakes.on(
        "readside", "GET", "/products", {"items": [], "page": 1, "page_size": 8, "total": 0}
    )
    home = shop.get("/")
    assert text_of(home.text, "nav-user") == [CUSTOMER.email]
    assert tagged(home.text, "logout-button") and not tagged(home.text, "nav-ops")


def test_login_with_a_wrong_password_says_so(shop: Shop) -> None:
    shop.fakes.on("identity", "POST", "/token", token_for(CUSTOMER, shop))

    page = shop.client.post(
        "/login", data={"email": CUSTOMER.email, "password": "nope", "next": "/"}
    )

    assert page.status_code == 401
    assert text_of(page.text, "login-error") == ["wrong e-mail or password"]
    assert f'value="{CUSTOMER.email}"' in tagged(page.text, "login-email")[0]
    assert "set-cookie" not in page.headers


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
def test_login_never_redirects_off_site(shop: Shop, target: str) -> None:
    shop.fakes.on("identity", "POST", "/token", token_for(CUSTOMER, shop))

    done = shop.client.post(
        "/login",
        data={"email": CUSTOMER.email, "password": "correct horse", "next": target},
        follow_redirects=False,
    )

    assert done.status_code == 303 and done.headers["location"] == "/"


def test_a_cross_site_login_post_is_refused(shop: Shop) -> None:
    shop.fakes.on("identity", "POST", "/token", token_for(CUSTOMER, shop))

    page = shop.client.post(
        "/login",
        data={"email": CUSTOMER.email, "password": "correct horse"},
        headers={"Origin": "https://evil.example"},
    )

    assert page.status_code == 403
    assert "set-cookie" not in page.headers
    assert not shop.fakes.requests("identity")


def test_register_creates_the_account_and_signs_in(shop: Shop) -> None:
    registered: list[dict[str, Any]] = []

    def register(request: httpx.Request) -> httpx.Response:
        registered.append(orjson.loads(request.content))
        return json_response(
            201,
            {
                "user_id": CUSTOMER.user_id,
                "email": CUSTOMER.email,
                "name": "Ada",
                "role": "customer",
            },
        )

    shop.fakes.on("identity", "POST", "/register", register)
    shop.fakes.on("identity", "POST", "/token", token_for(CUSTOMER, shop))
    assert tagged(shop.get("/register").text, "register-form")

    done = shop.client.post(
        "/register",
        data={
            "name": "Ada",
            "email": CUSTOMER.email,
            "password": "correct horse",
            "next": "/orders",
        },
        follow_redirects=False,
    )

    assert registered == [{"email": CUSTOMER.email, "password": "correct horse", "name": "Ada"}]
    assert done.status_code == 303 and done.headers["location"] == "/orders"
    assert "eventmart_token=" in done.headers["set-cookie"]


def test_register_shows_the_services_refusal(shop: Shop) -> None:
    shop.fakes.on(
        "identity",
        "POST",
        "/register",
        lambda _r: json_response(409, {"detail": "email: ada@example.com is already registered"}),
    )

    page = shop.client.post(
        "/register", data={"name": "Ada", "email": CUSTOMER.email, "password": "correct horse"}
    )

    assert page.status_code == 409
    assert text_of(page.text, "register-error") == ["email: ada@example.com is already registered"]


def test_register_names_the_invalid_field(shop: Shop) -> None:
    page = shop.client.post(
        "/register", data={"name": "Ada", "email": CUSTOMER.email, "password": "short"}
    )

    assert page.status_code == 422
    assert text_of(page.text, "register-error")[0].startswith("password:")
    assert not shop.fakes.requests("identity")


def test_logout_forgets_the_cookie(shop: Shop) -> None:
    shop.login_as(CUSTOMER)
    assert tagged(shop.get("/logout").text, "logout-button")

    done = shop.client.post("/logout", follow_redirects=False)

    assert done.status_code == 303 and done.headers["location"] == "/"
    assert (
        done.headers["set-cookie"].startswith('eventmart_token=""')
        or "Max-Age=0" in done.headers["set-cookie"]
    )
    assert "eventmart_token" not in shop.client.cookies


# -- basket and orders ---------------------------------------------------------------------
@pytest.mark.parametrize("url", ["/basket", "/orders", f"/orders/{ORDER}"])
def test_signed_in_pages_send_strangers_to_login(shop: Shop, url: str) -> None:
    page = shop.get(url)

    assert page.status_code == 303
    assert page.headers["location"] == f"/login?next={url}"


def test_an_expired_session_goes_to_login_and_forgets_the_cookie(shop: Shop) -> None:
    shop.client.cookies.set(
        "eventmart_token", issue_token(shop.settings, CUSTOMER, ttl_s=-10), "shop.test"
    )

    page = shop.get("/basket")

    assert page.status_code == 303 and page.headers["location"] == "/login?next=/basket"
    assert "eventmart_token" not in shop.client.cookies


def test_basket_page_lists_lines_total_and_the_checkout_form(shop: Shop) -> None:
    shop.login_as(CUSTOMER)
    shop.fakes.on(
        "basket",
        "GET",
        "/basket",
        {
            "customer_id": CUSTOMER.user_id,
            "items": [
                {
                    "product_id": P1,
                    "sku": "KIT-001",
                    "name": "Cast-iron Skillet",
                    "quantity": 2,
                    "unit_price_cents": 1299,
                    "line_total_cents": 2598,
                },
                {
                    "product_id": P2,
                    "sku": "KIT-002",
                    "name": "Ceramic <Teapot>",
                    "quantity": 1,
                    "unit_price_cents": 4500,
                    "line_total_cents": 4500,
                },
            ],
            "total_cents": 7098,
            "item_count": 3,
        },
    )

    page = shop.get("/basket")

    assert page.status_code == 200
    html = page.text
    sent = shop.fakes.requests("basket", "/basket")[0]
    assert sent.headers["authorization"] == f"Bearer {shop.client.cookies['eventmart_token']}"
    # (the <template> the script clones lines from has a basket-line without a product)
    assert re.findall(r'data-testid="basket-line" data-product-id="([^"]+)"', html) == [P1, P2]
    assert ['value="2"' in t for t in tagged(html, "basket-qty")[:2]] == [True, False]
    assert text_of(html, "basket-line-total")[:2] == ["$25.98", "$45.00"]
    assert text_of(html, "basket-total") == ["$70.98"]
    assert "Ceramic &lt;Teapot&gt;" in html
    assert len(tagged(html, "basket-remove")) == 3  # two lines and the JS template's
    (form,) = tagged(html, "checkout-form")
    key = re.search(r'data-idempotency-key="([^"]+)"', form).group(1)  # type: ignore[union-attr]
    assert uuid.UUID(key)
    options = re.findall(r'<option value="(tok_[a-z]+)" data-hint="([^"]+)"', html)
    assert (
        [o[0] for o in options]
        == [t[0] for t in CARD_TOKENS]
        == ["tok_visa", "tok_declined", "tok_timeout", "tok_slow"]
    )
    assert all(hint for _, hint in options)
    assert tagged(html, "checkout-button")
    for field_id in ("ship-name", "ship-line1", "ship-city", "ship-postal-code", "ship-country"):
        assert f'<label for="{field_id}">' in html
    # Each page load is a new checkout attempt.
    again = re.search(r'data-idempotency-key="([^"]+)"', shop.get("/basket").text).group(1)  # type: ignore[union-attr]
    assert again != key


def test_an_empty_basket_hides_checkout(shop: Shop) -> None:
    shop.login_as(CUSTOMER)
    shop.fakes.on(
        "basket",
        "GET",
        "/basket",
        {"customer_id": CUSTOMER.user_id, "items": [], "total_cents": 0, "item_count": 0},
    )

    html = shop.get("/basket").text

    assert "hidden" not in tagged(html, "basket-empty")[0]
    assert "hidden" in tagged(html, "checkout-section")[0]


def test_basket_page_when_the_basket_service_is_down(shop: Shop) -> None:
    shop.login_as(CUSTOMER)

    page = shop.get("/basket")

    assert page.status_code == 503
    assert page.headers["retry-after"]
    assert "basket is unavailable" in text_of(page.text, "page-error")[0]


def test_my_orders(shop: Shop) -> None:
    shop.login_as(CUSTOMER)
    shop.fakes.on(
        "readside",
        "GET",
        "/orders",
        {
            "items": [order_view("CONFIRMED"), order_view("CANCELLED", id="o-2")],
            "page": 1,
            "page_size": 20,
            "total": 2,
        },
    )

    html = shop.get("/orders").text

    assert (
        shop.fakes.requests("readside", "/orders")[0].url.params["customer_id"] == CUSTOMER.user_id
    )
    assert [
        re.search(r'data-order-id="([^"]+)"', t).group(1) for t in tagged(html, "order-row")
    ] == [ORDER, "o-2"]  # type: ignore[union-attr]
    assert text_of(html, "order-row-status") == ["CONFIRMED", "CANCELLED"]
    assert f'href="/orders/{ORDER}"' in tagged(html, "order-link")[0]
    assert "2026-01-02 10:00:00 UTC" in html


def test_order_page_shows_status_items_total_timeline_and_the_live_stream(shop: Shop) -> None:
    shop.login_as(CUSTOMER)
    shop.fakes.on("readside", "GET", f"/orders/{ORDER}", order_view("STOCK_RESERVED"))

    page = shop.get(f"/orders/{ORDER}")

    assert page.status_code == 200
    html = page.text
    assert 'data-status="STOCK_RESERVED"' in tagged(html, "order-status")[0]
    assert text_of(html, "order-status") == ["Stock reserved"]
    assert text_of(html, "order-total") == ["$25.98"]
    assert len(tagged(html, "order-item")) == 1
    entries = tagged(html, "timeline-entry")
    assert [re.search(r'data-type="(\w+)"', e).group(1) for e in entries] == [
        "BasketCheckedOut",
        "OrderPlaced",
        "OrderStockReserved",
    ]  # type: ignore[union-attr]
    assert text_of(html, "timeline-entry")[2] == "Stock reserved 2026-01-02 10:00:02 UTC"
    assert f'data-stream="/api/orders/{ORDER}/stream"' in html
    assert "hidden" in tagged(html, "cancellation-reason")[0]
    assert "hidden" not in tagged(html, "cancel-order")[0]
    assert 'data-state="connecting"' in tagged(html, "live-indicator")[0]
    assert '<script src="/static/order.js?v=' in html


def test_a_cancelled_order_shows_its_reason_and_no_cancel_button(shop: Shop) -> None:
    shop.login_as(CUSTOMER)
    view = order_view("CANCELLED", cancellation_reason="PAYMENT_DECLINED")
    view["timeline"].append({"type": "OrderCancelled", "status": "CANCELLED", "at": 1767348003000})
    shop.fakes.on("readside", "GET", f"/orders/{ORDER}", view)

    html = shop.get(f"/orders/{ORDER}").text

    (reason,) = tagged(html, "cancellation-reason")
    assert 'data-reason="PAYMENT_DECLINED"' in reason and "hidden" not in reason
    assert text_of(html, "cancellation-reason") == [
        "Cancelled: PAYMENT_DECLINED — the card was declined"
    ]
    assert "hidden" in tagged(html, "cancel-order")[0]
    assert 'data-state="ended"' in tagged(html, "live-indicator")[0]


def test_another_customers_order_is_not_found(shop: Shop) -> None:
    shop.login_as(CUSTOMER)
    shop.fakes.on("readside", "GET", f"/orders/{ORDER}", order_view(customer_id="someone-else"))

    page = shop.get(f"/orders/{ORDER}")

    assert page.status_code == 404
    assert text_of(page.text, "page-error") == [f"order {ORDER} not found"]


def test_the_order_stream_authenticates_with_the_cookie(shop: Shop) -> None:
    """What the page's EventSource does: no header, only the cookie."""
    shop.login_as(CUSTOMER)
    shop.fakes.on("readside", "GET", f"/orders/{ORDER}", order_view("DELIVERED"))

    with shop.client.stream("GET", f"/api/orders/{ORDER}/stream") as stream:
        assert stream.status_code == 200
        body = "".join(stream.iter_text())

    assert "event: order" in body
    data = orjson.loads(next(line[6:] for line in body.splitlines() if line.startswith("data: ")))
    assert data["status"] == "DELIVERED"


# -- the ops console -----------------------------------------------------------------------
def test_ops_sends_strangers_to_login_and_refuses_customers(shop: Shop) -> None:
    anonymous = shop.get("/ops")
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login?next=/ops"

    shop.login_as(CUSTOMER)
    refused = shop.get("/ops")
    assert refused.status_code == 403
    assert "administrators only" in text_of(refused.text, "page-error")[0]
    assert shop.client.get("/api/ops/lag").status_code == 403


def dead_letter(shop: Shop) -> None:
    producer = shop.platform.bus.producer()
    producer.send(
        [
            OutgoingRecord(
                "dlq.readside-orders",
                ORDER,
                b"\x00\x00\x00\x00\x01",
                (
                    ("ce_type", b"OrderConfirmed"),
                    ("ce_id", b"m-1"),
                    ("dlq_reason", b"no such <column> in views"),
                    ("dlq_error_type", b"OperationalError"),
                    ("dlq_original_topic", b"ordering.events"),
                    ("dlq_original_partition", b"3"),
                    ("dlq_original_offset", b"17"),
                    ("dlq_group", b"readside-orders"),
                    ("dlq_attempts", b"5"),
                    ("dlq_failed_at", str(int(time.time() * 1000)).encode()),
                ),
            )
        ]
    )
    producer.close()


def lag_of_two(shop: Shop) -> None:
    bus = shop.platform.bus
    bus.ensure_topic("ordering.events", 1)
    producer = bus.producer()
    producer.send([OutgoingRecord("ordering.events", ORDER, b"x") for _ in range(3)])
    producer.close()
    consumer = bus.consumer("shipping", ["ordering.events"])
    consumer.poll(1, 1.0)
    consumer.commit({TopicPartition("ordering.events", 0): 1})
    consumer.close()


def test_ops_console_shows_services_lag_and_dead_letters(shop: Shop) -> None:
    shop.login_as(ADMIN)
    shop.fakes.on("readside", "GET", "/readyz", {"status": "ready"})
    dead_letter(shop)
    lag_of_two(shop)

    page = shop.get("/ops")

    assert page.status_code == 200
    html = page.text
    rows = {re.search(r'data-service="(\w+)"', t).group(1): t for t in tagged(html, "service-row")}  # type: ignore[union-attr]
    assert set(rows) == {
        "identity",
        "catalog",
        "inventory",
        "basket",
        "ordering",
        "payment",
        "shipping",
        "notification",
        "readside",
    }
    states = dict(zip(rows, text_of(html, "service-state"), strict=True))
    assert states["readside"] == "ready"
    assert states["ordering"].startswith("down: connection failed")
    assert tagged(html, "ops-lag-chart") and text_of(html, "lag-total") == ["2"]
    # One row per group; its partitions in a collapsed <details>.
    (lag_row,) = [t for t in tagged(html, "lag-row") if 'data-group="shipping"' in t]
    assert 'data-lag="2"' in lag_row and 'data-partitions="1"' in lag_row
    (partition,) = [t for t in tagged(html, "lag-partition") if 'data-group="shipping"' in t]
    assert 'data-topic="ordering.events"' in partition and 'data-partition="0"' in partition
    assert '<details class="partitions" data-group="shipping">' in html
    (letter,) = tagged(html, "dlq-row")
    assert 'data-letter-id="readside-orders-' in letter and 'data-redriven="no"' in letter
    assert text_of(html, "dlq-reason") == ["no such &lt;column&gt; in views (OperationalError)"]
    (button,) = tagged(html, "dlq-redrive")
    assert button.startswith("<button") and "disabled" not in button
    assert '<script src="/static/ops.js?v=' in html
    assert text_of(html, "nav-ops")


def test_redrive_then_the_console_shows_the_letter_redriven(shop: Shop) -> None:
    shop.login_as(ADMIN)
    dead_letter(shop)
    letter_id = shop.client.get("/api/ops/dlq").json()[0]["id"]

    assert shop.client.post(f"/api/ops/dlq/{letter_id}/redrive").json()["redriven"] == letter_id

    (row,) = tagged(shop.get("/ops").text, "dlq-row")
    assert 'data-redriven="yes"' in row
    assert "disabled" in tagged(shop.get("/ops").text, "dlq-redrive")[0]


def test_ops_order_lookup_shows_events_saga_and_a_trace_waterfall(shop: Shop) -> None:
    shop.login_as(ADMIN)
    history = {
        "order_id": ORDER,
        "events": [
            {
                "version": 1,
                "type": "eventmart.ordering.OrderPlaced",
                "position": 10,
                "recorded_at_ms": 1767348001000,
                "data": {"order_id": ORDER},
            },
            {
                "version": 2,
                "type": "eventmart.ordering.OrderStockReserved",
                "position": 12,
                "recorded_at_ms": 1767348002000,
                "data": {"note": "<script>x</script>"},
            },
        ],
        "saga": {
            "status": "RUNNING",
            "step": "authorize_payment",
            "steps": [
                {"seq": 1, "step": "reserve_stock", "at_ms": 1767348001000, "detail": None},
                {
                    "seq": 2,
                    "step": "authorize_payment",
                    "at_ms": 1767348002000,
                    "detail": "deadline in 10 s",
                },
            ],
        },
    }
    shop.fakes.on("ordering", "GET", f"/orders/{ORDER}/history", history)
    trace_id = "ab" * 16
    start = 1_767_348_001_000_000_000
    spans = [
        ("bff-web", "POST /api/basket/checkout", 0, 40, None),
        ("basket", "POST /basket/checkout", 5, 30, None),
        ("ordering", "basket.events process", 50, 60, ORDER),
        ("inventory", "inventory.commands process", 70, 90, ORDER),
        ("ordering", "inventory.events process", 95, 100, ORDER),
    ]
    shop.platform.spans.add(
        [
            (
                f"{i:016x}",
                trace_id,
                None,
                service,
                name,
                "SERVER",
                start + s * 1_000_000,
                start + e * 1_000_000,
                "OK",
                orjson.dumps({"eventmart.key": key} if key else {}).decode(),
            )
            for i, (service, name, s, e, key) in enumerate(spans)
        ]
    )

    page = shop.get("/ops", params={"order": ORDER})

    assert page.status_code == 200
    html = page.text
    assert f'value="{ORDER}"' in tagged(html, "order-lookup-input")[0]
    events = tagged(html, "order-event")
    assert [re.search(r'data-type="([\w.]+)"', e).group(1) for e in events] == [
        "eventmart.ordering.OrderPlaced",
        "eventmart.ordering.OrderStockReserved",
    ]  # type: ignore[union-attr]
    assert "<script>x</script>" not in html
    # Friendly names on screen; the full type stays in data-type and the title.
    assert re.findall(r'<strong title="([\w.]+)">(\w+)</strong>', html) == [
        ("eventmart.ordering.OrderPlaced", "OrderPlaced"),
        ("eventmart.ordering.OrderStockReserved", "OrderStockReserved"),
    ]
    assert text_of(html, "saga-status") == ["RUNNING"]
    assert len(tagged(html, "saga-step")) == 2
    assert f'data-trace-id="{trace_id}"' in tagged(html, "trace-link")[0]
    assert f'data-trace-id="{trace_id}"' in tagged(html, "trace-waterfall")[0]
    rows = tagged(html, "trace-span")
    services = [re.search(r'data-service="([\w-]+)"', r).group(1) for r in rows]  # type: ignore[union-attr]
    # Lanes by service, in the order the trace reached them; spans by start within a lane.
    assert services == ["bff-web", "basket", "ordering", "ordering", "inventory"]
    bars = re.findall(r'<rect class="svc-(\d)" x="([\d.]+)" y="1" width="([\d.]+)"', html)
    assert bars[0] == ("0", "0.0", "400.0")
    assert bars[-1] == ("3", "700.0", "200.0")


def test_ops_lookup_of_an_unknown_order(shop: Shop) -> None:
    shop.login_as(ADMIN)
    shop.fakes.on(
        "ordering",
        "GET",
        "/orders/.*/history",
        lambda _r: json_response(404, {"detail": "order missing not found"}),
    )

    page = shop.get("/ops?order=missing")

    assert page.status_code == 200
    assert text_of(page.text, "lookup-error") == ["order missing not found"]
    assert not tagged(page.text, "trace-waterfall")


def test_ops_lookup_refuses_what_is_not_an_order_id(shop: Shop) -> None:
    shop.login_as(ADMIN)
    shop.fakes.on("ordering", "GET", "/readyz", {"status": "ready"})  # ordering is up

    page = shop.get("/ops", params={"order": "../../etc"})

    assert page.status_code == 200
    assert text_of(page.text, "lookup-error") == [
        "order id: &#39;../../etc&#39; is not an order id"
    ]
    assert [r.url.path for r in shop.fakes.requests("ordering")] == ["/readyz"]  # health only


# -- the browser-test contract ------------------------------------------------------------
def test_every_testid_in_use_is_in_the_contract() -> None:
    from eventmart.edge import storefront

    contract = set(re.findall(r"\b[a-z]+(?:-[a-z0-9]+)*\b", storefront.__doc__ or ""))
    used: set[str] = set()
    for path in [*storefront.TEMPLATES_DIR.glob("*.html"), *storefront.STATIC_DIR.glob("*.js")]:
        text = path.read_text()
        used |= set(re.findall(r'data-testid="([a-z0-9-]+)"', text))
        used |= set(re.findall(r'(?:dataset\.testid = |byTestId\()"([a-z0-9-]+)"', text))
    assert used and not used - contract, sorted(used - contract)


# -- static files --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("shop.css", "text/css"),
        ("shop.js", "javascript"),
        ("basket.js", "javascript"),
        ("order.js", "javascript"),
        ("ops.js", "javascript"),
        ("favicon.svg", "image/svg+xml"),
    ],
)
def test_static_files_are_served(shop: Shop, name: str, kind: str) -> None:
    answer = shop.get(f"/static/{name}")

    assert answer.status_code == 200
    assert kind in answer.headers["content-type"]


def test_pages_carry_no_inline_script_or_style(shop: Shop) -> None:
    shop.login_as(ADMIN)
    shop.fakes.on(
        "readside", "GET", "/products", {"items": CATALOG, "page": 1, "page_size": 8, "total": 3}
    )
    for url in ("/", "/products", "/login", "/register", "/ops"):
        html = shop.get(url).text
        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == [], url
        assert " style=" not in html and "<style" not in html, url
        assert re.findall(r"\son[a-z]+=", html) == [], url
