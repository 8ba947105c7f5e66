"""Search tokens and keyed buckets."""

from __future__ import annotations

import pytest

from model.tokens import key_fingerprint, normalize_query, token_buckets


def test_normalize_lowercases_folds_unicode_and_splits_words() -> None:
    assert normalize_query("  ＲＥＤ Shoes, size-42!  Crème_brûlée ") == [
        "red",
        "shoes",
        "size",
        "42",
        "crème",
        "brûlée",
    ]
    assert normalize_query("Straße") == ["strasse"]
    assert normalize_query("?!") == []


def test_buckets_are_keyed_deterministic_and_in_range() -> None:
    tokens = [f"word{i}" for i in range(500)]
    a = token_buckets(tokens, b"key-1", 64)
    assert a == token_buckets(tokens, b"key-1", 64)
    assert all(1 <= b <= 64 for b in a)
    assert len(set(a)) > 50  # spread over the buckets
    assert a != token_buckets(tokens, b"key-2", 64)


def test_bucket_matches_hmac_sha256_definition() -> None:
    import hashlib
    import hmac

    digest = hmac.new(b"k", b"shoe", hashlib.sha256).digest()
    assert token_buckets(["shoe"], b"k", 1000) == [1 + int.from_bytes(digest[:8], "big") % 1000]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="n_buckets"):
        token_buckets(["a"], b"k", 0)
    with pytest.raises(ValueError, match="key is empty"):
        token_buckets(["a"], b"", 8)


def test_key_fingerprint_tells_keys_apart_without_showing_them() -> None:
    assert key_fingerprint(b"a") == key_fingerprint(b"a") != key_fingerprint(b"b")
    assert len(key_fingerprint(b"a")) == 16 and key_fingerprint(b"secret") != "secret"
