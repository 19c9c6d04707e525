"""``pcfx factors import`` and the table check under it: a bad table gets a reason per row naming
the column, and nothing of it is published; ``list``/``show``/``history`` from files. No broker:
publishing itself is ``pcfx publish factors``' path, tested in test_cli.py."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pcf_exchange.contracts import EmissionFactor, load_factors, parse
from pcf_exchange.pcfx.cli import app
from pcf_exchange.pcfx.commands import factors as factors_command
from pcf_exchange.producers import KeyPairFiles
from pcf_exchange.producers.factors import (
    SOURCED_FACTORS,
    FactorCatalogue,
    FactorVersion,
    check_factor_table,
    plan_import,
)

runner = CliRunner()

HEADER = (
    "factorId,name,unit,value,source,version,referenceYear,"
    "referencePublisher,referenceTitle,referenceUrl,referencePublished"
)
REF = "MEE,Announcement,https://example.org/a,2024-12-26"
GOOD = [
    f"cn:grid,China grid,kilowatt hour,0.5366,MEE 2022,2022,2022,{REF}",
    f"cn:grid,China grid,kilowatt hour,0.5306,MEE 2023,2023,2023,{REF}",
    f"cn:steel,Steel,kilogram,1.91,worldsteel,2022,2021,{REF}",
]


def write(tmp_path: Path, rows: list[str], header: str = HEADER) -> Path:
    path = tmp_path / "factors.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def table(path: Path) -> Any:
    return check_factor_table(load_factors(path), file=str(path))


def test_a_good_table_is_ok(tmp_path: Path) -> None:
    checked = table(write(tmp_path, GOOD))
    assert checked.ok and not checked.problems
    assert [(f.factor_id, f.version) for f in checked.factors] == [
        ("cn:grid", "2022"),
        ("cn:grid", "2023"),
        ("cn:steel", "2022"),
    ]


BAD_ROWS = {
    "missing_source": (
        "cn:x,X,kilogram,1,src,1,2023,,,,",
        {("reference", "source_required")},
    ),
    "duplicate_id_and_version": (
        f"cn:grid,China grid again,kilowatt hour,0.6,MEE 2022,2022,2022,{REF}",
        {("factorId", "duplicate")},
    ),
    "unknown_unit": (f"cn:x,X,furlong,1,src,1,2023,{REF}", {("unit", "unit")}),
    "bad_number": (f"cn:x,X,kilogram,1.2e3,src,1,2023,{REF}", {("value", "decimal_pattern")}),
    "bad_reference_url": (
        "cn:x,X,kilogram,1,src,1,2023,MEE,Doc,not a url,2024-01-01",
        {("referenceUrl", "url")},
    ),
    "bad_reference_date": (
        "cn:x,X,kilogram,1,src,1,2023,MEE,Doc,https://x.org,2024-02-30",
        {("referencePublished", "date")},
    ),
    "bad_year": (f"cn:x,X,kilogram,1,src,1,twenty,{REF}", {("referenceYear", "type")}),
    "short_row": ("cn:x,X,kilogram", {("", "column_count")}),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_one_bad_row_refuses_the_table_naming_row_and_column(tmp_path: Path, case: str) -> None:
    row, expected = BAD_ROWS[case]
    checked = table(write(tmp_path, [*GOOD, row]))
    assert not checked.ok
    (problem,) = checked.problems
    assert problem.line == len(GOOD) + 2  # header is line 1
    found = {(v.path, v.code) for v in problem.violations}
    assert expected <= found, found


def test_duplicate_names_the_first_occurrence(tmp_path: Path) -> None:
    checked = table(write(tmp_path, [*GOOD, GOOD[0]]))
    (problem,) = checked.problems
    (violation,) = problem.violations
    assert "line 2" in violation.message and "cn:grid" in violation.message


@pytest.mark.parametrize(
    ("content", "code"),
    [(b"\xff\xfe not utf-8", "not_utf8"), (b"", "empty"), (b"foo,bar\n1,2\n", "unknown_column")],
    ids=["not_utf8", "empty_file", "unknown_columns"],
)
def test_an_unreadable_table_is_refused(tmp_path: Path, content: bytes, code: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    checked = table(path)
    assert not checked.ok and checked.unreadable
    assert code in {v.code for p in checked.problems for v in p.violations}


def test_a_header_only_table_is_refused(tmp_path: Path) -> None:
    checked = table(write(tmp_path, []))
    assert not checked.ok
    assert {v.code for p in checked.problems for v in p.violations} == {"empty"}


# --- the command ---------------------------------------------------------------------------------


@pytest.fixture
def no_publishing(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record any attempt to make a publisher (a refused table must make none)."""
    calls: list[Any] = []
    monkeypatch.setattr(factors_command, "Publisher", lambda *a, **k: calls.append((a, k)))
    return calls


def test_import_of_a_bad_table_publishes_nothing_and_says_why(
    tmp_path: Path, no_publishing: list[Any]
) -> None:
    path = write(tmp_path, [*GOOD, BAD_ROWS["unknown_unit"][0], BAD_ROWS["missing_source"][0]])
    key = tmp_path / "operator.key.pem"  # never read: the table is refused first
    result = runner.invoke(app, ["factors", "import", str(path), "--key", str(key), "--json"])
    assert result.exit_code == 1, result.output
    assert no_publishing == []
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["published"] == 0
    assert [(p["line"], p["violations"][0]["field"]) for p in doc["problems"]] == [
        (5, "unit"),
        (6, "reference"),
    ]


def test_import_of_an_unreadable_file_exits_4(tmp_path: Path, no_publishing: list[Any]) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"\xff\xfe")
    result = runner.invoke(app, ["factors", "import", str(path), "--dry-run"])
    assert result.exit_code == 4, result.output
    assert no_publishing == []


def test_import_dry_run_of_a_good_table(tmp_path: Path, no_publishing: list[Any]) -> None:
    result = runner.invoke(
        app, ["factors", "import", str(write(tmp_path, GOOD)), "--dry-run", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "file": str(tmp_path / "factors.csv"),
        "ok": True,
        "published": 0,
        "valid": 3,
    }
    assert no_publishing == []


def test_import_dry_run_with_a_key_signs_and_encodes_every_row(
    tmp_path: Path, operator_files: KeyPairFiles
) -> None:
    path = write(tmp_path, GOOD)
    key = str(operator_files.private_key)
    result = runner.invoke(app, ["factors", "import", str(path), "--key", key, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "3 factors valid" in " ".join(result.output.split())


def test_a_version_published_before_is_kept_or_refused_never_changed(tmp_path: Path) -> None:
    checked = table(write(tmp_path, GOOD))
    grid_2022, grid_2023, steel = checked.factors
    published = FactorCatalogue.of(
        [
            FactorVersion(grid_2022, sequence=1, signed_by="op/k", verified=True),
            FactorVersion(steel.model_copy(update={"value": Decimal("2")}), 1, "op/k", True),
        ]
    )
    plan = plan_import(checked, published)
    assert not plan.ok  # steel 2022 was published with another value
    (conflict,) = plan.conflicts
    assert (conflict.factor_id, conflict.violations[0].code) == ("cn:steel", "immutable_version")
    assert plan.already == (grid_2022,) and plan.to_publish == (grid_2023,)
    fine = plan_import(checked, FactorCatalogue.of([FactorVersion(grid_2022, 1, "op/k", True)]))
    assert fine.ok and fine.to_publish == (grid_2023, steel)
    assert plan_import(checked, FactorCatalogue()).to_publish == checked.factors


def test_import_without_a_key_asks_for_one(tmp_path: Path, no_publishing: list[Any]) -> None:
    result = runner.invoke(app, ["factors", "import", str(write(tmp_path, GOOD))])
    assert result.exit_code == 2 and "--key" in result.output
    assert no_publishing == []


# --- versions ------------------------------------------------------------------------------------


def _factor(version: str, value: str) -> EmissionFactor:
    return parse(
        EmissionFactor,
        {
            "factorId": "cn:grid",
            "name": "grid",
            "unit": "kilowatt hour",
            "value": value,
            "source": "MEE",
            "version": version,
        },
    )


def test_the_highest_sequence_is_current_and_older_versions_stay() -> None:
    published = [
        FactorVersion(_factor("2023", "0.5306"), sequence=7, signed_by="op/k", verified=True),
        FactorVersion(_factor("2021", "0.5568"), sequence=3, signed_by="op/k", verified=True),
        FactorVersion(_factor("2022", "0.5366"), sequence=5, signed_by="op/k", verified=True),
    ]
    catalogue = FactorCatalogue.of([*published, published[0]])  # (a retry counts once)
    current = catalogue.current("cn:grid")
    assert current is not None and current.factor.version == "2023"
    assert [v.factor.version for v in catalogue.history("cn:grid")] == ["2021", "2022", "2023"]
    assert catalogue.current("cn:other") is None and catalogue.history("cn:other") == ()


def test_history_list_and_show_from_the_shipped_file() -> None:
    args = ["--file", str(SOURCED_FACTORS), "--json"]
    history = runner.invoke(app, ["factors", "history", "cn:mee:grid:national", *args])
    assert history.exit_code == 0, history.output
    versions = json.loads(history.stdout)["versions"]
    assert [(v["version"], v["value"], v["current"]) for v in versions] == [
        ("2021", "0.5568", False),
        ("2022", "0.5366", False),
        ("2023", "0.5306", True),
    ]
    assert all(v["reference"]["url"].startswith("http") for v in versions)
    shown = json.loads(
        runner.invoke(app, ["factors", "show", "cn:mee:grid:national", *args]).stdout
    )
    assert (shown["version"], shown["versions"], shown["coverage"]) == ("2023", 3, "total")
    assert shown["assumptions"] == ["value only, counted as fossil (excl = incl = fossil = value)"]
    listed = json.loads(runner.invoke(app, ["factors", "list", *args]).stdout)["factors"]
    assert len(listed) == len({f["factorId"] for f in listed})
    assert {f["factorId"]: f["version"] for f in listed}["cn:mee:grid:east"] == "2023"


def test_an_unknown_factor_id_exits_1_and_says_what_to_do() -> None:
    result = runner.invoke(app, ["factors", "history", "cn:nope", "--file", str(SOURCED_FACTORS)])
    assert result.exit_code == 1
    assert "pcfx factors list" in " ".join(result.output.split())


def test_reading_an_unreadable_file_exits_4_naming_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("factorId,name\n")
    result = runner.invoke(app, ["factors", "list", "--file", str(path)])
    assert result.exit_code == 4
    assert "'unit' column is required" in " ".join(result.output.split())
