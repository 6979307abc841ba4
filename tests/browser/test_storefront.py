"""The storefront and the ops console in a real browser, against `eventmart up`.

A shopper registers, searches, fills the basket, pays with tok_visa and watches the order
turn CONFIRMED on a page that never reloads (server-sent events); a declined card shows
the cancellation and why; the administrator sees the lag chart, the order's trace across
the gateway, ordering, inventory and payment, and redrives a dead letter. Every step is
screenshotted into test-artifacts/screenshots/. Selectors are the `data-testid` contract
in eventmart/edge/storefront.py.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Page, expect

from eventmart.contracts.identity import UserRegistered
from eventmart.contracts.ordering import OrderConfirmed
from eventmart.platform.bus import OutgoingRecord
from eventmart.platform.messages import Envelope, new_id, now_ms
from tests.browser.conftest import Screenshots
from tests.e2e.client import Shopper
from tests.system.running import RunningShop, ShopOptions

# Shipping waits 3 s, so CONFIRMED stays on screen a while before SHIPPED replaces it.
BROWSER_SHOP = ShopOptions(env=(("EVENTMART_SHIPPING_DISPATCH_DELAY_S", "3"),))

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(300),
    pytest.mark.parametrize("eventmart", [BROWSER_SHOP], indirect=True, ids=["shop"]),
]

PASSWORD = "correct horse battery"
TID = "data-testid"
# Records, from the first paint on, every status the order page shows, and whether the
# document was ever replaced (a reload or navigation would start a new array).
WATCH_STATUS = """
window.__statuses = [];
document.addEventListener("DOMContentLoaded", () => {
  const el = document.querySelector('[data-testid="order-status"]');
  if (!el) return;
  window.__statuses.push(el.dataset.status);
  new MutationObserver(() => {
    const s = el.dataset.status;
    if (window.__statuses[window.__statuses.length - 1] !== s) window.__statuses.push(s);
  }).observe(el, { attributes: true, attributeFilter: ["data-status"] });
});
"""


def tid(value: str, **attrs: str) -> str:
    extra = "".join(f'[data-{k.replace("_", "-")}="{v}"]' for k, v in attrs.items())
    return f'[{TID}="{value}"]{extra}'


@pytest.fixture(scope="module")
def placed() -> dict[str, str]:
    """Orders the scenarios placed, for the ops scenario to look up."""
    return {}


@pytest.fixture
def web(eventmart: RunningShop) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=eventmart.web_url, timeout=30) as client:
        yield client


def log_in(page: Page, shop: RunningShop, email: str, password: str, next_path: str) -> None:
    page.goto(f"{shop.web_url}/login?next={next_path}")
    page.fill(tid("login-email"), email)
    page.fill(tid("login-password"), password)
    page.click(tid("login-submit"))
    expect(page.locator(tid("nav-user"))).to_have_text(email)


def add_from_product_page(page: Page, quantity: int) -> str:
    """On a product page: add `quantity` to the basket; the product's id."""
    product_id = page.locator("article.product").get_attribute("data-product-id") or ""
    page.fill(tid("add-to-basket-qty"), str(quantity))
    page.click(tid("add-to-basket"))
    expect(page.locator(tid("basket-message"))).to_contain_text(f"You have {quantity}")
    return product_id


def fill_checkout(page: Page, card: str) -> None:
    page.fill(tid("ship-name"), "Ada Lovelace")
    page.fill(tid("ship-line1"), "12 Analytical Row")
    page.fill(tid("ship-city"), "London")
    page.fill(tid("ship-postal-code"), "N1 7AA")
    page.fill(tid("ship-country"), "GB")
    page.select_option(tid("card-token"), card)


def order_page_after_checkout(page: Page) -> str:
    """Follow the checkout to the order page; the order's id.

    The read side learns of the order asynchronously, so right after checkout it may not
    have it yet: the page must show the order anyway (from the write side, or once it
    arrives), never a "not found" that the shopper would have to reload away."""
    page.wait_for_url(re.compile(r"/orders/[A-Za-z0-9_-]+$"))
    order_id = page.url.rsplit("/", 1)[1]
    expect(page.locator(tid("order-id"))).to_have_text(order_id)
    expect(page.locator(tid("page-error"))).to_be_hidden()
    return order_id


def test_a_shopper_checks_out_and_sees_the_order_confirmed_live(
    eventmart: RunningShop, page: Page, shot: Screenshots, placed: dict[str, str]
) -> None:
    email = f"browser-{uuid.uuid4().hex[:10]}@example.com"
    page.goto(eventmart.web_url)
    expect(page.locator(tid("featured-products"))).to_be_visible()
    shot(page, "home")

    page.click(tid("nav-register"))
    page.fill(tid("register-name"), "Ada Lovelace")
    page.fill(tid("register-email"), email)
    page.fill(tid("register-password"), PASSWORD)
    shot(page, "register")
    page.click(tid("register-submit"))
    expect(page.locator(tid("nav-user"))).to_have_text(email)

    page.fill(tid("search-box"), "kettle")
    page.click(tid("search-button"))
    expect(page.locator(tid("product-list"))).to_be_visible()
    expect(page.locator(tid("result-count"))).to_contain_text("product")
    shot(page, "search-kettle")
    page.locator(tid("product-card")).filter(
        has=page.locator('[data-testid="product-availability"]:not([data-available="0"])')
    ).first.locator("a").click()
    expect(page.locator(tid("add-to-basket"))).to_be_enabled()
    first = add_from_product_page(page, 2)
    shot(page, "added-first")

    page.fill(tid("search-box"), "teapot")
    page.click(tid("search-button"))
    cards = page.locator(tid("product-card")).filter(
        has=page.locator('[data-testid="product-availability"]:not([data-available="0"])')
    )
    expect(cards.first).to_be_visible()
    cards.first.locator("a").click()
    second = add_from_product_page(page, 1)
    assert second != first

    page.click(tid("nav-basket"))
    expect(page.locator(tid("basket-line"))).to_have_count(2)
    expect(page.locator(tid("basket-line", product_id=first))).to_be_visible()
    expect(page.locator(tid("basket-line", product_id=second))).to_be_visible()
    fill_checkout(page, "tok_visa")
    shot(page, "basket-checkout")

    page.add_init_script(WATCH_STATUS)
    page.click(tid("checkout-button"))
    order_id = order_page_after_checkout(page)
    placed["visa"] = order_id
    shown_first = page.evaluate("window.__statuses[0]")
    shot(page, "order-page-loaded")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))

    # CONFIRMED arrives over the event stream: the page is never reloaded.
    expect(page.locator(tid("live-indicator"))).to_have_attribute(
        "data-state", re.compile("live|ended")
    )
    expect(page.locator(tid("timeline-entry", status="CONFIRMED"))).to_have_count(1)
    expect(page.locator(tid("order-status"))).to_have_attribute(
        "data-status", re.compile("CONFIRMED|SHIPPED|DELIVERED")
    )
    shot(page, "order-confirmed-live")
    expect(page.locator(tid("order-status"))).to_have_attribute(
        "data-status", "DELIVERED", timeout=30_000
    )
    expect(page.locator(tid("live-indicator"))).to_have_attribute("data-state", "ended")
    shot(page, "order-delivered-live")
    statuses: list[str] = page.evaluate("window.__statuses")
    print(f"order {order_id}: the page showed {' -> '.join(statuses)} without reloading")
    assert navigations == [], f"the order page navigated: {navigations}"
    assert statuses[0] == shown_first, statuses  # still the document first painted
    assert "CONFIRMED" in statuses, f"the page showed {statuses}"
    assert statuses[-1] == "DELIVERED" and len(statuses) >= 2, statuses
    expect(page.locator(tid("order-item"))).to_have_count(2)
    expect(page.locator(tid("cancellation-reason"))).to_be_hidden()


def test_a_declined_card_shows_the_cancellation_and_its_reason(
    eventmart: RunningShop, page: Page, shot: Screenshots, web: httpx.Client
) -> None:
    shopper = Shopper(web).register()
    product = shopper.products(category="toys")["items"][0]
    shopper.add(product["product_id"], 1)
    log_in(page, eventmart, shopper.email, shopper.password, "/basket")
    expect(page.locator(tid("basket-line"))).to_have_count(1)
    fill_checkout(page, "tok_declined")
    expect(page.locator(tid("card-hint"))).to_contain_text("declined")
    shot(page, "basket-declined-card")
    page.click(tid("checkout-button"))
    order_page_after_checkout(page)
    status = page.locator(tid("order-status"))
    expect(status).to_have_attribute("data-status", "CANCELLED")
    expect(status).to_have_text("Cancelled")
    reason = page.locator(tid("cancellation-reason"))
    expect(reason).to_be_visible()
    expect(reason).to_have_attribute("data-reason", "PAYMENT_DECLINED")
    expect(reason).to_contain_text("the card was declined")
    expect(page.locator(tid("timeline-entry", type="OrderCancelled"))).to_have_count(1)
    expect(page.locator(tid("cancel-order"))).to_be_hidden()
    shot(page, "order-cancelled")


def publish_poison(shop: RunningShop) -> str:
    """A record no consumer can decode, on a topic the notification-customers group reads.

    It claims to be a UserRegistered (a type that group handles) but its body is not Avro,
    so the consumer dead-letters it at once. Returns the record's key.
    """
    key = f"poison-{uuid.uuid4().hex[:8]}"
    envelope = Envelope(
        message_id=new_id(),
        type=UserRegistered.type_name(),
        key=key,
        source="browser-test",
        occurred_at_ms=now_ms(),
        correlation_id=new_id(),
    )
    producer = shop.platform.bus.producer()
    try:
        producer.send(
            [OutgoingRecord(UserRegistered.topic, key, b"this is not avro", envelope.to_headers())]
        )
    finally:
        producer.close()
    return key


def dead_letter_for(shop: RunningShop, key: str, timeout_s: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while True:
        r = httpx.get(f"{shop.web_url}/api/ops/dlq", headers=shop.admin_headers(), timeout=15)
        assert r.status_code == 200, r.text
        letters = [d for d in r.json() if d["key"] == key]
        if letters:
            return dict(letters[0])
        assert time.monotonic() < deadline, f"no dead letter for {key} after {timeout_s}s"
        time.sleep(0.2)


def test_the_admin_sees_lag_and_the_trace_and_redrives_a_dead_letter(
    eventmart: RunningShop,
    page: Page,
    shot: Screenshots,
    web: httpx.Client,
    placed: dict[str, str],
) -> None:
    order_id = placed.get("visa")
    if order_id is None:  # run alone: place an order through the API
        shopper = Shopper(web).register()
        shopper.add(shopper.products(category="books")["items"][0]["product_id"], 1)
        order_id = shopper.checkout("tok_visa")
        shopper.wait_for(order_id, {"CONFIRMED", "SHIPPED", "DELIVERED"}, timeout_s=60)
    key = publish_poison(eventmart)
    letter = dead_letter_for(eventmart, key)
    assert letter["group"] == "notification-customers", letter
    assert not letter["redriven"]

    log_in(page, eventmart, eventmart.admin_email, eventmart.admin_password, "/ops")
    page.wait_for_url(re.compile(r"/ops$"))
    expect(page.locator(tid("nav-ops"))).to_be_visible()

    # Lag: the chart draws a sample at load and one per poll (every 2 s).
    chart = page.locator(tid("ops-lag-chart"))
    expect(chart).to_be_visible()
    expect(chart).to_have_attribute("data-samples", re.compile(r"^([3-9]|\d\d+)$"))
    assert chart.locator("polyline").count() >= 1
    expect(page.locator(tid("lag-legend")).locator("li").first).to_be_visible()
    expect(page.locator(tid("lag-row")).first).to_be_attached()
    expect(page.locator(tid("lag-updated"))).to_contain_text("updated")
    expect(page.locator(tid("service-row"))).to_have_count(9)
    shot(page, "ops-lag")
    shot.of(page.locator("figure.chart"), "ops-lag-chart")

    # The dead letter, its reason, and Redrive.
    row = page.locator(tid("dlq-row", letter_id=str(letter["id"])))
    expect(row).to_have_attribute("data-redriven", "no")
    expect(row.locator(tid("dlq-reason"))).to_contain_text(str(letter["reason"])[:40])
    shot.of(page.locator(tid("dlq-table")), "ops-dead-letter")
    row.locator(tid("dlq-redrive")).click()
    expect(row).to_have_attribute("data-redriven", "yes")
    expect(row.locator(tid("dlq-redrive"))).to_be_disabled()
    expect(page.locator(tid("dlq-message"))).to_contain_text(f"Redriven {letter['id']}")
    shot.of(page.locator(tid("dlq-table")), "ops-redriven")
    page.reload()  # the console reads it back from the log: still redriven
    row = page.locator(tid("dlq-row", letter_id=str(letter["id"])))
    expect(row).to_have_attribute("data-redriven", "yes")
    expect(row.locator(tid("dlq-redrive"))).to_have_text("Redriven")
    # (The redriven record still does not decode: the group dead-letters it again.)

    # The order's events, saga and trace.
    page.fill(tid("order-lookup-input"), order_id)
    page.click(tid("order-lookup-button"))
    expect(page.locator(tid("order-event", type=OrderConfirmed.type_name()))).to_have_count(1)
    expect(page.locator(tid("saga-status"))).to_be_visible()
    waterfall = page.locator(tid("trace-waterfall"))
    expect(waterfall).to_be_visible()
    spans = page.locator(tid("trace-span"))
    expect(spans.first).to_be_visible()
    services = set(
        page.eval_on_selector_all(
            '[data-testid="trace-span"]', "els => els.map(e => e.dataset.service)"
        )
    )
    wanted = {
        "eventmart-bff-web",
        "eventmart-ordering",
        "eventmart-inventory",
        "eventmart-payment",
    }
    assert wanted <= services, f"the trace has spans from {sorted(services)}"
    shot.of(page.locator("#lookup"), "ops-order-trace")
