"""Search-query tokens and their keyed hash buckets (stdlib only: the anonymizer reuses this).

The bucket of a token is ``1 + HMAC-SHA256(key, token) mod n_buckets``, so only a holder of the key
can compute which bucket a word falls in; 0 is left free as the padding bucket.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Iterable

# Word characters of any script; apostrophes and hyphens split words, as most product searches
# treat "men's" and "anti-age" like their parts.
_WORD = re.compile(r"\w+", re.UNICODE)


def normalize_query(text: str) -> list[str]:
    """Split a search query into lowercase, NFKC-normalised word tokens (underscores split too)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return [tok for part in _WORD.findall(folded) for tok in part.split("_") if tok]


def token_buckets(tokens: Iterable[str], key: bytes, n_buckets: int) -> list[int]:
    """Map each token to its keyed bucket in ``[1, n_buckets]`` (HMAC-SHA256 of the UTF-8 token)."""
    if n_buckets < 1:
        raise ValueError(f"n_buckets must be at least 1, got {n_buckets}")
    if not key:
        raise ValueError("the token key is empty: set a secret key (STREAMREC_PSEUDONYM_SECRET)")
    out = []
    for token in tokens:
        digest = hmac.new(key, token.encode("utf-8"), hashlib.sha256).digest()
        out.append(1 + int.from_bytes(digest[:8], "big") % n_buckets)
    return out


def key_fingerprint(key: bytes) -> str:
    """A short public id of a token key: tells two keys apart without revealing either."""
    return hmac.new(key, b"streamrec token key fingerprint", hashlib.sha256).hexdigest()[:16]
