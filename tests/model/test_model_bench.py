"""The scorer benchmark runs and writes its report (no timing is asserted: that is its job)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.artifact import Artifact
from model.providers import cuda_unavailable_reason
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


def test_bench_devices_compares_lists() -> None:
    import importlib.util

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_devices.py"
    spec = importlib.util.spec_from_file_location("bench_devices", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    gpu = [[("a", 1.0), ("b", 0.5)], [("c", 2.0), ("d", 1.0)]]
    cpu = [[("a", 1.0), ("b", 0.5)], [("d", 1.0004), ("c", 2.0)]]
    positions, sets, gap = bench.agreement(gpu, cpu)
    assert positions == 0.5 and sets == 1.0 and gap == pytest.approx(4e-4)


@pytest.mark.skipif(cuda_unavailable_reason() is None, reason="a GPU is here: it would run")
def test_bench_devices_without_a_gpu_says_so(beauty_artifact: Artifact,
                                             capsys: pytest.CaptureFixture) -> None:
    assert main(["bench", "devices", "--model", str(beauty_artifact.path)]) == 2
    assert "run it on a machine with an NVIDIA GPU" in capsys.readouterr().err
