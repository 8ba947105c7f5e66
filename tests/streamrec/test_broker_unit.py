"""Pure parts of the local-cluster tooling (no JVM)."""

from __future__ import annotations

import base64

from streamrec.broker import LocalCluster, new_cluster_id


def test_cluster_ids_are_uuids_that_the_storage_tool_cannot_take_for_an_option() -> None:
    ids = [new_cluster_id() for _ in range(3000)]  # a plain random id starts with "-" 1 in 64
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
    assert len(set(ids)) == len(ids)


def test_broker_jvm_fixes_its_heap_and_uses_kafkas_collector_settings(tmp_path) -> None:
    cluster = LocalCluster("private", 19092, tmp_path, heap="768m")
    cmd = cluster._java_cmd("java", tmp_path / "lib", "kafka.Kafka")
    # The heap starts at its maximum: no resizing, and young collections sized for the heap.
    assert "-Xmx768m" in cmd and "-Xms768m" in cmd
    assert not [a for a in cmd if a.startswith("-Xms") and a != "-Xms768m"]
    for option in ("-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                   "-XX:InitiatingHeapOccupancyPercent=35"):
        assert option in cmd
    assert cmd[-1] == "kafka.Kafka" and cmd.index("-cp") < len(cmd) - 2
