"""On the real broker: the operator imports the shipped sourced set, then a newer version of one
factor; ``pcfx factors history`` reads every version back from ``pcf.factors`` (signatures checked
under the operator's key), the newest current and the older ones kept. The README's background
database block runs these commands."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from kafka.admin import KafkaAdminClient, NewTopic
from typer.testing import CliRunner

from pcf_exchange.pcfx.cli import app
from pcf_exchange.producers import KeyPairFiles
from pcf_exchange.producers.factors import SOURCED_FACTORS

pytestmark = pytest.mark.broker

runner = CliRunner()


def _run(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def test_import_then_history_from_the_topic(
    kafka_bootstrap: str,
    kafka_admin: KafkaAdminClient,
    operator_files: KeyPairFiles,
    tmp_path: Path,
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}-"
    kafka_admin.create_topics([NewTopic(f"{prefix}pcf.factors", 1, 1)])
    where = ["--bootstrap", kafka_bootstrap, "--topic-prefix", prefix]
    key = operator_files.private_key

    imported = _run("factors", "import", SOURCED_FACTORS, "--key", key, *where, "--json")
    assert imported.exit_code == 0, imported.output
    assert json.loads(imported.stdout)["sent"] == len(json.loads(SOURCED_FACTORS.read_text()))

    newer = tmp_path / "newer.csv"
    newer.write_text(
        "factorId,name,unit,value,source,version,referenceYear,referencePublisher,"
        "referenceTitle,referenceUrl,referencePublished\n"
        "cn:mee:grid:national,China national average,kilowatt hour,0.5,test,2024,2024,"
        "test publisher,test document,https://example.org/2024,2026-01-01\n"
    )
    assert _run("factors", "import", newer, "--key", key, *where).exit_code == 0

    history = _run(
        "factors", "history", "cn:mee:grid:national", *where,
        "--operator-public-key", operator_files.public_key, "--json",
    )  # fmt: skip
    assert history.exit_code == 0, history.output
    versions = json.loads(history.stdout)["versions"]
    assert [(v["version"], v["current"], v["verified"]) for v in versions] == [
        ("2021", False, True),
        ("2022", False, True),
        ("2023", False, True),
        ("2024", True, True),
    ]
    # importing the same set again sends nothing; changing a published version is refused whole
    again = _run("factors", "import", SOURCED_FACTORS, "--key", key, *where, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["published"] == 0
    newer.write_text(newer.read_text().replace(",0.5,", ",0.51,"))
    changed = _run("factors", "import", newer, "--key", key, *where, "--json")
    assert changed.exit_code == 1
    (problem,) = json.loads(changed.stdout)["problems"]
    assert problem["violations"][0]["code"] == "immutable_version"
    listed = _run("factors", "list", *where, "--json")
    factors = json.loads(listed.stdout)["factors"]
    national = next(f for f in factors if f["factorId"] == "cn:mee:grid:national")
    assert (national["version"], national["versions"]) == ("2024", 4)
