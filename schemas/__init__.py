"""Avro schemas of every streamrec topic, their codec (fastavro only) and the fast writers."""

from schemas.codec import (
    Codec,
    DecodeError,
    EncodeError,
    SchemaError,
    SchemaVersion,
    default_codec,
)
from schemas.fastpath import RecommendationWriter, SampleWriter

__all__ = ["Codec", "DecodeError", "EncodeError", "RecommendationWriter", "SampleWriter",
           "SchemaError", "SchemaVersion", "default_codec"]
