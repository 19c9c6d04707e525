"""Input files: footprint CSV (the column mapping), JSON Lines, wrong formats, unreadable files."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from pcf_exchange.contracts import parse_footprint, to_pact_json
from pcf_exchange.producers import load_items
from pcf_exchange.producers._input import read_footprints_csv
from tests.producers.conftest import footprint_json, write_json

ROOT = Path(__file__).resolve().parents[2]


def _flatten(data: dict[str, Any]) -> dict[str, str]:
    """The CSV row a supplier's ERP would export for *data* (the documented mapping)."""
    row: dict[str, str] = {}

    def put(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                put(f"{prefix}.{key}" if prefix else key, inner)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            row[prefix] = "|".join(value)
        elif isinstance(value, list):
            row[prefix] = json.dumps(value, ensure_ascii=False)
        elif isinstance(value, bool):
            row[prefix] = "true" if value else "false"
        else:
            row[prefix] = str(value)

    extensions = data.pop("extensions", [])
    put("", data)
    for ext in extensions:
        for key, value in ext["data"].items():
            if key == "fieldLabels":
                row[f"pcfx.{key}"] = json.dumps(value)
            else:
                put(f"pcfx.{key}", value)
    return row


def _csv(rows: list[dict[str, str]], delimiter: str = ",") -> str:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, delimiter=delimiter, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


@pytest.mark.parametrize("delimiter", [",", ";"])
def test_csv_rows_give_the_same_footprints_as_json(delimiter: str) -> None:
    sources = [footprint_json(i) for i in range(3)]
    items = read_footprints_csv(_csv([_flatten(dict(s)) for s in sources], delimiter), name="f.csv")
    assert [i.error for i in items] == [None, None, None]
    for item, source in zip(items, sources, strict=True):
        assert item.record is not None
        assert to_pact_json(item.record) == to_pact_json(parse_footprint(source))  # type: ignore[arg-type]
    assert [i.ref for i in items] == ["f.csv:2", "f.csv:3", "f.csv:4"]


def test_csv_defaults_spec_version_and_status() -> None:
    row = _flatten(footprint_json(1))
    del row["specVersion"], row["status"]
    (item,) = read_footprints_csv(_csv([row]), name="f.csv")
    assert item.record is not None
    assert item.record.spec_version == "3.0.0"  # type: ignore[union-attr]
    assert item.record.status == "Active"  # type: ignore[union-attr]


def test_csv_problems_name_the_line_and_the_column() -> None:
    good = _flatten(footprint_json(1))
    bad = _flatten(footprint_json(2))
    bad["pcf.dqi.temporalDQR"] = "9"
    bad["companyIds"] = "urn:ok|not a urn"
    bad["pcfx.pilotCategory"] = "SPACESHIPS"
    bad["pcf.packagingEmissionsIncluded"] = "maybe"
    items = read_footprints_csv(_csv([good, bad]), name="f.csv")
    assert items[0].error is None
    error = items[1].error
    assert error is not None and items[1].line == 3
    # a cell that cannot be read is reported alone (the row is not validated further)
    assert [(v.path, v.code) for v in error.violations] == [
        ("pcf.packagingEmissionsIncluded", "csv_cell")
    ]
    bad["pcf.packagingEmissionsIncluded"] = "true"
    items = read_footprints_csv(_csv([good, bad]), name="f.csv")
    error = items[1].error
    assert error is not None
    paths = {v.path for v in error.violations}
    assert {"pcf.dqi.temporalDQR", "companyIds", "pcfx.pilotCategory"} <= paths, paths
    assert error.subject == "f.csv:3"


def test_csv_header_problems_make_the_file_unreadable() -> None:
    (item,) = read_footprints_csv("id,created,pcf.notAField,whatever\n1,2,3,4\n", name="f.csv")
    assert item.unreadable and item.error is not None
    codes = [(v.path, v.code) for v in item.error.violations]
    assert ("pcf.notAField", "unknown_column") in codes and ("whatever", "unknown_column") in codes
    (item,) = read_footprints_csv("companyName\nX\n", name="f.csv")
    assert item.error is not None
    assert {(v.path, v.code) for v in item.error.violations} == {
        ("id", "required"),
        ("created", "required"),
    }


def test_csv_row_with_wrong_cell_count() -> None:
    row = _flatten(footprint_json(1))
    text = _csv([row]) + "only,two\n"
    items = read_footprints_csv(text, name="f.csv")
    assert items[0].error is None
    assert items[1].error is not None and items[1].error.violations[0].code == "column_count"


def test_json_lines_are_read_one_footprint_per_line(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    lines = [json.dumps(footprint_json(i)) for i in range(3)]
    lines.insert(1, "")
    lines.append("{broken")
    path.write_text("\n".join(lines) + "\n")
    items = list(load_items("footprints", path))
    assert [i.ref for i in items] == [f"{path}:1", f"{path}:3", f"{path}:4", f"{path}:5"]
    assert [i.record is not None for i in items] == [True, True, True, False]
    assert items[3].error is not None and items[3].error.violations[0].code == "json_syntax"


@pytest.mark.parametrize(
    ("kind", "name", "content", "code"),
    [
        ("footprints", "f.xml", "<xml/>", "unknown_format"),
        ("boms", "b.csv", "a,b\n", "unknown_format"),
        ("factors", "f.yaml", "a: 1", "unknown_format"),
        ("footprints", "missing.json", None, "unreadable"),
        ("footprints", "missing.csv", None, "unreadable"),
        ("footprints", "missing.jsonl", None, "unreadable"),
        ("footprints", "broken.json", "{not json", "json_syntax"),
        ("factors", "bad.csv", b"\xff\xfe", "not_utf8"),
    ],
)
def test_unreadable_files_are_one_item(
    tmp_path: Path, kind: Any, name: str, content: str | bytes | None, code: str
) -> None:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        path.write_bytes(content)
    (item,) = list(load_items(kind, path))
    assert item.unreadable and item.record is None and item.index is None
    assert item.error is not None and item.error.violations[0].code == code


def test_shipped_factor_set_loads_cleanly() -> None:
    items = list(load_items("factors", ROOT / "producers" / "data" / "factors-cn.json"))
    assert len(items) >= 20
    assert all(i.record is not None and not i.warnings for i in items), [i.error for i in items]


def test_json_list_and_pact_response_shapes(tmp_path: Path) -> None:
    single = write_json(tmp_path / "one.json", footprint_json(1))
    listed = write_json(tmp_path / "list.json", [footprint_json(1), footprint_json(2)])
    response = write_json(tmp_path / "resp.json", {"data": [footprint_json(3)]})
    assert len(list(load_items("footprints", single))) == 1
    assert len(list(load_items("footprints", listed))) == 2
    (item,) = list(load_items("footprints", response))
    assert item.ref == f"{response}#0"
