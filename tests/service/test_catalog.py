"""catalog: seeding, search, admin changes publish events, bad input is refused."""

from __future__ import annotations

from eventmart.contracts.catalog import ProductAdded, ProductPriceChanged
from eventmart.platform.settings import Settings
from tests.service.harness import running


def test_demo_catalog_is_seeded_once_and_published(settings: Settings) -> None:
    with running("catalog", settings) as h:
        cats = h.client.get("/categories").json()
        assert len(cats) >= 8 and sum(c["products"] for c in cats) >= 200
        added = h.wait_for(ProductAdded, count=sum(c["products"] for c in cats))
    with running("catalog", settings) as h:  # a restart adds nothing
        assert len(h.emitted(ProductAdded)) == len(added)


def test_search_and_pages(settings: Settings) -> None:
    with running("catalog", settings) as h:
        page = h.client.get("/products", params={"category": "kitchen", "page_size": 7}).json()
        assert page["total"] == 30 and len(page["items"]) == 7
        assert {p["category"] for p in page["items"]} == {"kitchen"}
        found = h.client.get("/products", params={"q": "KETTLE"}).json()["items"]
        assert found and all("kettle" in p["name"].lower() for p in found)
        assert h.client.get("/products", params={"page": 0}).status_code == 422


def test_admin_adds_product_and_changes_price(settings: Settings) -> None:
    with running("catalog", settings) as h:
        body = {"sku": "NEW-1", "name": "Test Lamp", "category": "home", "price_cents": 2500}
        assert h.client.post("/admin/products", json=body).status_code == 401
        assert (
            h.client.post("/admin/products", json=body, headers=h.token("customer")).status_code
            == 403
        )
        created = h.client.post("/admin/products", json=body, headers=h.token("admin"))
        assert created.status_code == 201
        pid = created.json()["product_id"]
        dup = h.client.post("/admin/products", json=body, headers=h.token("admin"))
        assert dup.status_code == 409 and "sku" in dup.json()["detail"]
        bad = h.client.put(
            f"/admin/products/{pid}/price", json={"price_cents": -1}, headers=h.token("admin")
        )
        assert bad.status_code == 422 and "price_cents" in str(bad.json()["detail"])
        ok = h.client.put(
            f"/admin/products/{pid}/price", json={"price_cents": 1999}, headers=h.token("admin")
        )
        assert ok.json()["price_cents"] == 1999
        (change,) = h.wait_for(ProductPriceChanged, key=pid)
        assert (change.old_price_cents, change.new_price_cents) == (2500, 1999)
        assert h.wait_for(ProductAdded, key=pid)[0].name == "Test Lamp"
