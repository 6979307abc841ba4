"""The basket's rules: quantities, limits, prices and what a checkout captures.

Pure: no framework, no I/O. Prices come in as `Price` values (the service's local price
list, projected from the catalog's events); the basket never trusts a client's price.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

MAX_QUANTITY: Final = 99
MAX_DISTINCT_PRODUCTS: Final = 50
DEFAULT_CURRENCY: Final = "USD"


class BasketError(Exception):
    """A request the basket refuses; the message names the field or the thing."""


class InvalidQuantityError(BasketError):
    pass


class UnknownProductError(BasketError):
    pass


class NotInBasketError(BasketError):
    pass


class BasketFullError(BasketError):
    pass


class EmptyBasketError(BasketError):
    pass


class MixedCurrencyError(BasketError):
    pass


@dataclass(frozen=True, slots=True)
class Price:
    """A product as the basket knows it: from `ProductAdded`, updated by price changes."""

    product_id: str
    sku: str
    name: str
    price_cents: int
    currency: str = "USD"


@dataclass(frozen=True, slots=True)
class Item:
    """A product and how many of it the customer wants (no price: prices are looked up)."""

    product_id: str
    quantity: int


@dataclass(frozen=True, slots=True)
class Line:
    product_id: str
    sku: str
    name: str
    quantity: int
    unit_price_cents: int

    @property
    def line_total_cents(self) -> int:
        return self.quantity * self.unit_price_cents


@dataclass(frozen=True, slots=True)
class PricedBasket:
    """A basket with the current prices; what the customer sees and what checkout captures."""

    customer_id: str
    lines: tuple[Line, ...]
    currencies: frozenset[str] = frozenset()

    @property
    def currency(self) -> str:
        """The basket's one currency (checkout refuses a basket with several)."""
        return min(self.currencies) if self.currencies else DEFAULT_CURRENCY

    @property
    def total_cents(self) -> int:
        return sum(line.line_total_cents for line in self.lines)

    @property
    def item_count(self) -> int:
        """Units in the basket (what a basket badge shows), not distinct products."""
        return sum(line.quantity for line in self.lines)


def check_quantity(quantity: int) -> int:
    if quantity < 1:
        raise InvalidQuantityError("quantity: must be at least 1")
    if quantity > MAX_QUANTITY:
        raise InvalidQuantityError(f"quantity: must be at most {MAX_QUANTITY}")
    return quantity


def check_set_quantity(
    items: Sequence[Item], product_id: str, quantity: int, price: Price | None
) -> Item:
    """The item to store when the customer sets `product_id` to `quantity`."""
    check_quantity(quantity)
    if price is None:
        raise UnknownProductError("product_id: unknown product")
    if product_id not in {i.product_id for i in items} and len(items) >= MAX_DISTINCT_PRODUCTS:
        raise BasketFullError(
            f"basket: at most {MAX_DISTINCT_PRODUCTS} distinct products; remove one first"
        )
    return Item(product_id, quantity)


def check_remove(items: Sequence[Item], product_id: str) -> None:
    if product_id not in {i.product_id for i in items}:
        raise NotInBasketError("product_id: not in the basket")


def price_basket(
    customer_id: str, items: Sequence[Item], prices: Mapping[str, Price]
) -> PricedBasket:
    """Price `items` with `prices`. A product missing from the price list cannot be in a
    basket (it was added against the list, and products are never withdrawn from it), so
    that is an invariant breach: KeyError, not a business answer."""
    lines: list[Line] = []
    currencies: set[str] = set()
    for item in items:
        price = prices[item.product_id]
        currencies.add(price.currency)
        lines.append(
            Line(
                product_id=item.product_id,
                sku=price.sku,
                name=price.name,
                quantity=item.quantity,
                unit_price_cents=price.price_cents,
            )
        )
    return PricedBasket(customer_id, tuple(lines), frozenset(currencies))


def check_checkout(basket: PricedBasket) -> PricedBasket:
    """The basket as an order may be made of it: not empty, one currency."""
    if not basket.lines:
        raise EmptyBasketError("basket is empty")
    if len(basket.currencies) > 1:
        mixed = ", ".join(sorted(basket.currencies))
        raise MixedCurrencyError(f"basket: mixes currencies ({mixed}); one order, one currency")
    return basket
