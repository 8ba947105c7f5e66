"""The one Kafka client-config factory: its defaults, the call site's overrides, and a scan of the
product code that keeps every client's configuration in it.

No broker: librdkafka builds clients without connecting (nothing listens on port 9), which is
enough to prove it accepts every setting.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from connectors.kafka.clients import (
    KAFKA_LOG,
    ClusterAccess,
    access,
    admin_config,
    check_on_first_use,
    consumer_config,
    faust_broker_settings,
    producer_config,
)

NOWHERE = "127.0.0.1:9"
QUIET = logging.getLogger("test-clients.librdkafka")  # librdkafka's connection errors land here
QUIET.propagate = False
QUIET.addHandler(logging.NullHandler())

REPO = Path(__file__).resolve().parents[3]
PRODUCT = ("connectors", "streams", "streamrec", "benchmarks")
FACTORY = "connectors/kafka/clients.py"
CLIENTS = {"Producer", "Consumer", "AdminClient"}
AIOKAFKA_CLIENTS = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient"}


def test_a_producer_is_idempotent_and_batching_by_default() -> None:
    assert producer_config(NOWHERE) == {
        "bootstrap.servers": NOWHERE,
        "logger": KAFKA_LOG,
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",
        "linger.ms": 5,
        "batch.num.messages": 10000,
        "queue.buffering.max.messages": 500_000,
        "queue.buffering.max.kbytes": 512 * 1024,
        "message.timeout.ms": 60_000,
    }


def test_a_consumer_commits_nothing_and_reads_committed_records_by_default() -> None:
    assert consumer_config(NOWHERE, "g") == {
        "bootstrap.servers": NOWHERE, "logger": KAFKA_LOG, "group.id": "g",
        "enable.auto.commit": False, "isolation.level": "read_committed"}


def test_an_admin_client_needs_only_the_access() -> None:
    assert admin_config(NOWHERE) == {"bootstrap.servers": NOWHERE, "logger": KAFKA_LOG}


def test_the_call_sites_overrides_win() -> None:
    assert producer_config(NOWHERE, **{"linger.ms": 1, "transactional.id": "t"})["linger.ms"] == 1
    consumer = consumer_config(NOWHERE, "g", **{"isolation.level": "read_uncommitted",
                                                "enable.auto.commit": True,
                                                "auto.offset.reset": "earliest"})
    assert (consumer["isolation.level"], consumer["enable.auto.commit"],
            consumer["auto.offset.reset"]) == ("read_uncommitted", True, "earliest")
    assert admin_config(NOWHERE, log_level=4)["log_level"] == 4
    assert consumer_config(NOWHERE, "g", logger=QUIET)["logger"] is QUIET


def test_each_config_is_a_fresh_dict() -> None:
    producer_config(NOWHERE)["linger.ms"] = 1000
    consumer_config(NOWHERE, "g")["isolation.level"] = "read_uncommitted"
    assert producer_config(NOWHERE)["linger.ms"] == 5
    assert consumer_config(NOWHERE, "g")["isolation.level"] == "read_committed"


def test_a_bootstrap_string_and_its_cluster_access_give_the_same_configs() -> None:
    servers = "127.0.0.1:9,127.0.0.2:9"
    given = ClusterAccess(servers)
    assert access(servers) == given and access(given) is given
    assert producer_config(servers, acks=1) == producer_config(given, acks=1)
    assert consumer_config(servers, "g") == consumer_config(given, "g")
    assert admin_config(servers) == admin_config(given)
    assert faust_broker_settings(servers) == faust_broker_settings(given)


def test_faust_gets_one_kafka_url_per_bootstrap_server() -> None:
    assert faust_broker_settings("a:1, b:2") == {"broker": ["kafka://a:1", "kafka://b:2"]}


def test_faust_accepts_the_broker_settings() -> None:
    import faust

    app = faust.App("test-clients", **faust_broker_settings("127.0.0.1:9,127.0.0.2:9"))
    assert [str(url) for url in app.conf.broker] == ["kafka://127.0.0.1:9", "kafka://127.0.0.2:9"]


def test_an_error_message_shows_the_bootstrap_servers_only() -> None:
    assert str(ClusterAccess(NOWHERE)) == NOWHERE
    assert f"cannot reach {ClusterAccess(NOWHERE)}" == f"cannot reach {NOWHERE}"


@pytest.mark.parametrize("key", ["bootstrap.servers", "metadata.broker.list",
                                 "security.protocol", "sasl.password", "ssl.ca.location"])
def test_a_call_site_cannot_change_how_the_cluster_is_reached(key: str) -> None:
    for build in (lambda: producer_config(NOWHERE, **{key: "x"}),
                  lambda: consumer_config(NOWHERE, "g", **{key: "x"}),
                  lambda: admin_config(NOWHERE, **{key: "x"})):
        with pytest.raises(ValueError, match=f"{key}.*belong to the cluster's access"):
            build()


@pytest.mark.parametrize("bootstrap", ["", " ", "a:1,", ",b:2"])
def test_missing_bootstrap_servers_are_refused_in_one_line(bootstrap: str) -> None:
    with pytest.raises(ValueError, match="not a list of host:port.*STREAMREC_PRIVATE_BOOTSTRAP"):
        producer_config(bootstrap)


def test_a_cluster_is_a_bootstrap_string_or_an_access() -> None:
    with pytest.raises(TypeError, match="not by a int"):
        access(9092)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="consumer group id"):
        consumer_config(NOWHERE, "")


def test_librdkafka_accepts_every_default() -> None:
    producer = Producer(producer_config(NOWHERE, logger=QUIET))
    assert producer.flush(0) == 0
    consumer = Consumer(consumer_config(NOWHERE, "test-clients", logger=QUIET))
    consumer.close()
    AdminClient(admin_config(NOWHERE, logger=QUIET))


# --- the scan: every client of the product gets its configuration here ---------------------


def product_modules() -> list[Path]:
    return sorted(p for top in PRODUCT for p in (REPO / top).rglob("*.py"))


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else ""


def hand_built(source: str) -> list[str]:
    """What in ``source`` configures a Kafka client other than through the factory, by line."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found += [(node.lineno, repr(text)) for text in ("bootstrap.servers", "kafka://")
                      if text in node.value]
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        if name in CLIENTS and not (len(node.args) == 1 and not node.keywords
                                    and isinstance(node.args[0], ast.Call)
                                    and _name(node.args[0].func).endswith("_config")):
            found.append((node.lineno, f"{name}(...) not given a *_config(...) call"))
        if name in AIOKAFKA_CLIENTS or any(k.arg == "bootstrap_servers" for k in node.keywords):
            found.append((node.lineno, "an aiokafka client configured by hand"))
        if name.endswith("App") and any(k.arg == "broker" for k in node.keywords):
            found.append((node.lineno, f"{name}(broker=...), not **faust_broker_settings(...)"))
    return [f"line {line}: {what}" for line, what in sorted(found)]


def test_the_scan_finds_each_kind_of_hand_built_config() -> None:
    source = '''
c = Consumer({"bootstrap.servers": b, "group.id": "g"})
p = Producer({**producer_config(b), "linger.ms": 1})
a = admin.AdminClient(conf)
app = faust.App("x", broker=f"kafka://{b}")
k = AIOKafkaConsumer("t", bootstrap_servers=b)
ok = Consumer(consumer_config(b, "g")), Producer(self._producer_config())
'''
    assert [line.split(":")[0] for line in hand_built(source)] == [
        "line 2", "line 2", "line 3", "line 4", "line 5", "line 5", "line 6"]


def test_no_product_module_configures_a_kafka_client_by_hand() -> None:
    modules = product_modules()
    assert len(modules) > 50, f"the scan found only {len(modules)} modules under {REPO}"
    offenders = {}
    for path in modules:
        where = path.relative_to(REPO).as_posix()
        if where != FACTORY:
            found = hand_built(path.read_text())
            if found:
                offenders[where] = found
    assert not offenders, (
        "Kafka client configuration built outside connectors/kafka/clients.py; use "
        f"producer_config, consumer_config, admin_config or faust_broker_settings: {offenders}")



def test_the_first_client_of_each_cluster_is_checked_once_when_asked() -> None:
    seen: list[str] = []
    check_on_first_use(lambda reached: seen.append(reached.bootstrap))
    try:
        for _ in range(3):
            producer_config("h:1")
            consumer_config("h:1", "g")
        admin_config("h:2")
    finally:
        check_on_first_use(None)
    producer_config("h:3")  # no longer checked
    assert seen == ["h:1", "h:2"]
