"""The README's quick start runs as written, and the docs point at things that exist.

The quick start is every ```bash block under README.md's "Quick start" heading. Each of its
command lines is run here, or skipped by name in ``SKIPPED`` with the reason; a command added to
the quick start without either fails ``test_every_quick_start_command_is_run_or_skipped``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from streamrec.settings import Settings

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS, REPO / "benchmarks" / "README.md"]

SKIPPED = {
    "make demo": "runs the whole loop until Ctrl-C; far too long for a test",
    "make test": "is this test suite",
    "streamrec broker start": "the kafka fixture starts the test clusters with the same code, "
                              "on test ports, instead",
    "streamrec subscribe --max 3": "needs a running demo (its worker writes recommendations)",
    "curl -s localhost:6066/users/yc-751/recommendations": "needs a running demo's worker",
    "curl -s localhost:6066/metrics | grep ^streamrec_": "needs a running demo's worker",
}
UNIT = ("make help", "streamrec --help")  # run without a broker
# Run in order in one shell against the test clusters; the last one prints the event.
PRODUCE_SUBSCRIBE = ("source .venv/bin/activate", "streamrec produce -", "streamrec subscribe")


def section(text: str, heading: str) -> str:
    """The body of a ``## heading`` section of a Markdown page."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no '## {heading}' section"
    return match.group(1)


def quick_start() -> list[str]:
    """The quick start's command lines, comments stripped, in order."""
    blocks = re.findall(r"^```bash\n(.*?)^```", section(README.read_text(), "Quick start"),
                        re.M | re.S)
    lines = [re.sub(r"\s+#\s.*$", "", line).strip() for b in blocks for line in b.splitlines()]
    return [line for line in lines if line]


def kind(command: str) -> str:
    """How the test runs a quick-start command: skipped, unit or produce-subscribe."""
    if command in SKIPPED:
        return "skipped"
    if command in UNIT:
        return "unit"
    if any(part in command for part in PRODUCE_SUBSCRIBE):
        return "produce-subscribe"
    raise AssertionError(f"quick-start command {command!r} is neither run by tests/test_readme.py "
                         "nor named in its SKIPPED with a reason")


def shell_env(**extra: str) -> dict[str, str]:
    """The environment the quick start runs in: this checkout's code, its streamrec command."""
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    return env


def run(script: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_every_quick_start_command_is_run_or_skipped() -> None:
    commands = quick_start()
    kinds = {command: kind(command) for command in commands}
    assert set(SKIPPED) <= set(commands), "SKIPPED names commands the quick start no longer has"
    assert "make demo" in commands and "make test" in commands  # the two commands
    assert [c for c in commands if kinds[c] == "produce-subscribe"], "no produce → subscribe"


def test_readme_is_a_front_door() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; the reference goes to docs/"


@pytest.mark.parametrize("command", [c for c in quick_start() if kind(c) == "unit"])
def test_quick_start_help_commands(command: str) -> None:
    result = run(command, shell_env())
    assert result.returncode == 0, result.stderr[-2000:]
    if command == "make help":  # every make target the docs name is a documented one
        for target in set(re.findall(r"(?:^|`)make ([a-z][\w-]*)", all_docs(), re.M)):
            assert f"make {target} " in result.stdout, f"`make {target}` is not in `make help`"
    else:
        assert set(documented_commands()) <= listed(result.stdout)


def listed(help_text: str) -> set[str]:
    """The subcommands (or actions) a --help output lists, and a few words more."""
    return set(re.findall(r"^ {2,}([a-z][\w-]*)\b", help_text, re.M))


def documented_commands() -> dict[str, set[str]]:
    """Each ``streamrec X`` the docs show in code, with the actions ``X Y|Z`` they name."""
    named: dict[str, set[str]] = {}
    for command, actions in re.findall(r"(?:^|`)streamrec ([a-z][\w-]*)((?: [a-z][\w-]*"
                                       r"(?:\\?\|[a-z][\w-]*)*)?)", all_docs(), re.M):
        named.setdefault(command, set()).update(
            a for a in re.split(r"\\?\|", actions.strip()) if a)
    return named


def test_every_action_the_docs_name_exists() -> None:
    for command, actions in documented_commands().items():
        if actions:
            result = run(f"streamrec {command} --help", shell_env())
            assert result.returncode == 0, result.stderr[-2000:]
            assert actions <= listed(result.stdout), (
                f"the docs name `streamrec {command}` {sorted(actions - listed(result.stdout))}, "
                "which it does not have")


@pytest.mark.integration
def test_quick_start_produces_an_event_and_subscribes_to_it(kafka) -> None:
    script = "\n".join(c for c in quick_start() if kind(c) == "produce-subscribe")
    result = run(script, shell_env(**kafka.env()), timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(result.stdout.splitlines()[-1])
    assert {k: record[k] for k in ("type", "user_id", "item_id", "_topic")} == {
        "type": "click", "user_id": "alice", "item_id": "sku-9", "_topic": "events"}


def all_docs() -> str:
    return "\n".join(page.read_text() for page in PAGES)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_points_to_an_existing_file(page: Path) -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: link to {target} points to nothing"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{page.name}: {target}: no such heading"


def named_paths(text: str) -> set[str]:
    """Paths of this repository that a page names in `code`."""
    roots = {p.name for p in REPO.iterdir() if not p.name.startswith(".")} | {".ci"}
    found = set()
    for span in re.findall(r"`([^`\n]+)`", text):
        if (re.fullmatch(r"[\w.*/-]+", span) and span.split("/")[0] in roots
                and ("/" in span or "." in span) and "NAME" not in span):
            found.add(span.rstrip("/"))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_path_the_docs_name_exists(page: Path) -> None:
    for path in named_paths(page.read_text()):
        assert list(REPO.glob(path)), f"{page.name} names `{path}`, which does not exist"


def test_the_folder_map_names_every_package_folder() -> None:
    block = re.search(r"```\n(.*?)```", section(README.read_text(), "Folder map"), re.S)
    assert block, "no folder map"
    mapped = {line.split()[0].rstrip("/") for line in block.group(1).splitlines() if line}
    for folder in mapped:
        assert (REPO / folder).is_dir(), f"the folder map names {folder}/, which does not exist"
    packages = {str(p.parent.relative_to(REPO)) for p in REPO.glob("*/*/__init__.py")
                if p.parts[len(REPO.parts)] != "tests"}
    top = {p.name for p in REPO.iterdir() if (p / "__init__.py").exists()}
    top = {name for name in top if not any(m.startswith(f"{name}/") for m in mapped)}
    assert packages | top <= mapped, f"missing from the folder map: {(packages | top) - mapped}"


def test_every_setting_is_documented_and_every_documented_setting_exists() -> None:
    reference = (REPO / "docs" / "operations.md").read_text()
    settings = {f"STREAMREC_{name.upper()}" for name in Settings.model_fields}
    missing = {name for name in settings if f"`{name}`" not in reference}
    assert not missing, f"settings not in docs/operations.md: {sorted(missing)}"
    tests = "\n".join(p.read_text() for p in (REPO / "tests").rglob("conftest.py"))
    known = settings | set(re.findall(r"STREAMREC_TEST_[A-Z0-9_]+", tests))
    for name in set(re.findall(r"STREAMREC_[A-Z0-9_]*", all_docs())):
        assert any(k.startswith(name) for k in known) if name.endswith("_") else name in known, (
            f"the docs name {name}, which is neither a setting nor a test variable")


def test_ci_runs_the_test_command_the_readme_gives() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    ci_commands = re.findall(r"^make ([\w-]+)$", ci, re.M)
    assert "make test" in quick_start() and "test" in ci_commands
    testing = (REPO / "docs" / "testing.md").read_text()
    for target in ci_commands:
        assert f"make {target}" in testing, f"CI runs make {target}; docs/testing.md does not say"
