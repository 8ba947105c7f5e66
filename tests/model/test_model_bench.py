"""The scorer benchmark runs and writes its report (no timing is asserted: that is its job)."""

from __future__ import annotations

import json
from pathlib import Path

from streamrec.cli import main


def test_bench_scorer_writes_a_report(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    code = main(
        [
            "bench",
            "scorer",
            "--sizes",
            "300",
            "--batches",
            "1,4",
            "--repeats",
            "2",
            "--threads",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    engines = {(r["engine"], r["n_items"]) for r in report["results"]}
    assert engines == {("ort", 300), ("torch", 300)}
    for r in report["results"]:
        assert set(r["batches"]) == {"1", "4"} and r["peak_rss_mb"] >= r["rss_at_start_mb"] > 0
    ort = next(r for r in report["results"] if r["engine"] == "ort")
    assert ort["peak_rss_mb"] < 400  # the ORT process never loads torch
