"""Every Faust, mode and aiokafka internal streamrec relies on exists in the installed versions.

``streams.faust_adapter`` is the only module that touches them; its ``INTERNALS`` names each
one. An upgrade that renames or removes one fails here, with the name, instead of failing the
worker at run time. The instances are real (an app, its consumer, a table store, an aiokafka
consumer), built without a broker.
"""

from __future__ import annotations

import asyncio
import importlib
import pathlib
import re
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaConsumer

from streams import faust_adapter
from streams.app import rocksdb_options

REPO = pathlib.Path(__file__).resolve().parents[2]


def _class(where: str) -> type:
    module, name = where.split(":")
    return getattr(importlib.import_module(module), name)


def _instances(tmp_path: pathlib.Path) -> list[Any]:
    """Real objects of the classes ``INTERNALS`` names, for attributes set in ``__init__``."""
    async def build() -> list[Any]:
        app = faust.App("adapter-check", broker="kafka://127.0.0.1:1", store="rocksdb://",
                        datadir=str(tmp_path))
        table = app.Table("t", partitions=1, options=rocksdb_options())
        consumer = app.consumer
        return [app, consumer, consumer._thread, table.data,
                AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")]

    return asyncio.run(build())


def test_every_internal_the_adapter_names_exists(tmp_path: pathlib.Path) -> None:
    instances = _instances(tmp_path)
    missing = []
    for where, attribute in faust_adapter.INTERNALS:
        cls = _class(where)
        if hasattr(cls, attribute):
            continue
        if not any(isinstance(obj, cls) and hasattr(obj, attribute) for obj in instances):
            missing.append(f"{where}.{attribute}")
    assert not missing, (
        f"the installed Faust/mode/aiokafka no longer have {', '.join(missing)}: "
        "streams/faust_adapter.py must be adapted to the new versions before upgrading")


def test_the_adapter_names_each_internal_it_uses() -> None:
    """Each ``._name`` the adapter reads off a Faust object is listed in INTERNALS."""
    source = (REPO / "streams" / "faust_adapter.py").read_text()
    body = source.split("# --- the app", 1)[1]
    used = set(re.findall(r"(?<![\w\"'])(?:\w+|\))\.(_[a-z]\w*)", body))
    listed = {attribute for _, attribute in faust_adapter.INTERNALS}
    assert used <= listed, f"used but not listed in INTERNALS: {sorted(used - listed)}"


@pytest.mark.parametrize("package", ["streams", "streamrec", "connectors"])
def test_no_other_module_touches_a_faust_internal(package: str) -> None:
    """Outside the adapter, no module reads a private attribute of a Faust or aiokafka object."""
    names = {attribute for _, attribute in faust_adapter.INTERNALS}
    offenders = []
    for path in sorted((REPO / package).rglob("*.py")):
        if path.name == "faust_adapter.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for name in re.findall(r"(?<!self)(?<!cls)\.(_[a-z]\w*)", line):
                if name in names:
                    offenders.append(f"{path.relative_to(REPO)}:{number}: {name}")
    assert not offenders, "Faust internals outside streams/faust_adapter.py:\n" + "\n".join(
        offenders)
