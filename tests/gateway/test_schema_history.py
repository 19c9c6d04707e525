"""The gateway's own wire records evolve like the contracts' (ARCHITECTURE decision 2): every
committed version is BACKWARD_TRANSITIVE compatible with all before it, and the schema in use is
the newest history entry, so a change without a history entry fails here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pcf_exchange.contracts import CompatibilityLevel, check_compatibility
from pcf_exchange.gateway.runtime import SCHEMA_NAMES, schema_text

HISTORY = Path(__file__).resolve().parents[2] / "gateway" / "runtime" / "schemas" / "history"


def versions(name: str) -> list[str]:
    files = sorted(HISTORY.joinpath(name).glob("v*.avsc"), key=lambda p: int(p.stem[1:]))
    assert [p.stem for p in files] == [f"v{i}" for i in range(1, len(files) + 1)]
    return [p.read_text() for p in files]


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_history_is_backward_transitive_and_current(name: str) -> None:
    history = versions(name)
    assert history, f"gateway/runtime/schemas/history/{name}/v1.avsc is missing"
    for index, schema in enumerate(history):
        problems = check_compatibility(
            schema, history[:index], CompatibilityLevel.BACKWARD_TRANSITIVE
        )
        assert problems == [], f"{name} v{index + 1}: {problems}"
    assert json.loads(history[-1]) == json.loads(schema_text(name)), (
        f"{name}.avsc changed without a new history version"
    )


def test_an_incompatible_change_is_caught() -> None:
    schema = json.loads(schema_text(SCHEMA_NAMES[0]))
    schema["fields"].append({"name": "mandatoryNewField", "type": "string"})  # no default
    problems = check_compatibility(
        json.dumps(schema), [schema_text(SCHEMA_NAMES[0])], CompatibilityLevel.BACKWARD_TRANSITIVE
    )
    assert problems, "a new field without a default must break old data"
