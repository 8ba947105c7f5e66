"""``streamrec train`` and ``streamrec evaluate`` end to end, on files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from model_testkit import write_events

from model.artifact import Artifact, load_artifact
from model.evaluate import PUBLISHED, format_table
from streamrec.cli import main


def test_train_demo_preset_then_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    events = write_events(tmp_path / "events.jsonl")
    out = tmp_path / "artifact"
    code = main(
        [
            "train",
            "--dataset",
            str(events),
            "--format",
            "events",
            "--out",
            str(out),
            "--preset",
            "demo",
            "--epochs",
            "2",
            "--dim",
            "16",
            "--top-k",
            "10",
        ]
    )
    assert code == 0
    art = load_artifact(out)
    assert art.config.max_len == 50 and art.config.top_k == 10
    assert art.metadata["training_data"]["first_event"].startswith("2023-11-14")
    assert f"artifact {art.version} written" in capsys.readouterr().out
    report_path = tmp_path / "report.json"
    code = main(
        [
            "evaluate",
            "--artifact",
            str(out),
            "--dataset",
            str(events),
            "--format",
            "events",
            "--negatives",
            "10",
            "--out",
            str(report_path),
        ]
    )
    assert code == 0
    report = json.loads(report_path.read_text())
    assert report["users"] == 60 and set(report["model"]) == {"FULL", "S10"}
    assert set(report["model"]["FULL"]) == {
        f"{m}@{k}" for m in ("HR", "NDCG") for k in (1, 5, 10, 20)
    } | {"MRR"}
    assert "popularity      FULL" in capsys.readouterr().out


def test_errors_tell_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(
        [
            "train",
            "--dataset",
            str(tmp_path / "missing.txt"),
            "--format",
            "s3rec",
            "--out",
            str(tmp_path / "a"),
        ]
    )
    assert code == 2 and "does not exist" in capsys.readouterr().err
    code = main(["evaluate", "--artifact", str(tmp_path), "--dataset", "x", "--format", "s3rec"])
    assert code == 1 and "not a model artifact" in capsys.readouterr().err


def test_evaluation_of_a_real_file_lists_published_figures(
    beauty_artifact: Artifact, datasets: Path
) -> None:
    from model.data import QueryHashing
    from model.evaluate import evaluate_artifact

    beauty = datasets / "amazon-beauty-s3rec" / "Beauty.txt"
    report = evaluate_artifact(
        beauty_artifact.path, beauty, "s3rec", QueryHashing(b"k", 64), negatives=99, device="cpu"
    )
    assert report["users"] == 22363 and report["unknown_targets"] > 0
    assert report["dataset_sha256"] in PUBLISHED
    table = format_table(report)
    assert "ICLRec" in table and "S99" in table
    # Popularity on the real file lands near the published PopRec figure (HR@10 0.0152).
    assert 0.005 < report["popularity"]["FULL"]["HR@10"] < 0.03
