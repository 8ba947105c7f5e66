"""Each typed record has its schema's fields, round-trips through the codec, and the fast
writer's bytes for it are the codec's."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from connectors.kafka.dead_letters import dead_letter
from schemas import default_codec
from schemas.codec import SCHEMA_DIR
from schemas.fastpath import RecommendationWriter
from schemas.records import DeadLetter, Recommendation

CODEC = default_codec()
REC = Recommendation("u1", [("i9", 0.5), ("i3", 0.25)], "v3", "model", "e7",
                     1_700_000_000_000, 1_700_000_000_050, 1_700_000_000_060)


@pytest.mark.parametrize("kind", [Recommendation, DeadLetter])
def test_a_record_class_has_the_fields_of_the_newest_schema_in_order(kind) -> None:
    newest = sorted(SCHEMA_DIR.glob(f"{kind.SCHEMA}.v*.avsc"))[-1]
    schema = [f["name"] for f in json.loads(newest.read_text())["fields"]]
    assert [f.name for f in fields(kind)] == schema


def test_a_recommendation_round_trips_and_the_fast_writer_writes_the_codec_bytes() -> None:
    data = CODEC.write(REC)
    assert CODEC.read(Recommendation, data) == REC
    assert RecommendationWriter(CODEC).write(REC) == data
    assert CODEC.decode("recommendation", data)["items"] == [
        {"item_id": "i9", "score": 0.5}, {"item_id": "i3", "score": 0.25}]


def test_a_dead_letter_round_trips() -> None:
    letter = dead_letter(stage="decode", reason="not Avro", error_type="DecodeError",
                         value=b"\x00junk", key=b"u1", topic="events", partition=2, offset=9)
    assert CODEC.read(DeadLetter, CODEC.write(letter)) == letter
    assert letter.value_size == 5 and not letter.truncated
