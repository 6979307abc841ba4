"""The storefront's scripts and layout in a real browser (Debian's Chromium through
Playwright), against the web BFF served by uvicorn with every downstream service faked:
an order page that fills itself in once the order exists, the basket's line layout at
desktop width, and the ops console's lag table and chart with many consumer groups.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from eventmart.edge import api as edge_api
from eventmart.platform.auth import Principal, issue_token
from eventmart.platform.bus import OutgoingRecord, TopicPartition
from eventmart.platform.messages import new_id
from tests.edge.support import (
    ADMIN,
    CUSTOMER,
    P1,
    P2,
    Shop,
    json_response,
    order_view,
    serving,
)

pytestmark = [pytest.mark.browser]


@pytest.fixture
def open_page(shop: Shop, browser: Browser) -> Iterator[tuple[str, BrowserContext]]:
    with serving(shop) as url:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(10_000)
        yield url, context
        context.close()


def signed_in(shop: Shop, url: str, context: BrowserContext, who: Principal) -> Page:
    token = issue_token(shop.settings, who)
    context.add_cookies([{"name": "eventmart_token", "value": token, "url": url}])
    return context.new_page()


def tid(value: str) -> str:
    return f'[data-testid="{value}"]'


def test_an_order_being_placed_fills_in_when_it_arrives(
    shop: Shop, open_page: tuple[str, BrowserContext]
) -> None:
    url, context = open_page
    order_id = new_id()
    arrived: list[bool] = []

    def readside(_r: httpx.Request) -> httpx.Response:
        if not arrived:
            return json_response(404, {"detail": f"order {order_id} not found"})
        return json_response(200, order_view("CONFIRMED", id=order_id))

    shop.fakes.on("readside", "GET", f"/orders/{order_id}", readside)
    shop.fakes.on("ordering", "GET", f"/orders/{order_id}", lambda _r: json_response(404, {}))
    page = signed_in(shop, url, context, CUSTOMER)

    page.goto(f"{url}/orders/{order_id}")
    expect(page.locator(tid("order-placing"))).to_be_visible()
    expect(page.locator(tid("order-status"))).to_have_attribute("data-status", "")
    expect(page.locator(tid("order-item"))).to_have_count(0)

    arrived.append(True)  # the read side catches up; the waiting stream sees it

    expect(page.locator(tid("order-status"))).to_have_attribute("data-status", "CONFIRMED")
    expect(page.locator(tid("order-placing"))).to_be_hidden()
    expect(page.locator(tid("order-item"))).to_have_count(1)
    expect(page.locator(tid("order-total"))).to_have_text("$25.98")
    expect(page.locator(tid("timeline-entry"))).to_have_count(3)
    expect(page.locator(tid("cancel-order"))).to_be_visible()
    expect(page.locator(tid("page-error"))).to_be_hidden()


def test_an_order_that_never_comes_is_not_found_after_the_wait(
    shop: Shop,
    open_page: tuple[str, BrowserContext],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(edge_api, "ORDER_WAIT_S", 1.0)
    url, context = open_page
    order_id = new_id()
    gone = lambda _r: json_response(404, {"detail": f"order {order_id} not found"})  # noqa: E731
    shop.fakes.on("readside", "GET", f"/orders/{order_id}", gone)
    shop.fakes.on("ordering", "GET", f"/orders/{order_id}", gone)
    page = signed_in(shop, url, context, CUSTOMER)

    page.goto(f"{url}/orders/{order_id}")

    expect(page.locator(tid("page-error"))).to_have_text(f"order {order_id} not found")
    expect(page.locator(tid("order-placing"))).to_be_hidden()
    expect(page.locator(tid("live-indicator"))).to_have_attribute("data-state", "ended")


def test_a_basket_line_keeps_its_controls_on_one_row_at_desktop_width(
    shop: Shop, open_page: tuple[str, BrowserContext]
) -> None:
    url, context = open_page
    line = {
        "sku": "KIT-001",
        "quantity": 2,
        "unit_price_cents": 1299,
        "line_total_cents": 2598,
    }
    shop.fakes.on(
        "basket",
        "GET",
        "/basket",
        {
            "customer_id": CUSTOMER.user_id,
            "items": [
                {**line, "product_id": P1, "name": "Cast-iron Skillet, 12 inch, pre-seasoned"},
                {**line, "product_id": P2, "name": "Teapot"},
            ],
            "total_cents": 5196,
            "item_count": 4,
        },
    )
    page = signed_in(shop, url, context, CUSTOMER)
    for width in (1280, 1024, 768):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{url}/basket")
        for row in page.locator(tid("basket-line")).all():
            qty = row.locator(tid("basket-qty")).bounding_box()
            remove = row.locator(tid("basket-remove")).bounding_box()
            total = row.locator(tid("basket-line-total")).bounding_box()
            assert qty and remove and total
            # Remove sits beside the quantity box, not wrapped below it.
            assert abs(remove["y"] - qty["y"]) < qty["height"] / 2, (width, qty, remove)
            assert total["x"] >= remove["x"] + remove["width"], (width, remove, total)
        assert page.evaluate("document.documentElement.scrollWidth") <= width


def test_the_ops_console_stays_short_with_many_groups(
    shop: Shop, open_page: tuple[str, BrowserContext]
) -> None:
    url, context = open_page
    groups, partitions = 14, 8
    bus = shop.platform.bus
    bus.ensure_topic("ordering.events", partitions)
    producer = bus.producer()
    producer.send([OutgoingRecord("ordering.events", f"k{i}", b"x") for i in range(80)])
    producer.close()
    for g in range(groups):
        consumer = bus.consumer(f"group-{g:02d}", ["ordering.events"])
        consumer.poll(1, 0.2)
        consumer.commit({TopicPartition("ordering.events", p): g % 5 for p in range(partitions)})
        consumer.close()
    page = signed_in(shop, url, context, ADMIN)

    page.goto(f"{url}/ops")

    rows = page.locator(tid("lag-row"))
    expect(rows).to_have_count(groups)
    expect(page.locator(tid("lag-partition"))).to_have_count(groups * partitions)
    expect(page.locator(tid("lag-partition")).first).to_be_hidden()  # collapsed
    assert page.evaluate("document.documentElement.scrollHeight") < 2500
    # One colour per group, all different.
    chart = page.locator(tid("ops-lag-chart"))
    expect(chart.locator("polyline")).to_have_count(groups)
    strokes = chart.locator("polyline").evaluate_all("ls => ls.map(l => l.getAttribute('stroke'))")
    assert len(set(strokes)) == groups, strokes
    # A group's partitions open on demand, and stay open across the 2-second refresh.
    rows.first.locator("summary").click()
    first = page.locator(f'{tid("lag-partition")}[data-group="group-00"]')
    expect(first).to_have_count(partitions)
    expect(first.first).to_be_visible()
    drawn = int(chart.get_attribute("data-samples") or "0")
    expect(chart).to_have_attribute("data-samples", str(drawn + 1), timeout=8_000)
    expect(first.first).to_be_visible()
    expect(page.locator(f'{tid("lag-partition")}[data-group="group-01"]').first).to_be_hidden()
