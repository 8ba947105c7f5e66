"""Turn a user event into a TrainingSample: the only record kind that may cross to the public cloud.

    anonymizer = Anonymizer(secret, key_version=1, n_buckets=4096, time_bucket_ms=3_600_000,
                            sample_rate=1.0)
    sample = anonymizer.anonymize(event_record, seq=17)  # a TrainingSample, or None

What happens to each field of a ``UserEvent``:

- ``user_id`` becomes a pseudonym: HMAC-SHA256 under a key derived from the secret, plus a short
  keyed check tag, so the mirror can tell a real pseudonym from a plain (unkeyed) hash of an id.
- ``query`` is NFKC-normalised, scrubbed of personal data (URLs, e-mails, IBANs, IP addresses, card
  and phone numbers, digit runs of 6+, @handles: each becomes a class token such as ``<email>``),
  tokenized and mapped to keyed hash buckets with ``model.tokens`` -- never sent as text.
- ``item_id`` passes through: item ids are the shop's catalogue ids, not personal data, and the
  model needs them.
- ``timestamp`` is coarsened down to a multiple of ``time_bucket_ms``; ``seq`` (the position of the
  event in the user's stream, kept by the worker) preserves order within a bucket.
- ``event_id`` becomes ``sample_id``, a keyed hash: stable, so anonymising an event twice gives the
  same sample (idempotent downstream).
- ``session_id`` and ``context`` (IP address, user agent, page, ...) are dropped.

Key rotation: construct the Anonymizer with the new secret and a higher ``key_version`` and keep the
old secrets in ``previous_secrets``. New samples carry the new pseudonym and version, so the trainer
sees a rotated user as a new user (their history restarts); token buckets follow the current secret,
as the scorer's do, so searches from before a rotation hash differently and the trainer should only
use the query buckets of the newest ``key_version``. The old secrets stay for two jobs: the mirror
still accepts samples made with them while a rotation rolls out, and ``pseudonyms_of`` finds every
pseudonym of a user (e.g. to honour an erasure request). Drop an old secret once no retained sample
uses it; the sampled set of users also changes with the key.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

from model.tokens import normalize_query, token_buckets
from schemas.records import TrainingSample
from streamrec.errors import BadData

PSEUDONYM_RE = re.compile(r"^[0-9a-f]{64}$")
SAMPLE_ID_RE = re.compile(r"^[0-9a-f]{32}$")
CLASS_TOKENS = ("url", "email", "iban", "ip", "card", "phone", "digits", "handle")
_CLASS_SPLIT = re.compile(r"<(" + "|".join(CLASS_TOKENS) + r")>")
_DIGEST_LEN, _TAG_LEN = 24, 8  # bytes of the pseudonym's hash and of its check tag
# Searches are short; the cap bounds the regexes' cost on hostile input (some are quadratic).
MAX_QUERY_CHARS = 256
PSEUDONYM_CACHE = 1 << 16  # users whose pseudonym an Anonymizer keeps (about 15 MB)
_UP_TO_LAST_SPACE = re.compile(r"(.*)\s", re.S)


class AnonymizationError(BadData, ValueError):
    """An event that cannot be anonymised (a required field is missing or of the wrong type)."""


def coarsen_time(timestamp_ms: int, bucket_ms: int) -> int:
    """The start of the ``bucket_ms``-wide time bucket holding ``timestamp_ms``."""
    return timestamp_ms - timestamp_ms % bucket_ms


def _digit_count(text: str) -> int:
    return sum(ch.isdigit() for ch in text)


def _iban(match: re.Match[str]) -> str:
    """Replace an IBAN-like run; its trailing letters (the next words) go back into the text."""
    text = match.group()
    end = max(i for i, ch in enumerate(text) if ch.isdigit()) + 1
    body, tail = text[:end], text[end:]
    alnum = sum(ch.isalnum() for ch in body)
    if _digit_count(body) < 10 or not 15 <= alnum <= 34:
        return text
    return f" <iban> {tail}"


def _ipv6(match: re.Match[str]) -> str:
    try:
        ipaddress.IPv6Address(match.group())
    except ValueError:
        return match.group()  # e.g. a time such as 12:30:45
    return " <ip> "


def _phone(match: re.Match[str]) -> str:
    return " <phone> " if 7 <= _digit_count(match.group()) <= 15 else match.group()


# What each rule cannot match without: most searches have no digit, '@' or ':', and checking that
# once is much cheaper than running the rules (replacements never add any of these).
_DIGIT, _AT, _COLON = re.compile(r"\d"), re.compile("@"), re.compile(":")
_LINK = re.compile(r"://|www\.", re.I)

# Applied in this order: a URL may hold an e-mail or an IP, an IP looks like a phone number, a card
# number holds a long digit run. Each rule: what it needs, its pattern, what to put in its place.
_Rule = tuple[re.Pattern[str], re.Pattern[str], str | Callable[[re.Match[str]], str]]
_RULES: tuple[_Rule, ...] = (
    (_LINK, re.compile(r"(?:\b(?:https?|ftp)://|\bwww\.)[^\s<>\"']+", re.I), " <url> "),
    (_AT, re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)+"), " <email> "),
    (_DIGIT, re.compile(r"\b[a-z]{2}\d{2}(?:[ -]?[a-z0-9]){11,30}\b", re.I), _iban),
    (_DIGIT, re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\d|\.\d)"), " <ip> "),
    (_COLON, re.compile(r"(?<![\w:])(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?![\w:])", re.I),
     _ipv6),
    (_DIGIT, re.compile(r"(?<!\w)\d(?:[ -]?\d){12,18}(?!\w)"), " <card> "),
    (_DIGIT, re.compile(r"(?<![\w+])\+\d{7,15}(?!\w)"), " <phone> "),
    (_DIGIT, re.compile(
        r"(?<![\w+])(?:\+\s?)?\(?\d{1,5}\)?(?:[ ./-]{1,2}\(?\d{1,8}\)?){1,6}(?!\w)"), _phone),
    (_DIGIT, re.compile(r"\d{6,}"), " <digits> "),
    (_AT, re.compile(r"(?<![\w@])@[\w.]{2,30}"), " <handle> "),
)


def scrub_text(text: str) -> str:
    """NFKC-normalise ``text`` and replace personal data by class tokens such as ``<email>``.

    Text past ``MAX_QUERY_CHARS`` is dropped, from the last whitespace before the cut, so no
    half of a personal datum (which the rules might no longer recognise) is left over.
    """
    text = unicodedata.normalize("NFKC", text)
    if len(text) > MAX_QUERY_CHARS:
        # One character more, so a word that ends right at the cap is kept.
        kept = _UP_TO_LAST_SPACE.match(text[:MAX_QUERY_CHARS + 1])
        text = kept.group(1) if kept else ""
    present = {needs: needs.search(text) is not None for needs in (_DIGIT, _AT, _COLON, _LINK)}
    for needs, pattern, replacement in _RULES:
        if present[needs]:
            text = pattern.sub(replacement, text)
    return text


def query_tokens(text: str) -> list[str]:
    """The tokens of a search after scrubbing: words as ``normalize_query`` makes them, and the
    class tokens (``<email>``, ...) of what was removed, in the order they appeared."""
    parts = _CLASS_SPLIT.split(scrub_text(text))
    tokens: list[str] = []
    # re.split with one group alternates: text, class name, text, class name, ..., text.
    for i, part in enumerate(parts):
        tokens.extend([f"<{part}>"] if i % 2 else normalize_query(part))
    return tokens


class PseudonymKey:
    """One version of the pseudonym secret and the keyed hashes made with it."""

    def __init__(self, secret: bytes, version: int) -> None:
        if not secret:
            raise ValueError("the pseudonym secret is empty: set STREAMREC_PSEUDONYM_SECRET")
        self.version = version
        # Separate subkeys per use, so no keyed hash of one kind can be replayed as another.
        self._user_key = _subkey(secret, b"pseudonym")
        self._tag_key = _subkey(secret, b"pseudonym-tag")
        self._sample_key = _subkey(secret, b"sample-id")

    def digest(self, user_id: str) -> bytes:
        """The keyed hash of a user id (the secret part of its pseudonym)."""
        return hmac.digest(self._user_key, user_id.encode("utf-8"), "sha256")[:_DIGEST_LEN]

    def pseudonym(self, digest: bytes) -> str:
        """The pseudonym of a digest: hex of the digest followed by its keyed check tag."""
        return (digest + self._tag(digest)).hex()

    def made(self, pseudonym: str) -> bool:
        """Whether ``pseudonym`` was made with this key (its check tag verifies)."""
        if not PSEUDONYM_RE.match(pseudonym):
            return False
        raw = bytes.fromhex(pseudonym)
        return hmac.compare_digest(raw[_DIGEST_LEN:], self._tag(raw[:_DIGEST_LEN]))

    def sample_id(self, event_id: str) -> str:
        """The keyed hash of an event id: 128 bits in hex."""
        return hmac.digest(self._sample_key, event_id.encode("utf-8"), "sha256")[:16].hex()

    def _tag(self, digest: bytes) -> bytes:
        return hmac.digest(self._tag_key, digest, "sha256")[:_TAG_LEN]


def _subkey(secret: bytes, purpose: bytes) -> bytes:
    return hmac.digest(secret, b"streamrec/" + purpose, "sha256")


class Anonymizer:
    """Holds the keys and the rules; ``anonymize`` turns one event record into a sample or None."""

    def __init__(self, secret: bytes, key_version: int, n_buckets: int, time_bucket_ms: int,
                 sample_rate: float, previous_secrets: Mapping[int, bytes] | None = None) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be within [0, 1], got {sample_rate}")
        if time_bucket_ms < 1 or n_buckets < 1:
            raise ValueError("time_bucket_ms and n_buckets must be positive")
        previous = dict(previous_secrets or {})
        if key_version in previous:
            raise ValueError(f"key version {key_version} is both current and previous")
        self.key = PseudonymKey(secret, key_version)
        self.keys = {v: PseudonymKey(s, v) for v, s in previous.items()} | {key_version: self.key}
        self._token_key = secret  # the scorer hashes query tokens with the same secret
        self.n_buckets = n_buckets
        self.time_bucket_ms = time_bucket_ms
        # A user is sampled when the first 64 bits of their digest fall below this threshold.
        self._threshold = int(sample_rate * 2**64)
        # user id -> pseudonym ("" when not sampled): two of an event's three keyed hashes, the
        # same for every event of a user. Bounded, emptied when full (a worker sees few users
        # at a time and many events of each).
        self._by_user: dict[str, str] = {}

    def pseudonym(self, user_id: str) -> str:
        """The current pseudonym of a user id."""
        return self.key.pseudonym(self.key.digest(user_id))

    def pseudonyms_of(self, user_id: str) -> dict[int, str]:
        """The user's pseudonym under every key version held (current and previous)."""
        return {v: k.pseudonym(k.digest(user_id)) for v, k in sorted(self.keys.items())}

    def sampled(self, user_id: str) -> bool:
        """Whether this user's events become samples (deterministic per user and key)."""
        return self._sampled(self.key.digest(user_id))

    def _sampled(self, digest: bytes) -> bool:
        return int.from_bytes(digest[:8], "big") < self._threshold

    def query_buckets(self, query: str) -> list[int]:
        """Keyed hash buckets in ``[1, n_buckets]`` of a search's scrubbed tokens."""
        return token_buckets(query_tokens(query), self._token_key, self.n_buckets)

    def anonymize(self, event: Mapping[str, Any], seq: int,
                  buckets: list[int] | None = None) -> TrainingSample | None:
        """The TrainingSample record of a decoded UserEvent, or None when its user is not sampled.

        ``seq`` is the event's position in its user's stream (the caller keeps the counter).
        ``buckets``: the search's ``query_buckets`` when the caller has them already.
        """
        user_id, event_id, kind = (event.get(f) for f in ("user_id", "event_id", "type"))
        timestamp = event.get("timestamp")
        if not (isinstance(user_id, str) and user_id and isinstance(event_id, str) and event_id):
            raise AnonymizationError("event needs non-empty string user_id and event_id")
        if kind not in ("click", "search") or not isinstance(timestamp, int):
            raise AnonymizationError(f"event needs type click|search and an int timestamp, "
                                     f"got type={kind!r} timestamp={type(timestamp).__name__}")
        if not isinstance(seq, int) or seq < 0:
            raise AnonymizationError(f"seq must be a non-negative int, got {seq!r}")
        pseudonym = self._by_user.get(user_id)
        if pseudonym is None:
            digest = self.key.digest(user_id)
            pseudonym = self.key.pseudonym(digest) if self._sampled(digest) else ""
            if len(self._by_user) >= PSEUDONYM_CACHE:
                self._by_user.clear()
            self._by_user[user_id] = pseudonym
        if not pseudonym:
            return None
        query = event.get("query") if kind == "search" else None
        if not isinstance(query, str):
            buckets = []
        elif buckets is None:
            buckets = self.query_buckets(query)
        return TrainingSample(
            sample_id=self.key.sample_id(event_id),
            pseudonym=pseudonym,
            key_version=self.key.version,
            type=kind,
            item_id=event.get("item_id") if kind == "click" else None,
            query_buckets=buckets,
            time_bucket=coarsen_time(timestamp, self.time_bucket_ms),
            seq=seq,
        )

    def violation(self, sample: TrainingSample) -> str | None:
        """Why a TrainingSample may not leave the private cloud, or None if it may."""
        key = self.keys.get(sample.key_version)
        if key is None:
            return f"key_version {sample.key_version} is not a known pseudonym key version"
        if not key.made(sample.pseudonym):
            return "pseudonym is not a keyed hash made with the pseudonym secret"
        if not SAMPLE_ID_RE.match(sample.sample_id):
            return "sample_id is not a 32-hex-digit keyed hash"
        if any(not 1 <= b <= self.n_buckets for b in sample.query_buckets):
            return f"query_buckets outside 1..{self.n_buckets}"
        if sample.time_bucket % self.time_bucket_ms:
            return f"time_bucket is not coarsened to a multiple of {self.time_bucket_ms} ms"
        if sample.type == "search" and sample.item_id is not None:
            return "a search sample carries an item_id"
        if sample.type == "click" and sample.query_buckets:
            return "a click sample carries query_buckets"
        return None
