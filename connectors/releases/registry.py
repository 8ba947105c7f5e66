"""The private model directory: the only models the private workers run.

``<data_dir>/models-private``::

    <version>/        a fetched artifact that passed every check
    current -> <version>   symbolic link the workers follow (STREAMREC_MODEL_DIR=.../current)
    registry.json     versions with their release record, refused releases with the reason,
                      and the history of which version was current when

The link is re-pointed atomically (a new link renamed over the old one), so a worker sees
either the old or the new version, never a missing or half-written one. No torch here.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from connectors.releases.store import StoreError

CURRENT = "current"
REGISTRY = "registry.json"


class PrivateModels:
    """The private model directory: fetched versions, the ``current`` link and their records."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def current_link(self) -> Path:
        """The symbolic link the workers serve from."""
        return self.root / CURRENT

    def path_of(self, version: str) -> Path:
        """Directory of a version (whether or not it exists)."""
        if not version or "/" in version or version.startswith(".") or version == CURRENT:
            raise StoreError(f"{version!r} is not a usable model version name")
        return self.root / version

    def current(self) -> str | None:
        """The version ``current`` points to, or None."""
        link = self.current_link
        return os.readlink(link) if link.is_symlink() else None

    def point_current(self, version: str, reason: str) -> None:
        """Re-point ``current`` to ``version`` atomically and record why."""
        target = self.path_of(version)
        if not target.is_dir():
            raise StoreError(f"version {version} is not in {self.root}; run `streamrec models "
                             "list` to see the versions held")
        tmp = self.root / f".{CURRENT}.{os.getpid()}.{time.monotonic_ns()}"
        os.symlink(version, tmp)  # relative: the directory may be moved or mounted elsewhere
        os.replace(tmp, self.current_link)
        registry = self.registry()
        registry["history"].append({"version": version, "reason": reason, "at": _now()})
        if reason != "rollback":
            registry["rolled_back"].pop(version, None)
        self._save(registry)

    def mark_rolled_back(self, version: str) -> None:
        """Remember that ``version`` was rolled back from: a later rollback never returns to it."""
        registry = self.registry()
        registry["rolled_back"][version] = _now()
        self._save(registry)

    def registry(self) -> dict[str, Any]:
        """The records: ``versions`` (release of each), ``refused`` (reason), ``history`` of
        activations, and ``rolled_back`` (versions an operator rolled back from)."""
        path = self.root / REGISTRY
        empty: dict[str, Any] = {"versions": {}, "refused": {}, "history": [], "rolled_back": {}}
        if not path.is_file():
            return empty
        return {**empty, **json.loads(path.read_text())}

    def seen(self, release: dict[str, Any]) -> bool:
        """Whether this release was handled before: its version is held, or this very record
        (same sha256 and signature) was refused. A *different* record of a refused version is
        checked again, so a bogus release cannot block the real one of the same name."""
        registry = self.registry()
        if release["version"] in registry["versions"]:
            return True
        refused = registry["refused"].get(release["version"])
        return refused is not None and all(
            refused["release"].get(k) == release.get(k) for k in ("sha256", "signature"))

    def record_accepted(self, version: str, release: dict[str, Any], canary: dict[str, Any]
                        ) -> None:
        """Remember an accepted release and what its canary saw."""
        registry = self.registry()
        registry["versions"][version] = {"release": release, "canary": canary, "at": _now()}
        registry["refused"].pop(version, None)
        self._save(registry)

    def record_refused(self, version: str, reason: str, release: dict[str, Any]) -> None:
        """Remember a refused release and why (it is never served)."""
        registry = self.registry()
        registry["refused"][version] = {"reason": reason, "release": release, "at": _now()}
        self._save(registry)

    def previous_good(self) -> str | None:
        """The newest version that was current before the present one and is still good.

        Good: accepted, never refused, not rolled back from, and still on disk.
        """
        registry = self.registry()
        current = self.current()
        bad = set(registry["refused"]) | set(registry["rolled_back"]) | {current}
        for entry in reversed(registry["history"]):
            version = entry["version"]
            if (version not in bad and version in registry["versions"]
                    and self.path_of(version).is_dir()):
                return version
        return None

    def _save(self, registry: dict[str, Any]) -> None:
        tmp = self.root / f".{REGISTRY}.{os.getpid()}"
        tmp.write_text(json.dumps(registry, indent=1, sort_keys=True))
        os.replace(tmp, self.root / REGISTRY)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
