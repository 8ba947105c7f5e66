"""Avro schemas of every streamrec topic and their codec (fastavro only)."""

from schemas.codec import (
    Codec,
    DecodeError,
    EncodeError,
    SchemaError,
    SchemaVersion,
    default_codec,
)

__all__ = ["Codec", "DecodeError", "EncodeError", "SchemaError", "SchemaVersion", "default_codec"]
