"""Read side: how fast the `orders` projection catches up with a log (`eventmart replay`).

Workload: a log of realistic contract events, Avro-encoded by the codec with eventmart's
envelope headers, as the services' relays leave it: per order a `BasketCheckedOut` on
basket.events and its `Order*` events with their stream versions on ordering.events
(placed, stock reserved, then 85% authorized, confirmed, shipped, delivered; 10% cancelled
for a declined payment; 5% cancelled out of stock), 1-3 lines each, orders interleaved.

Measured: `eventmart.readside.replay.replay(platform, "orders")` from its call to its
return (new generation, empty views, a consumer group reading both topics from the start,
each batch decoded and folded into the SQLite views with its inbox rows in one
transaction), as events per second. Repeated on the same log: each replay is a new
generation.

Reference (not a floor): the same log read by a bare consumer group (poll + commit, no
decoding, no handlers); the ratio is the share of the read speed the projection keeps.
"""

from __future__ import annotations

import random
from pathlib import Path

from bench.common import BenchResult, Context, Figure, Measure, Timer
from eventmart.contracts.basket import BasketCheckedOut
from eventmart.contracts.common import Address, OrderLine
from eventmart.contracts.ordering import (
    OrderCancelled,
    OrderConfirmed,
    OrderDelivered,
    OrderPaymentAuthorized,
    OrderPlaced,
    OrderShipped,
    OrderStockReserved,
)
from eventmart.platform.bus import TopicPartition
from eventmart.platform.infra import Platform
from eventmart.platform.messages import Message, OutgoingRecord, new_id
from eventmart.platform.messaging import MessageWriter
from eventmart.platform.settings import Settings
from eventmart.readside.replay import replay

NAME = "projection"
TITLE = "read-side replay"
PROJECTION = "orders"
WINDOW = 200  # orders in flight at once while the log is written

EM = "replay(orders)"
BARE = "bare consume"

ADDRESS = Address(name="Ada", line1="12 Analytical Row", city="London", postal_code="N1 7AA",
                  country="GB")  # fmt: skip


def _sizes(quick: bool) -> tuple[int, int]:
    """(orders, rounds)."""
    return (1_000, 1) if quick else (5_000, 3)


def order_life(rng: random.Random, customer_id: str) -> list[Message]:
    order_id = new_id()
    lines = [
        OrderLine(
            product_id=f"product-{p}",
            sku=f"SKU-{p:04d}",
            name=f"Product {p}",
            quantity=rng.randint(1, 3),
            unit_price_cents=rng.randint(500, 20_000),
        )
        for p in rng.sample(range(240), rng.randint(1, 3))
    ]
    total = sum(line.quantity * line.unit_price_cents for line in lines)
    ids = {"order_id": order_id, "customer_id": customer_id}
    out: list[Message] = [
        BasketCheckedOut(
            **ids, lines=lines, total_cents=total, shipping_address=ADDRESS, card_token="tok_visa"
        ),
        OrderPlaced(**ids, version=1, lines=lines, total_cents=total, shipping_address=ADDRESS),
    ]
    fate = rng.random()
    if fate < 0.05:
        return [*out, OrderCancelled(**ids, version=2, reason="OUT_OF_STOCK", detail="sold out")]
    out.append(OrderStockReserved(**ids, version=2))
    if fate < 0.15:
        return [*out, OrderCancelled(**ids, version=3, reason="PAYMENT_DECLINED")]
    shipment = f"shp-{order_id}"
    return [
        *out,
        OrderPaymentAuthorized(**ids, version=3, authorization_id=f"auth-{order_id}"),
        OrderConfirmed(**ids, version=4, total_cents=total),
        OrderShipped(**ids, version=5, shipment_id=shipment),
        OrderDelivered(**ids, version=6, shipment_id=shipment),
    ]


def write_log(platform: Platform, orders: int, seed: int = 7) -> int:
    """The shop's history on the bus, orders interleaved; the number of records."""
    rng = random.Random(seed)
    writer = MessageWriter(platform.codec, "bench")
    producer = platform.bus.producer()
    customers = [new_id() for _ in range(max(1, orders // 5))]
    written = 0
    try:
        for start in range(0, orders, WINDOW):
            lives = [
                order_life(rng, rng.choice(customers)) for _ in range(min(WINDOW, orders - start))
            ]
            batch: list[OutgoingRecord] = []
            step = 0
            while any(step < len(life) for life in lives):
                batch.extend(writer.record(life[step]) for life in lives if step < len(life))
                step += 1
            producer.send(batch)
            written += len(batch)
    finally:
        producer.close()
    return written


def _bare_consume(
    platform: Platform, topics: list[str], total: int, group: str
) -> tuple[float, float]:
    consumer = platform.bus.consumer(group, topics)
    seen = 0
    try:
        with Timer() as took:
            while seen < total:
                records = consumer.poll(500, 0.5)
                ends: dict[TopicPartition, int] = {}
                for r in records:
                    ends[r.tp] = r.offset + 1
                consumer.commit(ends)
                seen += len(records)
        return took.rates(total)
    finally:
        consumer.close()


def run(ctx: Context) -> BenchResult:
    orders, rounds = _sizes(ctx.quick)
    ctx.steps(1 + rounds * 2)
    folder: Path = ctx.dir("projection")
    settings = Settings(data_dir=folder, profile="embedded")  # type: ignore[call-arg]
    platform = Platform(settings)
    result = BenchResult(NAME, TITLE)
    replays = Measure(EM)
    bare = Measure(BARE)
    try:
        ctx.step(f"writing {orders:,} orders' events")
        total = write_log(platform, orders)
        topics = [BasketCheckedOut.topic, OrderPlaced.topic]
        for round_ in range(rounds):
            ctx.step(f"round {round_ + 1}/{rounds}: replay")
            with Timer() as took:
                done = replay(platform, PROJECTION)
            assert done.messages >= total, (done.messages, total)
            replays.add(took.rates(total))
            ctx.step(f"round {round_ + 1}/{rounds}: bare consume")
            bare.add(_bare_consume(platform, topics, total, f"bench-bare-{round_}"))
    finally:
        platform.close()
    result.figures.append(
        Figure(
            NAME,
            "catch-up, orders view",
            "events/s",
            replays,
            [bare],
        )
    )
    result.notes.append(
        f"{orders:,} orders, {total:,} events (BasketCheckedOut + Order* with versions, Avro), "
        f"{settings.partitions} partitions, consumer batches of {settings.consumer_batch_size}; "
        f"{rounds} replay(s) of the same log."
    )
    return result
