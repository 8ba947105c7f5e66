"""Kafka's exceptions become KafkaUnavailable naming what failed, where, and what to check."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from confluent_kafka import KafkaError, KafkaException

from connectors.kafka.errors import KafkaUnavailable, kafka_errors
from connectors.replay.ranges import partition_count
from streamrec.errors import ClusterUnreachable, ConfigError

REFUSED = KafkaError(KafkaError._TRANSPORT, "Connection refused")


@kafka_errors("read {topic!r} on {bootstrap}")
def read(bootstrap: str, topic: str = "events", fail: BaseException | None = None) -> str:
    if fail is not None:
        raise fail
    return "read"


def test_the_message_names_the_call_the_reason_and_the_check() -> None:
    assert read("h:1") == "read"
    with pytest.raises(KafkaUnavailable) as caught:
        read("h:1", fail=KafkaException(REFUSED))
    assert str(caught.value) == ("cannot read 'events' on h:1: Connection refused; is it running "
                                 "(streamrec broker status), and is that its address?")
    assert isinstance(caught.value, ClusterUnreachable) and caught.value.exit_code == 1
    assert caught.value.__cause__ is None  # one line: the librdkafka object adds nothing


def test_errors_that_say_what_to_do_already_pass_through() -> None:
    with pytest.raises(ConfigError, match="^wrong$"):
        read("h:1", fail=ConfigError("wrong"))


@dataclass
class _Job:
    bootstrap: str

    @kafka_errors("run the job on {self.bootstrap}", "is the public cluster up?")
    def run(self) -> None:
        raise KafkaException(REFUSED)


def test_methods_name_their_own_attributes() -> None:
    with pytest.raises(KafkaUnavailable, match=r"^cannot run the job on p:9: Connection refused; "
                                               r"is the public cluster up\?$"):
        _Job("p:9").run()


def test_an_unreachable_cluster_is_not_a_wrong_range() -> None:
    with pytest.raises(KafkaUnavailable, match="cannot list the topics of 127.0.0.1:1"):
        partition_count("127.0.0.1:1", "events", timeout_s=0.5)


def test_an_explained_error_is_still_kafkas_so_retries_see_it_and_it_is_not_explained_twice(
        ) -> None:
    @kafka_errors("mirror to {bootstrap}")
    def outer(bootstrap: str) -> str:
        return read(bootstrap, fail=KafkaException(REFUSED))

    with pytest.raises(KafkaUnavailable) as caught:
        outer("h:1")
    assert str(caught.value).startswith("cannot read 'events' on h:1: Connection refused")
    assert isinstance(caught.value, KafkaException) and caught.value.args[0] is REFUSED
