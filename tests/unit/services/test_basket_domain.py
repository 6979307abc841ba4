"""The basket's rules, without a database: quantities, limits, pricing, checkout."""

from __future__ import annotations

import pytest

from eventmart.services.basket.domain import (
    MAX_DISTINCT_PRODUCTS,
    BasketFullError,
    EmptyBasketError,
    InvalidQuantityError,
    Item,
    MixedCurrencyError,
    NotInBasketError,
    Price,
    UnknownProductError,
    check_checkout,
    check_remove,
    check_set_quantity,
    price_basket,
)

KETTLE = Price("p-kettle", "KET-1", "Kettle", 2_500)
MUG = Price("p-mug", "MUG-1", "Mug", 799)


def test_quantity_bounds_name_the_field() -> None:
    for bad in (0, -1, 100):
        with pytest.raises(InvalidQuantityError, match=r"^quantity: "):
            check_set_quantity([], KETTLE.product_id, bad, KETTLE)
    assert check_set_quantity([], KETTLE.product_id, 99, KETTLE) == Item(KETTLE.product_id, 99)


def test_unknown_product_is_refused() -> None:
    with pytest.raises(UnknownProductError, match=r"^product_id: unknown product$"):
        check_set_quantity([], "p-nope", 1, None)


def test_at_most_fifty_distinct_products_but_existing_ones_can_change() -> None:
    full = [Item(f"p-{i}", 1) for i in range(MAX_DISTINCT_PRODUCTS)]
    with pytest.raises(BasketFullError, match=str(MAX_DISTINCT_PRODUCTS)):
        check_set_quantity(full, KETTLE.product_id, 1, KETTLE)
    assert check_set_quantity(full, "p-3", 7, KETTLE) == Item("p-3", 7)
    assert check_set_quantity(full[:-1], KETTLE.product_id, 1, KETTLE).quantity == 1


def test_remove_needs_the_product_in_the_basket() -> None:
    check_remove([Item(MUG.product_id, 1)], MUG.product_id)
    with pytest.raises(NotInBasketError, match=r"^product_id: "):
        check_remove([Item(MUG.product_id, 1)], KETTLE.product_id)


def test_pricing_uses_the_price_list_and_keeps_the_basket_order() -> None:
    prices = {p.product_id: p for p in (KETTLE, MUG)}
    basket = price_basket("c1", [Item(MUG.product_id, 3), Item(KETTLE.product_id, 2)], prices)
    assert [(ln.sku, ln.line_total_cents) for ln in basket.lines] == [
        ("MUG-1", 3 * 799),
        ("KET-1", 2 * 2_500),
    ]
    assert (basket.total_cents, basket.item_count, basket.currency) == (7_397, 5, "USD")
    assert check_checkout(basket) is basket


def test_checkout_refuses_an_empty_basket_and_mixed_currencies() -> None:
    with pytest.raises(EmptyBasketError, match=r"^basket is empty$"):
        check_checkout(price_basket("c1", [], {}))
    euro_mug = Price("p-emug", "EMUG-1", "Euro mug", 700, "EUR")
    prices = {p.product_id: p for p in (KETTLE, euro_mug)}
    mixed = price_basket("c1", [Item(KETTLE.product_id, 1), Item(euro_mug.product_id, 1)], prices)
    with pytest.raises(MixedCurrencyError, match="EUR, USD"):
        check_checkout(mixed)
