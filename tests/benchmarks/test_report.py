"""benchmarks/README.md and the figures the docs quote are what the results files say."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks import report

REPO = Path(__file__).resolve().parents[2]


def test_generated_docs_are_what_the_results_say() -> None:
    assert report.stale() == [], (
        "edited by hand, or results changed without the report: run `python -m benchmarks.report`")


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The generated pages and the results, laid out as in the repository."""
    for part in ("README.md", "benchmarks/README.md", "benchmarks/results"):
        source, target = REPO / part, tmp_path / part
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
    return tmp_path


def test_check_fails_on_a_figure_edited_by_hand(copy: Path, capsys) -> None:
    assert report.main(["--check", "--root", str(copy)]) == 0
    page = copy / "benchmarks" / "README.md"
    page.write_text(page.read_text().replace("| naive baseline | ", "| naive baseline | 1", 1))
    assert report.main(["--check", "--root", str(copy)]) == 1
    assert "benchmarks/README.md is not what benchmarks/report.py writes" in capsys.readouterr().err
    assert report.main(["--root", str(copy)]) == 0  # written again from the results
    assert report.main(["--check", "--root", str(copy)]) == 0


def test_new_results_change_the_page(copy: Path) -> None:
    results = copy / "benchmarks" / "results" / "swap.json"
    doc = json.loads(results.read_text())
    doc["answered"], doc["unanswered"] = doc["events"] - 1, 1
    results.write_text(json.dumps(doc))
    assert report.stale(copy) == [Path("benchmarks/README.md")]
    assert f"{doc['answered']:,} of {doc['events']:,} events" in report.render(copy)[report.PAGE]


def test_a_missing_results_file_says_which_benchmark_writes_it(copy: Path) -> None:
    (copy / "benchmarks" / "results" / "pipeline.json").unlink()
    rendered = report.render(copy)
    assert ("No results stored: `streamrec bench pipeline --out benchmarks/results/NAME.json` "
            "writes them.") in rendered[report.PAGE]


def test_a_results_file_without_a_table_is_listed(copy: Path) -> None:
    (copy / "benchmarks" / "results" / "new-bench.json").write_text("{}")
    assert "[new-bench.json](results/new-bench.json)" in report.render(copy)[report.PAGE]
