"""Kafka's exceptions as streamrec's: what could not be done, on which cluster, and what to check.

    @kafka_errors("scan the cluster {bootstrap}")
    def audit_cluster(bootstrap: str, ...) -> AuditReport: ...

A ``confluent_kafka.KafkaException`` that escapes a decorated function becomes
``KafkaUnavailable``, a ``ClusterUnreachable``: its message is the template formatted with the
function's arguments, librdkafka's reason and the check to make. Errors streamrec already
explains pass through unchanged. Code that raises at one place uses ``kafka_unavailable``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from confluent_kafka import KafkaError, KafkaException

from streamrec.errors import ClusterUnreachable

P = ParamSpec("P")
R = TypeVar("R")

IS_RUNNING = "is it running (streamrec broker status), and is that its address?"


class KafkaUnavailable(KafkaException, ClusterUnreachable):
    """A Kafka cluster did not answer, or refused, where streamrec needed it.

    Still a ``KafkaException`` whose ``args[0]`` is librdkafka's ``KafkaError`` (when there was
    one), so code that retries Kafka's errors (``connectors.kafka.retry``) retries this one too.
    """

    def __init__(self, message: str, error: KafkaError | None = None) -> None:
        super().__init__(error if error is not None else message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def reason(exc: KafkaException) -> str:
    """librdkafka's one-line reason (``Local: Broker transport failure``)."""
    err = exc.args[0] if exc.args else None
    return err.str() if isinstance(err, KafkaError) else str(exc)


def kafka_unavailable(exc: KafkaException, what: str, hint: str = IS_RUNNING) -> KafkaUnavailable:
    """The error to raise for ``exc``: ``cannot <what>: <reason>; <hint>``."""
    if isinstance(exc, KafkaUnavailable):
        return exc  # explained already, where the cluster was first found missing
    err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
    return KafkaUnavailable(f"cannot {what}: {reason(exc)}; {hint}", err)


def kafka_errors(what: str, hint: str = IS_RUNNING
                 ) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function: a KafkaException it raises becomes ``KafkaUnavailable``.

    ``what`` is formatted with the call's arguments by name (``"read {topic!r} on {bootstrap}"``,
    ``"{self.config.public_bootstrap}"``), only when an error is being described.
    """
    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(func)

        @functools.wraps(func)
        def translated(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return func(*args, **kwargs)
            except KafkaException as exc:
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                raise kafka_unavailable(exc, what.format(**bound.arguments), hint) from None

        return translated

    return decorate
