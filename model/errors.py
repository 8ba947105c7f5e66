"""Errors of the model package; the CLI prints their message and exits non-zero."""

from __future__ import annotations

from streamrec.errors import StreamrecError


class ModelError(StreamrecError):
    """Something in model/ failed in a way the user can fix."""


class ArtifactError(ModelError):
    """A model artifact that is missing, incomplete, altered or of an unknown format."""


class ScorerError(ModelError):
    """The scorer cannot run the artifact as asked (device, inputs, sizes)."""
