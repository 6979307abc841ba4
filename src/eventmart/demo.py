"""The deterministic demo catalog: the same 240 products, prices and stock on every machine.

Shared data, not a service: catalog seeds its products from it and inventory its stock, on
first start. Product ids derive from SKUs (UUIDv5), so both agree without talking.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

_NAMESPACE = uuid.UUID("8f3b2a10-5c1e-4c2b-9a57-6e0d7c1f4b21")

CATEGORIES: dict[str, tuple[list[str], list[str], tuple[int, int]]] = {
    # category: (adjectives, nouns, price range in cents)
    "books": (
        ["Illustrated", "Pocket", "Collected", "Annotated", "Essential"],
        ["Atlas", "Cookbook", "Novel", "Field Guide", "Anthology", "Handbook"],
        (899, 4999),
    ),
    "electronics": (
        ["Wireless", "Compact", "Smart", "Portable", "Noise-cancelling"],
        ["Headphones", "Speaker", "Charger", "Keyboard", "Mouse", "Webcam"],
        (1999, 29999),
    ),
    "kitchen": (
        ["Cast-iron", "Ceramic", "Bamboo", "Stainless", "Enamel"],
        ["Skillet", "Teapot", "Cutting Board", "Saucepan", "Mixing Bowl", "Kettle"],
        (1299, 15999),
    ),
    "garden": (
        ["Heavy-duty", "Folding", "Weatherproof", "Ergonomic", "Solar"],
        ["Trowel", "Hose", "Planter", "Lantern", "Pruner", "Bird Feeder"],
        (699, 8999),
    ),
    "sports": (
        ["Lightweight", "Pro", "Grippy", "Insulated", "Adjustable"],
        ["Yoga Mat", "Water Bottle", "Dumbbell", "Jump Rope", "Backpack", "Helmet"],
        (999, 12999),
    ),
    "toys": (
        ["Wooden", "Magnetic", "Glow-in-the-dark", "Stackable", "Musical"],
        ["Blocks", "Puzzle", "Train Set", "Kite", "Robot", "Marble Run"],
        (599, 6999),
    ),
    "clothing": (
        ["Merino", "Organic", "Waterproof", "Linen", "Fleece"],
        ["Socks", "T-shirt", "Jacket", "Scarf", "Beanie", "Gloves"],
        (999, 18999),
    ),
    "beauty": (
        ["Unscented", "Travel", "Refillable", "Botanical", "Gentle"],
        ["Soap", "Shampoo Bar", "Face Cream", "Lip Balm", "Hand Lotion", "Sunscreen"],
        (399, 4999),
    ),
}
PER_CATEGORY = 30


@dataclass(frozen=True, slots=True)
class DemoProduct:
    product_id: str
    sku: str
    name: str
    description: str
    category: str
    price_cents: int
    stock: int


def product_id_for(sku: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, sku))


def demo_products() -> list[DemoProduct]:
    rng = random.Random(20261121)  # fixed seed: the same catalog everywhere
    out: list[DemoProduct] = []
    for category, (adjectives, nouns, (low, high)) in CATEGORIES.items():
        names: set[str] = set()
        while len(names) < PER_CATEGORY:
            names.add(f"{rng.choice(adjectives)} {rng.choice(nouns)}")
        for i, name in enumerate(sorted(names), start=1):
            sku = f"{category[:3].upper()}-{i:03d}"
            price = rng.randrange(low // 100, high // 100) * 100 + 99  # $x.99
            out.append(
                DemoProduct(
                    product_id=product_id_for(sku),
                    sku=sku,
                    name=name,
                    description=f"{name}: a {category} favourite, demo item {sku}.",
                    category=category,
                    price_cents=price,
                    stock=rng.randrange(5, 60),
                )
            )
    return out
