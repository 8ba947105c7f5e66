"""Pure parts of the local-cluster tooling (no JVM)."""

from __future__ import annotations

import base64

from streamrec.broker import new_cluster_id


def test_cluster_ids_are_uuids_that_the_storage_tool_cannot_take_for_an_option() -> None:
    ids = [new_cluster_id() for _ in range(3000)]  # a plain random id starts with "-" 1 in 64
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
    assert len(set(ids)) == len(ids)
