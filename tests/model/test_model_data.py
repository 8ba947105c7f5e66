"""Dataset readers, vocabulary, leave-one-out split, training batches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from model_testkit import KEY, write_events

from model.batches import make_batch, pad_left
from model.data import DataError, QueryHashing, Vocabulary, leave_one_out, read_interactions
from model.tokens import normalize_query, token_buckets


def test_s3rec_and_bert4rec_versions_of_beauty_read_as_published(datasets: Path) -> None:
    s3 = read_interactions(datasets / "amazon-beauty-s3rec" / "Beauty.txt", "s3rec")
    assert len(s3.users) == 22363 and sum(map(len, s3.sequences)) == 198502
    assert len(Vocabulary.build(s3.sequences)) == 12101
    b4 = read_interactions(datasets / "amazon-beauty-bert4rec" / "beauty.txt", "bert4rec")
    assert len(b4.users) == 40226 and sum(map(len, b4.sequences)) == 353962
    assert len(Vocabulary.build(b4.sequences)) == 54542


def test_events_give_clicks_in_order_with_the_searches_before_them(tmp_path: Path) -> None:
    hashing = QueryHashing(KEY, 64, max_tokens=3)
    data = read_interactions(write_events(tmp_path / "e.jsonl"), "events", hashing)
    assert data.users[0] == "u0" and data.sequences[0] == [f"sku-{t}" for t in range(6)]
    expected = token_buckets(normalize_query("Red Shoe 0"), KEY, 64)
    assert data.queries is not None
    assert data.queries[0][:2] == [[], []] and all(q == expected for q in data.queries[0][2:])
    assert data.time_range == ("2023-11-14T22:13:20.002000+00:00", "2024-01-02T03:04:05+00:00")
    # Without a hashing key the search text is not used at all.
    assert read_interactions(tmp_path / "e.jsonl", "events").queries is None


def test_events_may_carry_buckets_instead_of_text(tmp_path: Path) -> None:
    lines = [
        {"type": "search", "user_id": "a", "query_buckets": [5, 9]},
        {"type": "click", "user_id": "a", "item_id": "x"},
    ]
    path = tmp_path / "anon.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in lines))
    assert read_interactions(path, "events", QueryHashing(KEY, 16)).queries == [[[5, 9]]]


@pytest.mark.parametrize(
    ("fmt", "text", "message"),
    [
        ("s3rec", "1 2 3\nonlyuser\n", ":2: expected 'user item item"),
        ("bert4rec", "1 2\n1 2 3\n", ":2: expected 'user item'"),
        ("events", '{"type": "click", "user_id": "a"}\n', ":1: click without 'item_id'"),
        ("events", "not json\n", ":1: not JSON"),
        ("events", '{"type": "view", "user_id": "a"}\n', "type 'click' or 'search'"),
        (
            "events",
            '{"type":"click","user_id":"a","item_id":"x","timestamp":"soon"}\n',
            "neither ISO-8601 nor epoch",
        ),
    ],
)
def test_bad_lines_are_reported_with_their_line(tmp_path: Path, fmt, text, message) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        read_interactions(path, fmt, QueryHashing(KEY, 16))


def test_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_interactions(tmp_path / "nope.txt", "s3rec")


def test_vocabulary_keeps_first_appearance_order_and_drops_unknown_ids() -> None:
    vocab = Vocabulary.build([["b", "a"], ["a", "c"]])
    assert vocab.item_ids == ["", "b", "a", "c"] and len(vocab) == 3
    assert vocab.encode(["c", "zz", "b"]).tolist() == [3, 1]


def test_leave_one_out_holds_back_the_last_two_items() -> None:
    seqs = [np.array([1, 2, 3, 4]), np.array([5, 6]), np.array([7, 8, 9])]
    split = leave_one_out(seqs, None)
    assert [s.tolist() for s in split.train] == [[1, 2], [5, 6], [7]]
    assert split.val_users.tolist() == [0, 2]
    assert split.val_targets.tolist() == [3, 8] and split.test_targets.tolist() == [4, 9]
    assert [s.tolist() for s in split.test_inputs()] == [[1, 2, 3], [7, 8]]


def test_batches_predict_the_next_item_at_every_position() -> None:
    seqs = [np.array([1, 2, 3, 4]), np.array([5, 6])]
    queries = [[[], [7], [7], [7, 8]], [[], [9]]]
    batch = make_batch([0, 1], seqs, queries, max_len=5, max_query_tokens=2)
    assert batch.inputs.tolist() == [[1, 2, 3], [0, 0, 5]]
    assert batch.targets.tolist() == [[2, 3, 4], [0, 0, 6]]
    assert batch.queries is not None
    assert batch.queries[0].tolist() == [[0, 7], [0, 7], [7, 8]]
    assert batch.queries[1, 2].tolist() == [0, 9]
    assert pad_left([np.array([1, 2, 3])], 2).tolist() == [[2, 3]]
