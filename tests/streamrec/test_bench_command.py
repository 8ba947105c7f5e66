"""``streamrec bench NAME ...`` imports ``benchmarks.bench_NAME`` and hands it its arguments."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from streamrec.cli import bench, build_parser, main


def test_every_argument_after_the_name_is_the_benchmarks() -> None:
    parser = build_parser()
    args = parser.parse_args(["bench", "pipeline", "--out", "x.json", "--help"])
    assert (args.benchmark, args.bench_args) == ("pipeline", ["--out", "x.json", "--help"])
    assert parser.parse_args(["bench", "swap"]).bench_args == []


def test_the_benchmark_module_parses_its_own_options(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as done:
        main(["bench", "scorer", "--help"])
    assert done.value.code == 0
    assert "--sizes" in capsys.readouterr().out  # benchmarks.bench_scorer's own --help


def test_outside_a_checkout_it_says_where_to_run(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture,
                                                 tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "benchmarks", None)  # as if no benchmarks package existed
    monkeypatch.setattr(bench, "CHECKOUT", tmp_path)  # ...and streamrec ran from no checkout
    assert main(["bench", "swap", "--seconds", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "from the root of a source checkout" in err
