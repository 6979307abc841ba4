"""Thin HTTP helpers for end-to-end tests: a shopper using the public web API."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "12 Analytical Row",
    "city": "London",
    "postal_code": "N1 7AA",
    "country": "GB",
}
TERMINAL_OR_SHIPPED = {"CANCELLED", "SHIPPED", "DELIVERED"}


@dataclass
class Shopper:
    http: httpx.Client
    email: str = field(default_factory=lambda: f"shopper-{uuid.uuid4().hex[:10]}@example.com")
    password: str = "correct horse battery"
    user_id: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    orders: list[str] = field(default_factory=list)

    def register(self) -> Shopper:
        r = self.http.post(
            "/api/auth/register",
            json={"email": self.email, "password": self.password, "name": "Ada"},
        )
        assert r.status_code == 201, r.text
        self.user_id = r.json()["user_id"]
        token = self.http.post(
            "/api/auth/token", json={"email": self.email, "password": self.password}
        )
        assert token.status_code == 200, token.text
        self.headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        return self

    def products(self, **params: Any) -> dict[str, Any]:
        r = self.http.get("/api/products", params=params)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def add(self, product_id: str, quantity: int = 1) -> dict[str, Any]:
        r = self.http.put(
            f"/api/basket/items/{product_id}", json={"quantity": quantity}, headers=self.headers
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    def basket(self) -> dict[str, Any]:
        return dict(self.http.get("/api/basket", headers=self.headers).json())

    def checkout(self, card_token: str = "tok_visa", key: str | None = None) -> str:
        r = self.checkout_response(card_token, key)
        assert r.status_code == 202, r.text
        order_id = str(r.json()["order_id"])
        if order_id not in self.orders:
            self.orders.append(order_id)
        return order_id

    def checkout_response(
        self, card_token: str = "tok_visa", key: str | None = None
    ) -> httpx.Response:
        """POST the checkout as a well-behaved client does: a 503 with Retry-After (the
        shop shedding load, e.g. while orders before it are still being worked on) is
        retried after the time it names, with the same Idempotency-Key."""
        headers = {**self.headers, "Idempotency-Key": key or uuid.uuid4().hex}
        deadline = time.monotonic() + 30
        while True:
            r = self.http.post(
                "/api/basket/checkout",
                json={"shipping_address": ADDRESS, "card_token": card_token},
                headers=headers,
            )
            retry = r.headers.get("Retry-After", "")
            if r.status_code != 503 or not retry.isdigit() or time.monotonic() > deadline:
                return r
            time.sleep(min(2.0, float(retry)))

    def order(self, order_id: str) -> httpx.Response:
        return self.http.get(f"/api/orders/{order_id}", headers=self.headers)

    def wait_for(self, order_id: str, statuses: set[str], timeout_s: float = 20) -> dict[str, Any]:
        """Poll the order until its status is one of `statuses`; return its view."""
        deadline = time.monotonic() + timeout_s
        seen = None
        while time.monotonic() < deadline:
            r = self.order(order_id)
            if r.status_code == 200:
                seen = r.json()
                if seen["status"] in statuses:
                    return dict(seen)
            time.sleep(0.05)
        raise AssertionError(f"order {order_id} did not reach {statuses}; last seen {seen}")

    def my_orders(self) -> set[str]:
        r = self.http.get("/api/orders", headers=self.headers)
        assert r.status_code == 200, r.text
        return {o["id"] for o in r.json()["items"]}
