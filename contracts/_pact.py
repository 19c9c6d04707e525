"""PACT v3 JSON <-> :class:`ProductFootprint`.

Reading pulls our Data Model Extension (``dataSchema`` = :data:`PCFX_EXTENSION_SCHEMA`) out of
``extensions`` into the typed ``pcfx`` field and reports every problem with the path as the
sender wrote it (``extensions[1].data.pilotCategory``). Writing puts it back, renders decimals as
PACT decimal strings with their digits intact and instants as UTC ``...Z``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any, Final

from pcf_exchange.contracts._footprint import (
    PCFX_EXTENSION_SCHEMA,
    DataModelExtension,
    ProductFootprint,
)
from pcf_exchange.contracts._jsonio import dumps, loads
from pcf_exchange.contracts._validate import CheckResult, check
from pcf_exchange.contracts.errors import ValidationFailed, Violation

__all__ = [
    "PCFX_EXTENSION_SPEC_VERSION",
    "check_footprint",
    "dump_pact_json",
    "parse_footprint",
    "to_pact_json",
]

PCFX_EXTENSION_SPEC_VERSION: Final = "2.0.0"
"""Version of the Data Model Extensions spec our extension object follows."""

_EXT_INDEX: Final = re.compile(r"extensions\[([0-9]+)\]")


def _remap(v: Violation, pcfx_index: int | None, foreign: list[int]) -> Violation:
    path = v.path
    if pcfx_index is not None and (path == "pcfx" or path.startswith(("pcfx.", "pcfx["))):
        path = f"extensions[{pcfx_index}].data{path[4:]}"
    elif path.startswith("extensions["):
        match = _EXT_INDEX.match(path)
        if match is not None and int(match.group(1)) < len(foreign):
            path = f"extensions[{foreign[int(match.group(1))]}]" + path[match.end() :]
    return v if path == v.path else Violation(path, v.code, v.message, v.got)


def check_footprint(
    data: Mapping[str, Any] | bytes | str, *, subject: str = "footprint"
) -> CheckResult[ProductFootprint]:
    """Check one PACT v3 ProductFootprint (JSON text or parsed); never raises for bad data.

    Our extension is read from ``extensions``; a top-level ``pcfx`` key is refused.
    """
    if isinstance(data, bytes | bytearray | str):
        try:
            data = loads(data, subject=subject)
        except ValidationFailed as exc:
            return CheckResult(subject, None, exc.violations)
    if not isinstance(data, Mapping):
        got = type(data).__name__
        return CheckResult(subject, None, (Violation("", "type", "must be a JSON object", got),))
    problems: list[Violation] = []
    record = dict(data)
    if "pcfx" in record:
        problems.append(
            Violation.of(
                "pcfx",
                "unknown_field",
                "is not a PACT field; send our extension in extensions[] with dataSchema "
                f"{PCFX_EXTENSION_SCHEMA}",
                record.pop("pcfx"),
            )
        )
    pcfx_index: int | None = None
    foreign: list[int] = []
    extensions = record.get("extensions")
    if isinstance(extensions, list):
        kept = []
        for i, ext in enumerate(extensions):
            if isinstance(ext, Mapping) and ext.get("dataSchema") == PCFX_EXTENSION_SCHEMA:
                if pcfx_index is not None:
                    problems.append(
                        Violation(
                            f"extensions[{i}]",
                            "duplicate_extension",
                            f"repeats extensions[{pcfx_index}]",
                        )
                    )
                    continue
                pcfx_index = i
                # the envelope's shape only: its data is checked as our extension below, so
                # it is not walked here too (an empty object gives the same envelope problems)
                shape = check(DataModelExtension, {**ext, "data": {}})
                problems += [
                    Violation(f"extensions[{i}].{v.path}", v.code, v.message, v.got)
                    for v in shape.violations
                    if not v.path.startswith("data")
                ]
                record["pcfx"] = ext.get("data")
            else:
                foreign.append(i)
                kept.append(ext)
        if kept:
            record["extensions"] = kept
        else:
            del record["extensions"]
    result = check(ProductFootprint, record, subject=subject)
    violations = tuple(problems) + tuple(_remap(v, pcfx_index, foreign) for v in result.violations)
    warnings = tuple(_remap(v, pcfx_index, foreign) for v in result.warnings)
    if violations:
        return CheckResult(subject, None, violations, warnings)
    return CheckResult(subject, result.value, (), warnings)


def parse_footprint(
    data: Mapping[str, Any] | bytes | str, *, subject: str = "footprint"
) -> ProductFootprint:
    """Parse one PACT v3 ProductFootprint; raise :class:`ValidationFailed` listing every problem."""
    return check_footprint(data, subject=subject).unwrap()


def to_pact_json(footprint: ProductFootprint) -> dict[str, Any]:
    """The PACT v3 JSON object of *footprint* (undefined fields left out, our extension appended).

    Foreign extension ``data`` keeps exact numbers as :class:`~decimal.Decimal`; serialise with
    :func:`dump_pact_json` (or any encoder that writes decimals as numbers).
    """
    out = footprint.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"pcfx"})
    extensions: list[dict[str, Any]] = out.get("extensions", [])
    for dumped, ext in zip(extensions, footprint.extensions or (), strict=True):
        dumped["data"] = copy.deepcopy(ext.data)
    if footprint.pcfx is not None:
        extensions.append(
            {
                "specVersion": PCFX_EXTENSION_SPEC_VERSION,
                "dataSchema": PCFX_EXTENSION_SCHEMA,
                "data": footprint.pcfx.model_dump(
                    mode="json", by_alias=True, exclude_none=True, exclude_defaults=True
                ),
            }
        )
    if extensions:
        out["extensions"] = extensions
    return out


def dump_pact_json(footprint: ProductFootprint) -> str:
    """Compact PACT v3 JSON text of *footprint*."""
    return dumps(to_pact_json(footprint))
