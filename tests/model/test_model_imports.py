"""The serving side must not pull in torch (2 s and 220 MB per worker)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module",
    ["model.scorer", "model.artifact", "model.tokens", "model.evaluate", "streamrec.cli.model"],
)
def test_module_does_not_import_torch(module: str) -> None:
    code = f"import {module}, sys; assert 'torch' not in sys.modules, 'torch imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_model_package_imports_no_kafka_or_faust() -> None:
    code = (
        "import model.scorer, model.pipeline, model.evaluate, sys; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('faust', 'aiokafka', 'confluent_kafka', 'kafka')]; assert not bad, bad"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
