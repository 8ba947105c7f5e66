"""Which partition a user's events belong on, and what the worker does with one that is not.

streamrec keys every event by user id and partitions by murmur2 of the key, as Kafka's Java
client, aiokafka (Faust) and streamrec's own producers (librdkafka's ``murmur2_random``) do, so
that each user's events and state live in one partition. librdkafka's default partitioner
(``consistent_random``: CRC32), used by kcat, confluent-kafka, and the Go, .NET and Node clients
unless told otherwise, puts most keys on another partition. The worker checks every event: one
on the wrong partition is dead-lettered with the fix in its reason, or, with
``STREAMREC_MISROUTED=forward``, produced again to its right partition (and not applied where it
was read). Forwarding keeps the user's state whole but is at-least-once: a crash between the
forward and the commit forwards the event again, and the copy is applied again; the order of a
user's events is the order in which they reach the right partition.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2

CACHE_SIZE = 65_536  # keys remembered; emptied when full (users repeat within a stream)

FIX = ("produce events keyed by user id with the murmur2 partitioner (librdkafka: "
       "partitioner=murmur2_random, e.g. kcat -X partitioner=murmur2_random; Java and "
       "streamrec's SDK do so by default)")


class KeyPartitions:
    """The partition of a key among ``partitions``, as Kafka's Java client computes it."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._known: dict[bytes, int] = {}

    def of(self, key: bytes) -> int:
        known = self._known.get(key)
        if known is None:
            if len(self._known) >= CACHE_SIZE:
                self._known.clear()
            known = self._known[key] = (murmur2(key) & 0x7FFFFFFF) % self.partitions
        return known
