"""The latency floor of the machine: events in, a forwarder that does nothing, records out.

The same load generator and brokers as the worker's latency runs, but the "worker" is a bare
librdkafka loop in its own process that copies each event to an output topic at once (keeping
its Kafka timestamp), and a bare consumer measures the time from that timestamp to receipt.
Whatever a worker adds (batching, state, scoring, output) comes on top of these figures.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

from connectors.kafka.clients import consumer_config, producer_config
from connectors.kafka.topics import TopicSpec, ensure_topics


def _forward(bootstrap: str, source: str, target: str, partitions: int, stop) -> None:  # noqa: ANN001
    consumer = Consumer(consumer_config(bootstrap, f"floor-{source}"))
    consumer.assign([TopicPartition(source, p, 0) for p in range(partitions)])
    producer = Producer(producer_config(bootstrap, **{"linger.ms": 1}))  # as the worker's
    while not stop.is_set():
        first = consumer.poll(0.1)
        if first is None:
            continue
        for msg in [first, *consumer.consume(1000, timeout=0)]:
            if msg.error() is None:
                producer.produce(target, msg.value(), msg.key(), msg.partition(),
                                 timestamp=msg.timestamp()[1])
        producer.poll(0)
    producer.flush(10)
    consumer.close()


def floor_latency(bootstrap: str, partitions: int, events: list[dict], rate: float,
                  warm_up: list[dict]) -> dict:
    """Percentiles (ms) of produce→receive through the do-nothing forwarder at ``rate``."""
    from benchmarks.workload import produce_all, summary

    tag = uuid.uuid4().hex[:8]
    source, target = f"bench-floor-in-{tag}", f"bench-floor-out-{tag}"
    ensure_topics(bootstrap, [TopicSpec(source, partitions), TopicSpec(target, partitions)])
    stop = mp.get_context("spawn").Event()
    forwarder = mp.get_context("spawn").Process(
        target=_forward, args=(bootstrap, source, target, partitions, stop), daemon=True)
    forwarder.start()
    latencies: list[float] = []
    measuring = threading.Event()
    done = threading.Event()

    def collect() -> None:
        consumer = Consumer(consumer_config(bootstrap, f"floor-sub-{tag}"))
        consumer.assign([TopicPartition(target, p, 0) for p in range(partitions)])
        while not done.is_set():
            msg = consumer.poll(0.1)
            if msg is not None and msg.error() is None and measuring.is_set():
                latencies.append(time.time() * 1000 - msg.timestamp()[1])
        consumer.close()

    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    try:
        produce_all(bootstrap, source, warm_up, rate)  # not measured, as for the worker
        time.sleep(3)
        measuring.set()
        produce_all(bootstrap, source, events, rate)
        time.sleep(3)
    finally:
        done.set()
        reader.join(10)
        stop.set()
        forwarder.join(15)
    return summary(latencies, len(events))


if __name__ == "__main__":  # a quick look: python -m benchmarks.transit_floor [RATE]
    import json
    import sys

    from benchmarks.workload import interleaved_events, warm_up_events
    from streamrec.settings import Settings

    settings = Settings()
    rate = float(sys.argv[1]) if len(sys.argv) > 1 else 1000.0
    print(json.dumps(floor_latency(settings.private_servers, settings.partitions,
                                   interleaved_events(int(rate * 20), seed=11), rate,
                                   warm_up_events()), indent=2))
