"""Lazy public names for a package's ``__init__``: a name's module is imported on first use.

    _EXPORTS = {"Scorer": "model.scorer", ...}      # public name -> the module defining it
    __all__ = sorted(_EXPORTS)
    __getattr__, __dir__ = lazy(__name__, _EXPORTS)

Importing one module of a package then never imports the others, nor their dependencies
(torch, Faust, boto3 ...). Like ``streamrec.errors``, this module imports nothing of the project,
so every package may use it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from importlib import import_module


def lazy(package: str, exports: Mapping[str, str]
         ) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` for the names in ``exports``."""

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(exports[name]), name)
        setattr(sys.modules[package], name, value)  # found directly from now on
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__
