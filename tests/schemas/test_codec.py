"""The Avro codec: round trips, the wire header, and errors that name the field."""

from __future__ import annotations

import pytest

from schemas import DecodeError, EncodeError, default_codec
from schemas.codec import MAGIC, SCHEMA_DIR, load_schema_file, schema_fingerprint

EVENT = {
    "event_id": "e-1",
    "user_id": "u-1",
    "type": "click",
    "item_id": "i-9",
    "query": None,
    "session_id": "s-1",
    "timestamp": 1_700_000_000_123,
    "context": {"page": "home"},
}

SAMPLES = {
    "user_event": EVENT,
    "recommendation": {
        "user_id": "u-1",
        "items": [{"item_id": "a", "score": 1.5}, {"item_id": "b", "score": -0.25}],
        "model_version": "v1",
        "strategy": "model",
        "cause_event_id": "e-1",
        "cause_event_time": 1,
        "cause_ingest_time": 2,
        "produced_at": 3,
    },
    "dead_letter": {
        "topic": "events", "partition": 3, "offset": 42, "key": b"k", "value": b"\x00\xff",
        "stage": "decode", "reason": "bad", "error_type": "DecodeError", "failed_at": 5,
        "source": "worker", "truncated": False, "key_size": 1, "value_size": 2,
    },
    "training_sample": {
        "sample_id": "h1", "pseudonym": "p1", "key_version": 1, "type": "search",
        "item_id": None, "query_buckets": [3, 17], "time_bucket": 3_600_000, "seq": 7,
    },
    "model_release": {
        "version": "2026.1", "parent_version": None, "artifact_uri": "file:///m", "sha256": "ab",
        "signature": b"sig", "metrics": {"hr@10": 0.07}, "data_from": None, "data_until": 9,
        "created_at": 10,
    },
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_record_round_trips_exactly(name: str) -> None:
    codec = default_codec()
    data = codec.encode(name, SAMPLES[name])
    assert codec.decode(name, data) == SAMPLES[name]


def test_wire_header_is_single_object_encoding() -> None:
    data = default_codec().encode("user_event", EVENT)
    expected_fp = schema_fingerprint(load_schema_file(SCHEMA_DIR / "user_event.v1.avsc"))
    assert data[:2] == MAGIC
    assert data[2:10] == expected_fp
    # CRC-64-AVRO of the canonical form, checked against a from-scratch implementation.
    assert expected_fp == _crc64_avro_fingerprint(SCHEMA_DIR / "user_event.v1.avsc")


def _crc64_avro_fingerprint(path) -> bytes:
    import json

    from fastavro.schema import parse_schema, to_parsing_canonical_form

    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    canonical = to_parsing_canonical_form(parse_schema(json.loads(path.read_text())))
    for byte in canonical.encode():
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp.to_bytes(8, "little")


def test_defaults_fill_missing_optional_fields() -> None:
    codec = default_codec()
    minimal = {"event_id": "e", "user_id": "u", "type": "search", "query": "red shoes",
               "timestamp": 1}
    decoded = codec.decode("user_event", codec.encode("user_event", minimal))
    assert decoded["item_id"] is None and decoded["context"] == {}


@pytest.mark.parametrize(
    ("change", "field", "value"),
    [
        ({"item_id": 5}, "item_id", 5),
        ({"type": "purchase"}, "type", "purchase"),
        ({"timestamp": "yesterday"}, "timestamp", "yesterday"),
        ({"colour": "red"}, "colour", "red"),
    ],
)
def test_invalid_records_name_schema_field_and_value(change, field, value) -> None:
    with pytest.raises(EncodeError) as err:
        default_codec().encode("user_event", {**EVENT, **change})
    assert err.value.schema == "io.streamrec.UserEvent"
    assert err.value.field == field
    assert err.value.value == value
    assert field in str(err.value) and "UserEvent" in str(err.value)


def test_missing_required_field_is_named() -> None:
    record = {k: v for k, v in EVENT.items() if k != "user_id"}
    with pytest.raises(EncodeError, match="user_id.*required"):
        default_codec().encode("user_event", record)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (None, "no value"),
        (b"plain text", "not Avro single-object"),
        (MAGIC + b"\x00" * 8 + b"\x02", "does not know"),
    ],
)
def test_undecodable_bytes_raise_decode_error(data, match) -> None:
    with pytest.raises(DecodeError, match=match):
        default_codec().decode("user_event", data)


def test_truncated_body_raises_decode_error() -> None:
    data = default_codec().encode("user_event", EVENT)
    with pytest.raises(DecodeError, match="does not decode"):
        default_codec().decode("user_event", data[:-5])


def test_record_of_another_kind_is_refused() -> None:
    codec = default_codec()
    data = codec.encode("dead_letter", SAMPLES["dead_letter"])
    with pytest.raises(DecodeError, match="expected a io.streamrec.UserEvent"):
        codec.decode("user_event", data)


def test_every_field_of_every_schema_is_documented() -> None:
    import json

    def fields(schema):
        if isinstance(schema, dict):
            if schema.get("type") == "record":
                for f in schema["fields"]:
                    yield schema["name"], f
                    yield from fields(f["type"])
            for key in ("items", "values"):
                if key in schema:
                    yield from fields(schema[key])
        elif isinstance(schema, list):
            for s in schema:
                yield from fields(s)

    for path in SCHEMA_DIR.glob("*.avsc"):
        schema = json.loads(path.read_text())
        assert schema.get("doc") and schema.get("namespace") == "io.streamrec", path.name
        for record, f in fields(schema):
            assert f.get("doc"), f"{path.name}: {record}.{f['name']} has no doc"
