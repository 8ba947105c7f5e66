"""Schema evolution: new readers read old bytes, old readers read new bytes, breaks are caught."""

from __future__ import annotations

import copy
import json

import pytest

from schemas.codec import SCHEMA_DIR, Codec, load_schema_file
from schemas.evolution import full_compatibility_problems, problems

V1 = json.loads((SCHEMA_DIR / "user_event.v1.avsc").read_text())


def _v2_with_added_field() -> dict:
    v2 = copy.deepcopy(V1)
    v2["fields"].append({"name": "page_rank", "type": ["null", "int"], "default": None,
                         "doc": "Position of the clicked item on the page."})
    v2["fields"] = [f for f in v2["fields"] if f["name"] != "session_id"]  # had a default
    return v2


def _codec_with(tmp_path, *versions: dict) -> Codec:
    for i, schema in enumerate(versions, start=1):
        (tmp_path / f"user_event.v{i}.avsc").write_text(json.dumps(schema))
    return Codec(tmp_path)


EVENT = {"event_id": "e", "user_id": "u", "type": "click", "item_id": "i",
         "session_id": "s", "timestamp": 5, "context": {"k": "v"}}


def test_new_reader_reads_old_bytes(tmp_path) -> None:
    old_writer = _codec_with(_mk(tmp_path, "a"), V1)
    data = old_writer.encode("user_event", EVENT)
    new_reader = _codec_with(_mk(tmp_path, "b"), V1, _v2_with_added_field())
    decoded = new_reader.decode("user_event", data)
    assert decoded["page_rank"] is None  # filled from the default
    assert "session_id" not in decoded  # removed in v2
    assert decoded["item_id"] == "i" and decoded["context"] == {"k": "v"}


def test_old_reader_reads_new_bytes_once_it_knows_the_writer_schema(tmp_path) -> None:
    v2 = _v2_with_added_field()
    new_writer = _codec_with(_mk(tmp_path, "a"), V1, v2)
    record = {k: v for k, v in EVENT.items() if k != "session_id"} | {"page_rank": 3}
    data = new_writer.encode("user_event", record)
    # The old reader still writes v1; it has only learnt v2 for reading.
    old_reader = _codec_with(_mk(tmp_path, "b"), V1)
    v2_file = tmp_path / "a" / "user_event.v2.avsc"
    old_reader.learn_writer("user_event", 2, load_schema_file(v2_file))
    decoded = old_reader.decode("user_event", data)
    assert decoded["session_id"] is None  # v1's default for a field v2 dropped
    assert "page_rank" not in decoded  # unknown to v1, skipped
    assert decoded["item_id"] == "i"


def test_old_reader_without_the_new_schema_fails_clearly(tmp_path) -> None:
    new_writer = _codec_with(_mk(tmp_path, "a"), V1, _v2_with_added_field())
    data = new_writer.encode("user_event", {**{k: v for k, v in EVENT.items()
                                               if k != "session_id"}, "page_rank": 1})
    old_reader = _codec_with(_mk(tmp_path, "b"), V1)
    with pytest.raises(Exception, match="upgrade the readers before the writers"):
        old_reader.decode("user_event", data)


def _mk(tmp_path, name):
    path = tmp_path / name
    path.mkdir(exist_ok=True)
    return path


def test_compatible_change_has_no_problems() -> None:
    assert full_compatibility_problems(V1, _v2_with_added_field()) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda s: s["fields"].append({"name": "shop", "type": "string", "doc": "d"}),
         "new reads old: shop: reader needs it"),
        (lambda s: s["fields"].__setitem__(
            1, {**s["fields"][1], "type": "int"}), "type changed from string to int"),
        (lambda s: s["fields"][2]["type"].__setitem__("symbols", ["click"]),
         "lacks symbols ['search']"),
        (lambda s: s.__setitem__("name", "Event"), "renamed"),
        (lambda s: s["fields"].pop(0), "old reads new: event_id"),
    ],
)
def test_breaking_changes_are_caught(mutate, expected) -> None:
    v2 = copy.deepcopy(V1)
    mutate(v2)
    found = full_compatibility_problems(V1, v2)
    assert any(expected in p for p in found), found


def test_promotion_is_allowed_one_way_only() -> None:
    as_long = {"type": "record", "name": "R", "fields": [{"name": "n", "type": "long"}]}
    as_int = {"type": "record", "name": "R", "fields": [{"name": "n", "type": "int"}]}
    assert problems(as_int, as_long) == []
    assert problems(as_long, as_int) == ["n: type changed from long to int"]
