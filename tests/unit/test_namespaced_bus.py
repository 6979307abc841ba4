"""A namespace on a shared log: each shop sees only its own topics and groups, under their
plain names, while the log holds them prefixed."""

from __future__ import annotations

from pathlib import Path

from eventmart.platform.bus import TopicPartition
from eventmart.platform.bus.namespaced import NamespacedBus
from eventmart.platform.bus.sqlite_log import SqliteLog
from eventmart.platform.messages import OutgoingRecord


def test_two_namespaces_share_a_log_without_seeing_each_other(tmp_path: Path) -> None:
    log = SqliteLog(tmp_path / "bus.db", default_partitions=2, poll_interval_s=0.01)
    a, b = NamespacedBus(log, "shop_a"), NamespacedBus(log, "shop_b")
    a.producer().send([OutgoingRecord("orders", "k1", b"from a")])
    b.producer().send([OutgoingRecord("orders", "k1", b"from b")])
    assert set(log.topics()) == {"shop_a.orders", "shop_b.orders"}
    assert a.topics() == {"orders": 2}

    consumer = a.consumer("readers", ["orders"])
    records = []
    for _ in range(50):
        records += consumer.poll(10, 0.05)
        if records:
            break
    assert [(r.topic, r.value) for r in records] == [("orders", b"from a")]
    tp = records[0].tp
    assert tp == TopicPartition("orders", tp.partition)
    assert tp in consumer.assignment()
    consumer.pause([tp])
    assert consumer.paused() == {tp}
    consumer.resume([tp])
    consumer.commit({tp: records[0].offset + 1})

    assert a.groups() == ["readers"] and b.groups() == []
    lags = a.lag("readers")
    assert {(x.group, x.topic) for x in lags} == {("readers", "orders")}
    assert sum(x.lag for x in lags) == 0
    assert [r.value for r in b.read("orders", tp.partition, 0, 10)] == [b"from b"]
    consumer.close()
    log.close()
