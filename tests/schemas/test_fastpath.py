"""The hand-written Recommendation writer must produce exactly the codec's bytes."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from schemas import Codec, SchemaError, default_codec
from schemas.codec import SCHEMA_DIR
from schemas.fastpath import RecommendationWriter, SampleWriter, zigzag_varint
from schemas.records import TrainingSample


def _text(rng: random.Random) -> str:
    alphabet = "abcXYZ019-_ äöü€漢字🙂\x00"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))


def _record(rng: random.Random) -> dict:
    edge_longs = [0, 1, -1, 63, 64, -64, -65, 2**31, -(2**31), 2**63 - 1, -(2**63)]

    def long() -> int:
        return rng.choice(edge_longs) if rng.random() < 0.3 else rng.randrange(-(2**62), 2**62)

    items = [{"item_id": _text(rng), "score": rng.uniform(-1e6, 1e6) if rng.random() < 0.5
              else rng.choice([0.0, -0.0, 1.5, 3.4e38, -3.4e38, 1e-45])}
             for _ in range(rng.choice([0, 1, 2, 20, 100, 300]))]
    return {"user_id": _text(rng), "items": items, "model_version": _text(rng),
            "strategy": rng.choice(["model", "popularity"]), "cause_event_id": _text(rng),
            "cause_event_time": long(), "cause_ingest_time": long(), "produced_at": long()}


def test_bytes_equal_the_codec_on_random_records() -> None:
    codec = default_codec()
    writer = RecommendationWriter(codec)
    rng = random.Random(20261122)
    for _ in range(2000):
        record = _record(rng)
        assert writer.encode(record) == codec.encode("recommendation", record)
        assert codec.decode("recommendation", writer.encode(record))["items"] == [
            {"item_id": i["item_id"], "score": pytest.approx(i["score"], rel=1e-6, abs=1e-38)}
            for i in record["items"]
        ]


def test_missing_strategy_takes_the_schema_default() -> None:
    codec = default_codec()
    record = _record(random.Random(1))
    del record["strategy"]
    assert RecommendationWriter(codec).encode(record) == codec.encode("recommendation", record)


@pytest.mark.parametrize("value", [0, -1, 1, 127, 128, -129, 8191, -8192, 8192, -8193, 2**63 - 1,
                                   -(2**63)])
def test_zigzag_varint_matches_the_avro_spec(value: int) -> None:
    zigzag = (value << 1) ^ (value >> 63)
    decoded, shift = 0, 0
    for byte in zigzag_varint(value):
        decoded |= (byte & 0x7F) << shift
        shift += 7
    assert decoded == zigzag
    assert all(b & 0x80 for b in zigzag_varint(value)[:-1])
    assert not zigzag_varint(value)[-1] & 0x80


def test_a_newer_recommendation_schema_is_refused(tmp_path: Path) -> None:
    for path in SCHEMA_DIR.glob("*.avsc"):
        shutil.copy(path, tmp_path / path.name)
    v1 = (SCHEMA_DIR / "recommendation.v1.avsc").read_text()
    v2 = v1.replace('"name": "produced_at"', '"name": "produced_at_ms"')
    assert v2 != v1
    (tmp_path / "recommendation.v2.avsc").write_text(v2)
    with pytest.raises(SchemaError, match="update schemas/fastpath.py"):
        RecommendationWriter(Codec(tmp_path))


def _sample(rng: random.Random) -> dict:
    kind = rng.choice(["click", "search"])
    return {"sample_id": _text(rng), "pseudonym": _text(rng),
            "key_version": rng.choice([0, 1, 7, -1, 2**31 - 1, -(2**31)]), "type": kind,
            "item_id": _text(rng) if kind == "click" and rng.random() < 0.9 else None,
            "query_buckets": [rng.choice([0, 1, 63, 64, 4095, 2**31 - 1, -(2**31)])
                              for _ in range(rng.choice([0, 1, 3, 32]))],
            "time_bucket": rng.choice([0, 1_700_000_000_000, -1, 2**63 - 1, -(2**63)]),
            "seq": rng.choice([0, 1, 64, 2**40])}


def test_sample_bytes_equal_the_codec_on_random_and_real_samples() -> None:
    from connectors.privacy.anonymizer import Anonymizer

    codec = default_codec()
    writer = SampleWriter(codec)
    rng = random.Random(20261123)
    for _ in range(2000):
        sample = _sample(rng)
        assert writer.encode(sample) == codec.encode("training_sample", sample)
    anonymizer = Anonymizer(b"unit", 1, n_buckets=4096, time_bucket_ms=3_600_000,
                            sample_rate=1.0)
    for i, (kind, extra) in enumerate([("click", {"item_id": "sku-1"}),
                                       ("search", {"query": "red shoes size 42"})]):
        event = {"event_id": f"e{i}", "user_id": "u1", "type": kind, "timestamp": 1_700_000_123_456,
                 "item_id": None, "query": None, **extra}
        sample = anonymizer.anonymize(event, i)
        assert writer.write(sample) == codec.write(sample)
        assert codec.read(TrainingSample, writer.write(sample)) == sample


@pytest.mark.parametrize(("field", "value"), [("type", "view"), ("key_version", 2**31),
                                              ("query_buckets", [2**31])])
def test_a_sample_field_that_does_not_fit_is_refused(field: str, value: object) -> None:
    sample = dict(_sample(random.Random(3)), **{field: value})
    with pytest.raises(ValueError):
        SampleWriter(default_codec()).encode(sample)


def test_a_newer_sample_schema_is_refused(tmp_path: Path) -> None:
    for path in SCHEMA_DIR.glob("*.avsc"):
        shutil.copy(path, tmp_path / path.name)
    v1 = (SCHEMA_DIR / "training_sample.v1.avsc").read_text()
    (tmp_path / "training_sample.v2.avsc").write_text(v1.replace('"name": "seq"', '"name": "n"'))
    with pytest.raises(SchemaError, match="update schemas/fastpath.py"):
        SampleWriter(Codec(tmp_path))
