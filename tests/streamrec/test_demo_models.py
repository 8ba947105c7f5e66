"""The private model registry as the demo leaves it: `streamrec models list` reads it."""

from __future__ import annotations

import json
import subprocess
import sys

from connectors.releases.registry import PrivateModels
from streamrec import demo
from streamrec.settings import Settings


def test_models_list_shows_the_demos_first_model_and_older_records(tmp_path) -> None:
    artifact = tmp_path / "demo-model"
    artifact.mkdir()
    (artifact / "metadata.json").write_text(json.dumps(  # as `streamrec train` writes it
        {"version": "demo-1", "item_ids": ["", "a", "b", "c"],
         "metrics": {"val": {"HR@10": 0.0812, "NDCG@10": 0.0471}, "test": {"HR@10": 0.07}}}))
    settings = Settings(data_dir=tmp_path / "var")
    demo.bootstrap_private_model(settings, artifact)
    # A record as earlier demos wrote it: no parent, no metrics.
    models = PrivateModels(tmp_path / "var" / "models-private")
    (models.path_of("old-1")).mkdir()
    models.record_accepted("old-1", {"version": "old-1", "origin": "private demo training"}, {})
    env = {"STREAMREC_DATA_DIR": str(tmp_path / "var"), "PATH": "/usr/bin:/bin"}
    shown = subprocess.run([sys.executable, "-m", "streamrec", "models", "list"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    demo_line = next(line for line in lines if line.startswith("* demo-1"))
    assert demo_line.split()[-3:] == ["0.0812", "0.0471", "3"], demo_line  # validation figures
    assert any(line.strip().startswith("old-1") for line in lines), lines
    table = json.loads(subprocess.run([sys.executable, "-m", "streamrec", "models", "list",
                                       "--json"], env=env, capture_output=True, text=True,
                                      timeout=60, check=True).stdout)
    assert table["current"] == "demo-1"
    assert {v["version"]: v["parent_version"] for v in table["versions"]} == {
        "demo-1": None, "old-1": None}
