"""Every anonymisation rule, one at a time: scrubbing, pseudonyms, rotation, sampling, time."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from connectors.privacy.anonymizer import (
    MAX_QUERY_CHARS,
    AnonymizationError,
    Anonymizer,
    coarsen_time,
    query_tokens,
    scrub_text,
)
from model.tokens import normalize_query, token_buckets
from schemas import default_codec
from schemas.records import TrainingSample

SECRET = b"test-secret-1"
HOUR = 3_600_000
T0 = 1_700_000_123_456


def make(secret: bytes = SECRET, version: int = 1, rate: float = 1.0, **kw) -> Anonymizer:
    return Anonymizer(secret, version, n_buckets=4096, time_bucket_ms=HOUR, sample_rate=rate,
                      **kw)


def search(query: str, user: str = "alice@example.org", **kw) -> dict:
    return {"event_id": "e-1", "user_id": user, "type": "search", "item_id": None,
            "query": query, "session_id": "s-1", "timestamp": T0, "context": {}, **kw}


def click(item: str = "item-42", user: str = "user-1", **kw) -> dict:
    return {"event_id": "e-2", "user_id": user, "type": "click", "item_id": item, "query": None,
            "session_id": "sess-99", "timestamp": T0,
            "context": {"ip": "203.0.113.9", "user_agent": "Mozilla/5.0 (X11)"}, **kw}


@pytest.mark.parametrize(("text", "kind", "secret_part"), [
    ("mail john.doe+shop@example.co.uk now", "email", "john.doe"),
    ("ＪＯＨＮ＠ＥＸＡＭＰＬＥ．ＣＯＭ", "email", "john"),  # full-width: NFKC before the rules
    ("call +49 171 5550123 please", "phone", "5550123"),
    ("call +491715550123", "phone", "491715550123"),
    ("(555) 123-4567 red shoes", "phone", "4567"),
    ("0171/5550123", "phone", "0171"),
    ("card 4111 1111 1111 1111 exp", "card", "4111"),
    ("card 4111-1111-1111-1111", "card", "4111"),
    ("pay 4111111111111111", "card", "4111111111111111"),
    ("iban DE89 3704 0044 0532 0130 00 please", "iban", "3704"),
    ("GB29NWBK60161331926819", "iban", "nwbk"),
    ("see https://shop.example/p?user=bob x", "url", "bob"),
    ("www.bobs-page.de", "url", "bobs"),
    ("from 192.168.1.20.", "ip", "192"),
    ("v6 2001:db8::8a2e:370:7334 end", "ip", "8a2e"),
    ("order 1234567 x", "digits", "1234567"),
    ("sku99887766", "digits", "99887766"),
    ("follow @jane_doe", "handle", "jane"),
])
def test_each_class_of_personal_data_is_scrubbed(text: str, kind: str, secret_part: str) -> None:
    tokens = query_tokens(text)
    assert f"<{kind}>" in tokens
    assert not any(secret_part in tok for tok in tokens), tokens
    assert secret_part not in scrub_text(text).casefold()


@pytest.mark.parametrize("text", [
    "tv55 samsung smart tv", "size 40 42 44", "iphone 14 pro 256 gb", "meet at 12:30:45",
    "order 12345", "men's anti-age cream",
])
def test_ordinary_searches_keep_their_words(text: str) -> None:
    assert query_tokens(text) == normalize_query(text)


def test_words_around_personal_data_keep_their_order() -> None:
    assert query_tokens("Red SHOES for bob@x.org size 42") == [
        "red", "shoes", "for", "<email>", "size", "42"]


def test_overlong_queries_are_cut_at_a_word_boundary() -> None:
    tokens = query_tokens("word " * 100 + "anna@example.org")
    assert len(" ".join(tokens)) <= MAX_QUERY_CHARS and "<email>" not in tokens
    assert query_tokens("x" * 1000 + "@example.org") == []


def test_query_becomes_keyed_buckets_of_scrubbed_tokens_never_text() -> None:
    sample = make().anonymize(search("Shoes for bob@x.org"), seq=0)
    assert sample.query_buckets == token_buckets(["shoes", "for", "<email>"], SECRET, 4096)
    assert all(1 <= b <= 4096 for b in sample.query_buckets)
    assert "bob" not in repr(sample) and "shoes" not in repr(sample)


def test_class_token_hashes_apart_from_the_plain_word() -> None:
    anonymizer = make()
    assert anonymizer.query_buckets("bob@x.org") != anonymizer.query_buckets("email")


def test_sample_has_exactly_the_schema_fields_and_encodes() -> None:
    sample = make().anonymize(click(), seq=7)
    codec = default_codec()
    assert codec.read(TrainingSample, codec.write(sample)) == sample
    assert sample.item_id == "item-42" and sample.seq == 7 and sample.key_version == 1


def test_context_session_and_raw_ids_are_dropped() -> None:
    event = click(user="user-7@example.org")
    sample = make().anonymize(event, seq=0)
    text = repr(sample)
    for value in ("203.0.113.9", "Mozilla", "sess-99", "user-7", "e-2"):
        assert value not in text
    assert set(sample.to_record()) == {"sample_id", "pseudonym", "key_version", "type", "item_id",
                           "query_buckets", "time_bucket", "seq"}


def test_pseudonyms_are_stable_per_key_and_differ_across_keys() -> None:
    a, b = make(), make(b"another-secret")
    assert a.pseudonym("user-1") == make().pseudonym("user-1")
    assert a.pseudonym("user-1") != a.pseudonym("user-2")
    assert a.pseudonym("user-1") != b.pseudonym("user-1")
    assert len(a.pseudonym("user-1")) == 64


def test_sample_id_is_a_stable_keyed_hash_of_the_event_id() -> None:
    first, again = make().anonymize(click(), 0), make().anonymize(click(), 5)
    other_key = make(b"another-secret").anonymize(click(), 0)
    assert first.sample_id == again.sample_id != other_key.sample_id
    assert len(first.sample_id) == 32 and "e-2" not in first.sample_id


def test_rotation_uses_the_new_key_and_keeps_old_pseudonyms_findable() -> None:
    old = make(b"secret-v1", 1)
    new = make(b"secret-v2", 2, previous_secrets={1: b"secret-v1"})
    sample = new.anonymize(click(user="user-1"), seq=0)
    assert sample.key_version == 2
    assert sample.pseudonym == new.pseudonym("user-1") != old.pseudonym("user-1")
    assert new.pseudonyms_of("user-1") == {1: old.pseudonym("user-1"), 2: sample.pseudonym}
    # Samples made before the rotation still pass the mirror's check during the roll-out.
    assert new.violation(old.anonymize(click(user="user-1"), 0)) is None
    with pytest.raises(ValueError, match="both current and previous"):
        make(b"x", 1, previous_secrets={1: b"y"})


def test_sampling_is_deterministic_per_user_and_close_to_the_rate() -> None:
    anonymizer = make(rate=0.1)
    users = [f"user-{i}" for i in range(20_000)]
    chosen = [u for u in users if anonymizer.sampled(u)]
    assert abs(len(chosen) / len(users) - 0.1) < 0.01
    assert chosen == [u for u in users if make(rate=0.1).sampled(u)]
    assert make(rate=0.1).anonymize(click(user=chosen[0]), 0) is not None
    unchosen = next(u for u in users if not anonymizer.sampled(u))
    assert anonymizer.anonymize(click(user=unchosen), 0) is None
    assert all(make(rate=1.0).sampled(u) for u in users[:500])
    assert not any(make(rate=0.0).sampled(u) for u in users[:500])


def test_timestamps_are_coarsened_to_the_bucket() -> None:
    assert coarsen_time(T0, HOUR) == 1_699_999_200_000
    assert coarsen_time(1_699_999_200_000, HOUR) == 1_699_999_200_000
    sample = make().anonymize(click(), 0)
    assert sample.time_bucket == 1_699_999_200_000 and sample.time_bucket % HOUR == 0


@pytest.mark.parametrize("broken", [
    {"user_id": ""}, {"user_id": None}, {"event_id": ""}, {"type": "view"},
    {"timestamp": "2024-01-01"},
])
def test_malformed_events_raise_a_clear_error(broken: dict) -> None:
    with pytest.raises(AnonymizationError):
        make().anonymize(click(**broken), seq=0)
    with pytest.raises(AnonymizationError, match="seq"):
        make().anonymize(click(), seq=-1)


def test_violation_accepts_real_samples_and_names_each_broken_rule() -> None:
    anonymizer = make()
    good = anonymizer.anonymize(search("red shoes"), 0)
    assert anonymizer.violation(good) is None
    unkeyed = hashlib.sha256(b"alice@example.org").hexdigest()
    cases = {
        "pseudonym is not a keyed hash": {"pseudonym": unkeyed},
        "key_version 9": {"key_version": 9},
        "sample_id": {"sample_id": "e-1"},
        "query_buckets outside": {"query_buckets": [0]},
        "time_bucket": {"time_bucket": T0},
        "search sample carries an item_id": {"item_id": "i"},
    }
    for reason, change in cases.items():
        assert reason in anonymizer.violation(dataclasses.replace(good, **change))
    assert "pseudonym" in make(b"other").violation(good)


def test_remembered_pseudonyms_stay_right_and_the_memory_stays_bounded(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("connectors.privacy.anonymizer.PSEUDONYM_CACHE", 8)
    anonymizer, fresh = make(rate=0.5), make(rate=0.5)
    users = [f"user-{i}" for i in range(40)]
    for _ in range(3):  # each user comes back after the memory was emptied several times
        for user in users:
            sample = anonymizer.anonymize(click(user=user), 0)
            if fresh.sampled(user):
                assert sample is not None and sample.pseudonym == fresh.pseudonym(user)
            else:
                assert sample is None
            assert len(anonymizer._by_user) <= 8
    assert any(fresh.sampled(u) for u in users) and not all(fresh.sampled(u) for u in users)


def test_buckets_given_by_the_caller_are_the_ones_sampled() -> None:
    anonymizer = make()
    made = anonymizer.query_buckets("red shoes")
    assert anonymizer.anonymize(search("red shoes"), 0).query_buckets == made
    # Taken as given, not hashed again (a caller passes what query_buckets made).
    assert anonymizer.anonymize(search("red shoes"), 0, [7, 9]).query_buckets == [7, 9]
    assert anonymizer.anonymize(click(), 0, [5]).query_buckets == []  # not a search
