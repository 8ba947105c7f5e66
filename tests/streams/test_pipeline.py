"""The worker's batch logic without Kafka: dead letters, idempotent state, coalescing, fallback."""

from __future__ import annotations

import pytest

from schemas import default_codec
from streams.metrics import WorkerMetrics
from streams.pipeline import BatchProcessor, Incoming
from streams.popularity import DecayedPopularity
from streams.user_state import UserState

CODEC = default_codec()


class DictStore:
    """User states in a dict (the worker uses a Faust table)."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, user, msg):
        return self.data.get(user)

    def put(self, user, value, msg):
        self.data[user] = value


def _event(user: str, n: int, item: str | None = None, query: str | None = None) -> dict:
    return {"event_id": f"{user}-{n}", "user_id": user,
            "type": "search" if query else "click", "item_id": None if query else item,
            "query": query, "session_id": None, "timestamp": 1_700_000_000_000 + n,
            "context": {}}


def _msg(event: dict | None, offset: int, raw: bytes | None = None, key: bytes | None = None,
         partition: int = 0) -> Incoming:
    value = raw if raw is not None else CODEC.encode("user_event", event)
    key = key if key is not None else (event["user_id"].encode() if event else b"k")
    return Incoming(key, value, "events", partition, offset, 1_800_000_000_000 + offset)


def _processor() -> BatchProcessor:
    return BatchProcessor(CODEC, top_k=3, history_len=10, buckets=lambda q: [len(q)],
                          popularity=DecayedPopularity())


def test_bad_records_are_dead_lettered_with_origin_and_reason() -> None:
    good = _event("u1", 0, item="a")
    batch = [
        _msg(None, 5, raw=b"garbage", key=b"u9"),
        _msg(good, 6),
        _msg(_event("u2", 1, item="b"), 7, key=b"someone-else"),
    ]
    result = _processor().apply(batch, DictStore())
    assert result.applied == 1 and list(result.pending) == ["u1"]
    decode, validate = result.dead_letters
    assert (decode.stage, decode.offset, decode.value, decode.key) == (
        "decode", 5, b"garbage", b"u9")
    assert "not Avro" in decode.reason and decode.error_type == "DecodeError"
    assert validate.stage == "validate" and "keyed by user id" in validate.reason
    CODEC.write(decode)  # the records fit the DeadLetter schema


def test_a_user_with_several_events_in_a_batch_gets_one_request_for_the_last() -> None:
    store, proc = DictStore(), _processor()
    batch = [_msg(_event("u1", i, item=f"i{i}"), i) for i in range(4)]
    batch.append(_msg(_event("u1", 4, query="red shoes"), 4))
    result = proc.apply(batch, store)
    assert list(result.pending) == ["u1"]
    pending = result.pending["u1"]
    assert pending.cause["event_id"] == "u1-4"
    assert pending.state.items == ["i0", "i1", "i2", "i3"]
    assert pending.state.query_buckets == [len("red shoes")]
    assert UserState.from_bytes(store.data["u1"]) == pending.state


def test_replayed_batch_changes_no_state() -> None:
    store, proc = DictStore(), _processor()
    batch = [_msg(_event(f"u{i % 3}", i, item=f"i{i}"), i) for i in range(12)]
    proc.apply(batch, store)
    snapshot = dict(store.data)
    again = proc.apply(batch, store)
    assert again.applied == 0 and again.duplicates == 12
    assert store.data == snapshot


def test_without_a_model_users_get_stream_popularity_minus_their_own_items() -> None:
    store, proc = DictStore(), _processor()
    clicks = ["a", "a", "a", "b", "b", "c", "d"]
    batch = [_msg(_event(f"v{n}", n, item=item), n) for n, item in enumerate(clicks)]
    result = proc.apply(batch, store)
    records = proc.recommend(list(result.pending.values()), scorer=None)
    by_user = {r.user_id: r for r in records}
    # v0 clicked a; d and c have one click each, d the more recent one.
    assert [item for item, _ in by_user["v0"].items] == ["b", "d", "c"]
    assert [item for item, _ in by_user["v6"].items] == ["a", "b", "c"]  # v6 clicked d
    assert {r.strategy for r in records} == {"popularity"}
    rec = by_user["v3"]
    assert rec.cause_event_id == "v3-3" and rec.cause_ingest_time == 1_800_000_000_003
    CODEC.write(rec)


@pytest.mark.parametrize(("cores", "threads"), [(1, 1), (2, 1), (8, 7)])
def test_the_scorer_leaves_one_core_to_the_event_loop(monkeypatch: pytest.MonkeyPatch,
                                                     cores: int, threads: int) -> None:
    from streams import scoring

    monkeypatch.setattr(scoring.os, "sched_getaffinity", lambda _: set(range(cores)),
                        raising=False)
    assert scoring.default_threads() == threads
    holder = scoring.ScorerHolder(None, "cpu", WorkerMetrics())
    assert holder.threads == threads
    assert scoring.ScorerHolder(None, "cpu", WorkerMetrics(), threads=3).threads == 3


def _reasons(result) -> list[tuple[str, str]]:
    return [(d.stage, d.reason) for d in result.dead_letters]


@pytest.mark.parametrize(("change", "expected"), [
    ({"event_id": ""}, "empty event_id"),
    ({"item_id": "x" * 300_000}, "'item_id' is 300,000 characters long; at most 256"),
    ({"user_id": "u" * 257}, "'user_id' is 257 characters long"),
    ({"session_id": "s" * 1000}, "'session_id' is 1,000 characters long"),
    ({"context": {f"k{i}": "v" for i in range(40)}}, "'context' has 40 entries"),
    ({"context": {"page": "p" * 5000}}, "'context.page' is 5,000 characters long"),
])
def test_records_beyond_the_documented_limits_are_dead_lettered_and_change_nothing(
        change, expected) -> None:
    store, proc = DictStore(), _processor()
    bad = dict(_event("u1", 1, item="a"), **change)
    result = proc.apply([_msg(bad, 1, key=bad["user_id"].encode()), _msg(_event("u2", 2, "b"), 2)],
                        store)
    assert [s for s, _ in _reasons(result)] == ["validate"]
    assert expected in result.dead_letters[0].reason
    assert list(result.pending) == ["u2"] and set(store.data) == {"u2"}
    CODEC.write(result.dead_letters[0])


def test_a_record_without_a_key_is_dead_lettered_not_applied() -> None:
    event = _event("u1", 0, item="a")
    msg = Incoming(None, CODEC.encode("user_event", event), "events", 0, 0, 1)
    result = _processor().apply([msg], DictStore())
    assert result.applied == 0 and not result.pending
    assert result.dead_letters[0].stage == "validate"
    assert "no key" in result.dead_letters[0].reason


def test_a_step_that_raises_dead_letters_that_record_only() -> None:
    def anonymize(event, seq, buckets):
        if event["item_id"] == "boom":
            raise ValueError("cannot anonymise this one")
        return {"seq": seq}

    store = DictStore()
    proc = BatchProcessor(CODEC, top_k=3, history_len=10, buckets=lambda q: [len(q)],
                          popularity=DecayedPopularity(), anonymize=anonymize)
    batch = [_msg(_event("u1", 0, "a"), 0), _msg(_event("u1", 1, "boom"), 1),
             _msg(_event("u1", 2, "c"), 2)]
    result = proc.apply(batch, store)
    assert _reasons(result) == [("process", "cannot anonymise this one")]
    assert result.dead_letters[0].error_type == "ValueError"
    assert UserState.from_bytes(store.data["u1"]).items == ["a", "c"]
    assert result.applied == 2 and [s["seq"] for s in result.samples] == [0, 2]
    assert [m.offset for m in result.sampled] == [0, 2]


def test_older_events_read_again_get_no_recommendation() -> None:
    store, proc = DictStore(), _processor()
    batch = [_msg(_event("u1", i, f"i{i}"), i) for i in range(3)]
    proc.apply(batch, store)
    # A rebalance re-reads the partition from an older offset: nothing is recommended for the
    # events before the state's last one, and the last one is recommended again.
    again = proc.apply(batch[:2], store)
    assert again.duplicates == 2 and not again.pending
    last = proc.apply(batch, store)
    assert last.pending["u1"].cause["event_id"] == "u1-2"


def test_a_dead_letter_always_fits_one_message() -> None:
    from connectors.kafka.dead_letters import MAX_KEPT_BYTES, dead_letter

    value, key = b"v" * 1_100_000, b"k" * 900_000
    letter = dead_letter(stage="decode", reason="r" * 10_000, error_type="DecodeError",
                         value=value, key=key, topic="events", partition=1, offset=7)
    assert letter.truncated and (letter.value_size, letter.key_size) == (1_100_000, 900_000)
    assert letter.value == value[:MAX_KEPT_BYTES] and letter.key == key[:MAX_KEPT_BYTES]
    assert len(CODEC.write(letter)) < 1_000_000 - 1024
    small = dead_letter(stage="decode", reason="r", error_type="E", value=b"ab", key=None)
    assert not small.truncated and (small.value, small.value_size) == (b"ab", 2)
    assert small.key_size == -1


def test_a_user_state_record_stays_under_its_bound() -> None:
    from streams.user_state import MAX_STATE_BYTES

    state = UserState()
    for n in range(2000):  # a history setting far above the default, with the longest ids
        state.apply({"type": "click", "item_id": "\u00e9" * 256, "event_id": str(n),
                     "timestamp": n}, 0, n, [], 2000)
    data = state.to_bytes()
    assert len(data) <= MAX_STATE_BYTES
    assert UserState.from_bytes(data).items[-1] == "\u00e9" * 256  # the newest ones are kept


def test_an_event_on_another_partition_than_its_keys_is_dead_lettered_or_forwarded() -> None:
    from streams.partitioning import KeyPartitions

    parts = KeyPartitions(4)
    event = _event("u1", 0, item="a")
    right = parts.of(b"u1")
    wrong = (right + 1) % 4
    store = DictStore()
    strict = BatchProcessor(CODEC, top_k=3, history_len=10, buckets=lambda q: [len(q)],
                            popularity=DecayedPopularity(), partitions=parts)
    result = strict.apply([_msg(event, 0, partition=wrong), _msg(event, 1, partition=right)],
                          store)
    assert result.applied == 1 and not result.forwards
    (letter,) = result.dead_letters
    assert letter.partition == wrong and letter.stage == "validate"
    assert letter.reason.startswith(f"misrouted: user 'u1' belongs on partition {right}, "
                                       f"not {wrong}") and "murmur2_random" in letter.reason
    forwarding = BatchProcessor(CODEC, top_k=3, history_len=10, buckets=lambda q: [len(q)],
                                popularity=DecayedPopularity(), partitions=parts,
                                forward_misrouted=True)
    result = forwarding.apply([_msg(event, 5, partition=wrong)], DictStore())
    assert result.applied == 0 and not result.dead_letters and not result.pending
    assert [(m.offset, p) for m, p in result.forwards] == [(5, right)]


def test_key_partitions_match_kafkas_java_client() -> None:
    from streams.partitioning import KeyPartitions

    # murmur2 of these keys as Kafka's Java client computes it (its own unit test's vectors);
    # the partition is toPositive(hash) % partitions, as in its default partitioner.
    java = {"21": -973932308, "foobar": -790332482, "a-little-bit-long-string": -985981536,
            "a-little-bit-longer-string": -1486304829, "abc": 479470107,
            "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971}
    for count in (4, 7, 12):
        parts = KeyPartitions(count)
        for key, hashed in java.items():
            assert parts.of(key.encode()) == (hashed & 0x7FFFFFFF) % count, (key, count)
