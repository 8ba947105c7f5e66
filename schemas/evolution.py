"""Schema evolution rules: can a reader schema read what a writer schema wrote?

streamrec keeps every record schema *fully* compatible between consecutive versions: the new version
reads the old bytes (backward) and the old version reads the new bytes (forward). In practice:

- add a field only with a default; remove a field only if it had one;
- never rename a field or a record, never change a type except by Avro promotion
  (int → long → float → double, string ↔ bytes);
- never remove an enum symbol; adding one is a forward break unless the enum has a default.

``problems(writer, reader)`` applies Avro's resolution rules and lists every break it finds.
"""

from __future__ import annotations

from typing import Any

_PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}
_NAMED = {"record", "enum", "fixed"}


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        return str(schema["type"]) if schema["type"] in _NAMED | {"array", "map"} else _kind(
            schema["type"]
        )
    return str(schema)


def _name(schema: Any) -> str | None:
    return schema.get("name") if isinstance(schema, dict) else None


def problems(writer: Any, reader: Any, path: str = "") -> list[str]:
    """Every reason ``reader`` cannot read data written with ``writer`` (empty list: it can)."""
    wk, rk = _kind(writer), _kind(reader)
    where = path or "<root>"
    if wk == "union":
        return [p for branch in writer for p in problems(branch, reader, path)]
    if rk == "union":
        if any(not problems(writer, branch, path) for branch in reader):
            return []
        return [f"{where}: writer type {wk} matches no branch of the reader's union"]
    if wk != rk:
        if rk in _PROMOTIONS.get(wk, set()):
            return []
        return [f"{where}: type changed from {wk} to {rk}"]
    if wk in _NAMED and _name(writer) != _name(reader):
        return [f"{where}: {wk} renamed from {_name(writer)} to {_name(reader)}"]
    if wk == "record":
        return _record_problems(writer, reader, path)
    if wk == "enum":
        missing = set(writer["symbols"]) - set(reader["symbols"])
        if missing and "default" not in reader:
            return [f"{where}: reader's enum lacks symbols {sorted(missing)} and has no default"]
    if wk == "array":
        return problems(writer["items"], reader["items"], f"{path}[]")
    if wk == "map":
        return problems(writer["values"], reader["values"], f"{path}{{}}")
    if wk == "fixed" and writer["size"] != reader["size"]:
        return [f"{where}: fixed size changed from {writer['size']} to {reader['size']}"]
    return []


def _record_problems(writer: dict[str, Any], reader: dict[str, Any], path: str) -> list[str]:
    written = {f["name"]: f for f in writer["fields"]}
    found: list[str] = []
    for field in reader["fields"]:
        sub = f"{path}.{field['name']}" if path else field["name"]
        if field["name"] in written:
            found += problems(written[field["name"]]["type"], field["type"], sub)
        elif "default" not in field:
            found.append(f"{sub}: reader needs it, the writer lacks it, and it has no default")
    return found


def full_compatibility_problems(old: Any, new: Any) -> list[str]:
    """Breaks in either direction between two versions (backward first, then forward)."""
    backward = [f"new reads old: {p}" for p in problems(old, new)]
    forward = [f"old reads new: {p}" for p in problems(new, old)]
    return backward + forward
