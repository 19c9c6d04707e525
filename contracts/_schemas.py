"""Avro schema files: ``schemas/<Name>.avsc`` (one named type each) and their history.

A file refers to other named types by full name (``io.pcfexchange.CarbonFootprint``);
:func:`expanded` inlines each at its first use, giving the self-contained schema a registry
stores. ``history/<Name>/vN.avsc`` keeps every committed version in expanded form; the test suite
proves each is BACKWARD_TRANSITIVE compatible with all before it and that the newest equals
today's schema.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any, Final

from fastavro import parse_schema

__all__ = [
    "HISTORY_DIR",
    "NAMESPACE",
    "SCHEMA_DIR",
    "expanded",
    "history",
    "normalized",
    "parsed",
    "pretty",
    "schema_json",
    "schema_names",
    "write_history_version",
]

NAMESPACE: Final = "io.pcfexchange"
SCHEMA_DIR: Final = Path(__file__).resolve().parent / "schemas"
HISTORY_DIR: Final = Path(__file__).resolve().parent / "history"


def schema_names() -> list[str]:
    """Every named type with a schema file, sorted."""
    return sorted(p.stem for p in SCHEMA_DIR.glob("*.avsc"))


@cache
def _file(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SCHEMA_DIR / f"{name}.avsc").read_text(encoding="utf-8"))
    return data


def _expand(node: Any, defined: set[str]) -> Any:
    if isinstance(node, str):
        if node.startswith(NAMESPACE + "."):
            short = node[len(NAMESPACE) + 1 :]
            if short in defined:
                return node
            return _expand(_file(short), defined)
        return node
    if isinstance(node, list):
        return [_expand(item, defined) for item in node]
    kind = node.get("type")
    out = dict(node)
    if kind in ("record", "error"):
        defined.add(node["name"])
        out["fields"] = [{**f, "type": _expand(f["type"], defined)} for f in node["fields"]]
    elif kind in ("enum", "fixed"):
        defined.add(node["name"])
    elif kind == "array":
        out["items"] = _expand(node["items"], defined)
    elif kind == "map":
        out["values"] = _expand(node["values"], defined)
    return out


@cache
def _expanded(name: str) -> dict[str, Any]:
    result: dict[str, Any] = _expand(_file(name), set())
    return result


def expanded(name: str) -> dict[str, Any]:
    """The self-contained schema of *name* (a copy: callers may not change the cached one)."""
    return copy.deepcopy(_expanded(name))


def schema_json(name: str) -> str:
    """Compact JSON text of :func:`expanded` -- what is registered for a subject."""
    return json.dumps(_expanded(name), separators=(",", ":"), ensure_ascii=False)


def normalized(schema: str | dict[str, Any] | list[Any]) -> str:
    """A key for schema identity: the JSON re-serialised with sorted keys, no whitespace."""
    value = json.loads(schema) if isinstance(schema, str) else schema
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@cache
def parsed(name: str) -> Any:
    """fastavro's parsed form of :func:`expanded` (cached)."""
    return parse_schema(expanded(name), named_schemas={})


def history(name: str) -> list[tuple[int, dict[str, Any]]]:
    """Committed versions of *name*: ``[(1, schema), (2, schema), ...]``."""
    folder = HISTORY_DIR / name
    versions = []
    for path in folder.glob("v*.avsc"):
        number = path.stem[1:]
        if number.isdigit():
            versions.append((int(number), json.loads(path.read_text(encoding="utf-8"))))
    return sorted(versions, key=lambda item: item[0])


def pretty(value: Any, indent: int = 0) -> str:
    """JSON with one field per line, short values kept on one line (readable ``.avsc`` files)."""
    flat = json.dumps(value, ensure_ascii=False)
    if len(flat) + indent <= 96 and not (isinstance(value, dict) and "fields" in value):
        return flat
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(value, dict):
        items = [
            f"{inner}{json.dumps(k)}: {pretty(v, indent + 2).lstrip()}" for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list):
        items = [inner + pretty(v, indent + 2).lstrip() for v in value]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return flat


def write_history_version(name: str) -> Path | None:
    """Append today's schema of *name* as the next history version, unless it is already latest."""
    current = expanded(name)
    versions = history(name)
    if versions and normalized(versions[-1][1]) == normalized(current):
        return None
    number = versions[-1][0] + 1 if versions else 1
    path = HISTORY_DIR / name / f"v{number}.avsc"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(pretty(current) + "\n", encoding="utf-8")
    return path
