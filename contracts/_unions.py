"""Avro union branches named before fastavro writes a datum, so it does not have to guess them.

fastavro picks the branch of a union by validating the datum against each branch in turn, and a
record branch is validated field by field, nested unions included: for a ``RolledUpFootprint``
(its PACT footprint, DQI, uncertainty and facility are ``["null", record]`` unions) that was most
of the write. Given a ``(name, datum)`` pair instead ("tuple notation"), it takes the named branch
at once. :func:`preparer` compiles, once per schema, the function that turns a model's Avro
datum into that form; it writes the same bytes (a test compares them for every wire record).

Tuple notation reads *every* tuple in a union position as ``(name, datum)``, so arrays there
become lists (``model_dump`` gives tuples for tuple fields).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Prepare", "preparer"]

Prepare = Callable[[Any], Any]
"""Returns the datum ready for ``schemaless_writer`` (records are changed in place)."""

_NAMED = ("record", "error", "enum", "fixed")


def preparer(schema: Any) -> Prepare | None:
    """The function that names the union branches in datums of the parsed *schema*; ``None``
    if it has no union that needs it."""
    return _Compiler().compile(schema, "")


class _Compiler:
    def __init__(self) -> None:
        self.named: dict[str, list[Prepare | None]] = {}
        """Each named type's preparer, filled once it is compiled (a cell, for recursion)."""
        self.kinds: dict[str, str] = {}

    def compile(self, schema: Any, namespace: str) -> Prepare | None:
        if isinstance(schema, str):
            return self._reference(schema, namespace)
        if isinstance(schema, list):
            return self._union(schema, namespace)
        kind = schema.get("type")
        if isinstance(kind, dict | list):
            return self.compile(kind, namespace)
        if kind in ("record", "error"):
            return self._record(schema, namespace)
        if kind in ("enum", "fixed"):
            self.kinds[self._full(schema, namespace)] = kind
            return None
        if kind == "array":
            items = self.compile(schema["items"], namespace)
            return None if items is None else (lambda datum: [items(x) for x in datum])
        if kind == "map":
            values = self.compile(schema["values"], namespace)
            if values is None:
                return None
            return lambda datum: {k: values(v) for k, v in datum.items()}
        return None  # a primitive, with or without a logical type

    def _full(self, schema: dict[str, Any], namespace: str) -> str:
        name: str = schema["name"]
        if "." in name:
            return name
        space = schema.get("namespace", namespace)
        return f"{space}.{name}" if space else name

    def _reference(self, name: str, namespace: str) -> Prepare | None:
        full = name if name in self.named or "." in name else f"{namespace}.{name}"
        cell = self.named.get(full)
        if cell is None:
            return None  # a primitive's name (or a named type that needs nothing)
        if cell[0] is not None:
            return cell[0]
        return lambda datum: cell[0](datum) if cell[0] is not None else datum  # recursive

    def _record(self, schema: dict[str, Any], namespace: str) -> Prepare | None:
        full = self._full(schema, namespace)
        self.kinds[full] = "record"
        cell: list[Prepare | None] = [None]
        self.named[full] = cell
        inner = full.rpartition(".")[0]
        fields = [(f["name"], self.compile(f["type"], inner)) for f in schema["fields"]]
        active = [(name, prepare) for name, prepare in fields if prepare is not None]
        if not active:
            del self.named[full]  # later references need nothing either (see _reference)
            return None

        def prepare_record(datum: dict[str, Any]) -> dict[str, Any]:
            for name, prepare in active:
                value = datum.get(name)
                if value is not None:
                    datum[name] = prepare(value)
            return datum

        cell[0] = prepare_record
        return prepare_record

    def _union(self, branches: list[Any], namespace: str) -> Prepare | None:
        records: list[tuple[str, Prepare | None]] = []
        maps: list[Prepare | None] = []
        arrays: list[Prepare | None] = []
        for branch in branches:
            prepare = self.compile(branch, namespace)
            kind, full = self._kind(branch, namespace)
            if kind == "record":
                records.append((full, prepare))
            elif kind == "map":
                maps.append(prepare)
            elif kind == "array":
                arrays.append(prepare)
        if not (records or maps or arrays):
            return None  # nulls and primitives: fastavro's own check is cheap
        # a dict is named only when it can be one record and nothing else: else fastavro picks
        record = records[0] if len(records) == 1 and not maps else None
        array = arrays[0] if len(arrays) == 1 else None

        def prepare_union(datum: Any) -> Any:
            if isinstance(datum, dict):
                if record is not None:
                    name, inner = record
                    return (name, inner(datum) if inner is not None else datum)
                if len(maps) == 1 and maps[0] is not None:
                    return maps[0](datum)
                return datum
            if isinstance(datum, tuple | list):
                return array(datum) if array is not None else list(datum)
            return datum

        return prepare_union

    def _kind(self, branch: Any, namespace: str) -> tuple[str, str]:
        """A branch's kind (``record``, ``map``, ``array``, a primitive) and full name."""
        if isinstance(branch, str):
            full = branch if branch in self.kinds or "." in branch else f"{namespace}.{branch}"
            return self.kinds.get(full, branch), full
        if isinstance(branch, dict):
            kind = branch.get("type")
            if kind in _NAMED:
                return ("record" if kind == "error" else kind), self._full(branch, namespace)
            if isinstance(kind, str):
                return kind, ""
        return "", ""
