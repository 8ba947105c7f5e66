"""Encode and decode streamrec records with fastavro, in Avro single-object encoding.

Wire format of every value on every streamrec topic (Avro specification, "Single object encoding")::

    C3 01 | 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema | Avro binary body

The fingerprint tells a reader which schema wrote the bytes, so a reader that knows several versions
of a record resolves old bytes into its own (newest) version. Schemas are parsed once, at import.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import fastavro
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form
from fastavro.validation import validate

from streamrec.errors import BadData

MAGIC = b"\xc3\x01"
HEADER_LEN = 10
SCHEMA_DIR = Path(__file__).with_name("avro")
_FILE_NAME = re.compile(r"^(?P<name>[a-z_]+)\.v(?P<version>\d+)\.avsc$")

T = TypeVar("T")


class SchemaError(BadData):
    """Base of the errors this package raises."""


class EncodeError(SchemaError):
    """A record does not fit its schema; names the schema, the field and the value."""

    def __init__(self, schema: str, field_path: str, value: Any, detail: str = "") -> None:
        self.schema, self.field, self.value = schema, field_path, value
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        msg = f"{schema}: field '{field_path}' has invalid value {shown}"
        super().__init__(f"{msg} ({detail})" if detail else msg)


class DecodeError(SchemaError):
    """Bytes that are not a streamrec record of the expected kind."""


@dataclass(frozen=True)
class SchemaVersion:
    """One parsed version of one record schema."""

    name: str  # short name, e.g. "user_event"
    version: int
    parsed: dict[str, Any] = field(repr=False, hash=False, compare=False)
    fingerprint: bytes = b""

    @property
    def full_name(self) -> str:
        return str(self.parsed["name"])


def load_schema_file(path: Path) -> dict[str, Any]:
    """Parse one ``.avsc`` file (fastavro's parsed form), logical types read as plain values."""
    return dict(parse_schema(_without_logical_types(json.loads(path.read_text()))))


def _without_logical_types(schema: Any) -> Any:
    """Drop ``logicalType`` annotations: timestamps stay epoch-ms ints in Python.

    They document meaning in the files; the wire bytes and the fingerprint (computed over the
    parsing canonical form, which has no logical types) are the same either way.
    """
    if isinstance(schema, list):
        return [_without_logical_types(s) for s in schema]
    if isinstance(schema, dict):
        return {k: _without_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    return schema


def schema_fingerprint(parsed: dict[str, Any]) -> bytes:
    """The 8-byte CRC-64-AVRO fingerprint of a parsed schema, as written on the wire."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


class Codec:
    """Writes the newest version of each record and reads every version it knows."""

    def __init__(self, schema_dir: Path = SCHEMA_DIR) -> None:
        self._latest: dict[str, SchemaVersion] = {}
        self._by_fingerprint: dict[bytes, SchemaVersion] = {}
        for path in sorted(schema_dir.glob("*.avsc")):
            match = _FILE_NAME.match(path.name)
            if not match:
                raise SchemaError(f"{path}: schema files are named <record>.v<N>.avsc")
            self.add(match["name"], int(match["version"]), load_schema_file(path))

    def add(self, name: str, version: int, parsed: dict[str, Any]) -> SchemaVersion:
        """Register a schema version; the highest version of a name is the one written."""
        sv = SchemaVersion(name, version, parsed, schema_fingerprint(parsed))
        self._by_fingerprint[sv.fingerprint] = sv
        if name not in self._latest or self._latest[name].version < version:
            self._latest[name] = sv
        return sv

    def learn_writer(self, name: str, version: int, parsed: dict[str, Any]) -> SchemaVersion:
        """Make a newer writer's schema readable without writing it (readers upgrade first)."""
        sv = SchemaVersion(name, version, parsed, schema_fingerprint(parsed))
        self._by_fingerprint[sv.fingerprint] = sv
        return sv

    def latest(self, name: str) -> SchemaVersion:
        """The version of ``name`` this codec writes."""
        try:
            return self._latest[name]
        except KeyError:
            raise SchemaError(f"no schema named {name!r}; known: {sorted(self._latest)}") from None

    def encode(self, name: str, record: dict[str, Any]) -> bytes:
        """Encode ``record`` with the newest ``name`` schema; EncodeError if it does not fit."""
        sv = self.latest(name)
        buf = io.BytesIO()
        buf.write(MAGIC)
        buf.write(sv.fingerprint)
        try:
            fastavro.schemaless_writer(buf, sv.parsed, record, strict_allow_default=True)
        except Exception as exc:  # noqa: BLE001 - fastavro raises many types; we name the field
            raise self._explain(sv, record, exc) from exc
        return buf.getvalue()

    def decode(self, name: str, data: bytes | None) -> dict[str, Any]:
        """Decode bytes of any known version of ``name`` into the newest version's shape."""
        reader = self.latest(name)
        writer = self.writer_of(data)
        if writer.full_name != reader.full_name:
            raise DecodeError(
                f"expected a {reader.full_name} record but the bytes hold a {writer.full_name}"
            )
        try:
            return dict(
                fastavro.schemaless_reader(
                    io.BytesIO(memoryview(data)[HEADER_LEN:]),  # type: ignore[index]
                    writer.parsed,
                    reader.parsed,
                )
            )
        except Exception as exc:  # noqa: BLE001 - truncated or corrupt body
            raise DecodeError(
                f"{reader.full_name}: body does not decode with writer schema "
                f"v{writer.version}: {type(exc).__name__}: {exc}"
            ) from exc

    def write(self, record: Any) -> bytes:
        """Encode a typed record (``schemas.records``) with the newest version of its schema."""
        return self.encode(record.SCHEMA, record.to_record())

    def read(self, kind: type[T], data: bytes | None) -> T:
        """Decode bytes into the typed record ``kind`` (e.g. ``Recommendation``)."""
        return kind.from_record(self.decode(kind.SCHEMA, data))  # type: ignore[attr-defined]

    def writer_of(self, data: bytes | None) -> SchemaVersion:
        """The schema version that wrote ``data`` (from its header)."""
        if data is None:
            raise DecodeError("record has no value (null / tombstone)")
        if len(data) < HEADER_LEN or data[:2] != MAGIC:
            head = bytes(data[:12]).hex(" ")
            raise DecodeError(
                "not Avro single-object encoded (expected header c3 01 + 8-byte fingerprint, "
                f"got {len(data)} bytes starting {head!r})"
            )
        fp = bytes(data[2:HEADER_LEN])
        try:
            return self._by_fingerprint[fp]
        except KeyError:
            raise DecodeError(
                f"written with a schema this streamrec does not know (fingerprint {fp.hex()}); "
                "upgrade the readers before the writers"
            ) from None

    def _explain(self, sv: SchemaVersion, record: Any, exc: Exception) -> EncodeError:
        """Turn a failed write into an EncodeError naming the first bad field."""
        if not isinstance(record, dict):
            return EncodeError(sv.full_name, "<record>", record, "expected a mapping")
        missing_or_extra = _unknown_fields(sv.parsed, record)
        if missing_or_extra:
            path, detail = missing_or_extra
            return EncodeError(sv.full_name, path, record.get(path), detail)
        try:
            validate(record, sv.parsed, raise_errors=True)
        except fastavro.validation.ValidationError as verr:
            first = verr.errors[0]
            path = str(first.field or "<record>").removeprefix(sv.full_name + ".")
            declared = {f["name"]: f["type"] for f in sv.parsed["fields"]}.get(path, first.schema)
            return EncodeError(sv.full_name, path, first.datum, f"expected {_type_name(declared)}")
        return EncodeError(sv.full_name, "<record>", record, f"{type(exc).__name__}: {exc}")


def _unknown_fields(parsed: dict[str, Any], record: dict[str, Any]) -> tuple[str, str] | None:
    names = {f["name"] for f in parsed["fields"]}
    for key in record:
        if key not in names:
            return key, "no such field in the schema"
    for f in parsed["fields"]:
        if f["name"] not in record and "default" not in f:
            return f["name"], "required field is missing"
    return None


def _type_name(schema: Any) -> str:
    if isinstance(schema, list):
        return " or ".join(_type_name(s) for s in schema)
    if isinstance(schema, dict):
        if schema.get("type") in ("array", "map"):
            return f"{schema['type']} of {_type_name(schema.get('items', schema.get('values')))}"
        return str(schema.get("name") or schema.get("type"))
    return str(schema)


_DEFAULT: Codec | None = None


def default_codec() -> Codec:
    """The process-wide codec over the shipped schemas (parsed on first use)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Codec()
    return _DEFAULT
