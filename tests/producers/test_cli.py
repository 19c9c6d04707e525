"""``pcfx keys`` and ``pcfx publish`` through typer, on a real broker: exit codes, JSON output,
and what actually landed on the topics."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pcf_exchange.contracts import SignedFootprint, SignedSupplierKey, verify
from pcf_exchange.infra.kafka.launcher import free_port
from pcf_exchange.pcfx.commands.publish import keys_app, publish_app
from pcf_exchange.producers import KeyPairFiles, Ledger, load_public_key, load_signer, registration
from tests.producers.conftest import SUPPLIER, Cluster, footprint_json, write_json
from tests.producers.test_input import _csv, _flatten

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _run(app: Any, args: list[Any], **kwargs: Any) -> Any:
    result = runner.invoke(app, [str(a) for a in args], **kwargs)
    return result


def _text(output: str) -> str:
    """Rich wraps long lines at the terminal width: compare without whitespace."""
    return "".join(output.split())


def _json(result: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(result.stdout)
    return data


# -- keys (no broker)


def test_keys_new_supplier_and_operator(tmp_path: Path) -> None:
    result = _run(keys_app, ["new", "--supplier", "acme", "--out-dir", tmp_path, "--json"])
    assert result.exit_code == 0, result.output
    made = _json(result)
    assert made["owner"] == "acme" and made["role"] == "supplier" and not made["encrypted"]
    assert stat.S_IMODE(Path(made["privateKey"]).stat().st_mode) == 0o600
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    result = _run(
        keys_app,
        ["new", "--operator", "--out-dir", tmp_path, "--passphrase-file", secret, "--json"],
    )
    assert result.exit_code == 0, result.output
    operator = _json(result)
    assert operator["role"] == "operator" and operator["encrypted"]
    shown = _run(keys_app, ["show", operator["publicKey"], "--json"])
    assert _json(shown)["owner"] == "operator" and _json(shown)["keyId"] == operator["keyId"]
    both = _run(keys_app, ["new", "--operator", "--supplier", "x"])
    assert both.exit_code == 2


def test_dry_run_needs_no_broker(tmp_path: Path, supplier_files: KeyPairFiles) -> None:
    path = write_json(tmp_path / "cells.json", [footprint_json(i) for i in range(3)])
    result = _run(
        publish_app,
        [
            "footprints",
            path,
            "--key",
            supplier_files.private_key,
            "--supplier",
            SUPPLIER,
            "--dry-run",
            "--json",
            "--bootstrap",
            f"127.0.0.1:{free_port()}",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = _json(result)
    assert summary["dryRun"] and summary["valid"] == 3 and summary["sent"] == 0
    assert all(r["status"] == "valid" and r["sequence"] for r in summary["records"])
    ledger = Ledger.default().path
    assert ledger is not None and not ledger.exists(), "a dry run writes no ledger"


def test_unreachable_broker_exits_3_claiming_nothing(
    tmp_path: Path, supplier_files: KeyPairFiles
) -> None:
    path = write_json(tmp_path / "cells.json", [footprint_json(1)])
    result = _run(
        publish_app,
        [
            "footprints",
            path,
            "--key",
            supplier_files.private_key,
            "--supplier",
            SUPPLIER,
            "--bootstrap",
            f"127.0.0.1:{free_port()}",
        ],
    )
    assert result.exit_code == 3
    assert _text("nothing was sent") in _text(result.stderr)
    assert "OK" not in result.stdout


def test_key_of_another_supplier_is_refused_before_anything(
    tmp_path: Path, supplier_files: KeyPairFiles
) -> None:
    path = write_json(tmp_path / "cells.json", [footprint_json(1)])
    result = _run(
        publish_app,
        [
            "footprints",
            path,
            "--key",
            supplier_files.private_key,
            "--supplier",
            "other-co",
            "--dry-run",
        ],
    )
    assert result.exit_code == 1
    assert _text(f"belongs to '{SUPPLIER}', not to 'other-co'") in _text(result.stderr)


def test_factors_need_the_operator_key(tmp_path: Path, supplier_files: KeyPairFiles) -> None:
    result = _run(
        publish_app,
        [
            "factors",
            ROOT / "producers/data/factors-cn.json",
            "--key",
            supplier_files.private_key,
            "--dry-run",
        ],
    )
    assert result.exit_code == 1
    assert _text("needs an operator key") in _text(result.stderr)


def test_unreadable_and_wrong_format_files_exit_4(
    tmp_path: Path, supplier_files: KeyPairFiles
) -> None:
    good = write_json(tmp_path / "cells.json", [footprint_json(1)])
    wrong = tmp_path / "cells.xlsx"
    wrong.write_bytes(b"PK")
    result = _run(
        publish_app,
        [
            "footprints",
            good,
            wrong,
            tmp_path / "missing.json",
            "--key",
            supplier_files.private_key,
            "--supplier",
            SUPPLIER,
            "--dry-run",
            "--json",
        ],
    )
    assert result.exit_code == 4
    summary = _json(result)
    assert summary["valid"] == 1
    assert set(summary["unreadableFiles"]) == {str(wrong), str(tmp_path / "missing.json")}
    assert summary["byError"] == {"unknown_format": 1, "unreadable": 1}


# -- on the broker


def _publish_args(cluster: Cluster, files: KeyPairFiles, *paths: Path) -> list[Any]:
    return [
        "footprints",
        *paths,
        "--key",
        files.private_key,
        "--supplier",
        files.owner,
        "--topic",
        cluster.topics.declared,
        *cluster.scope(),
    ]


@pytest.mark.broker
def test_publish_mixed_file_and_csv(
    cluster: Cluster, supplier_files: KeyPairFiles, tmp_path: Path
) -> None:
    records = [footprint_json(i) for i in range(4)]
    records[2]["pcf"]["dqi"]["temporalDQR"] = "7"
    path = write_json(tmp_path / "cells.json", {"data": records})
    csv_path = tmp_path / "more.csv"
    csv_path.write_text(_csv([_flatten(footprint_json(10)), _flatten(footprint_json(11))]))
    result = _run(publish_app, [*_publish_args(cluster, supplier_files, path, csv_path), "--json"])
    assert result.exit_code == 1, result.output
    summary = _json(result)
    assert (summary["sent"], summary["rejected"], summary["failed"]) == (5, 1, 0)
    rejected = [r for r in summary["records"] if r["status"] == "rejected"]
    assert rejected[0]["ref"] == f"{path}#2"
    assert rejected[0]["violations"][0]["path"] == "pcf.dqi.temporalDQR"
    assert "not registered" in summary["warning"]
    assert {r["ref"] for r in summary["records"] if r["status"] == "sent"} >= {
        f"{csv_path}:2",
        f"{csv_path}:3",
    }
    messages = cluster.read(cluster.topics.declared, expected=5)
    assert len(messages) == 5
    serde, registry = _registry_serde(cluster)
    signer = load_signer(supplier_files.private_key)
    try:
        for message in messages:
            assert verify(signer.public_key, serde.decode(message.value(), SignedFootprint))
    finally:
        registry.close()
    # the human summary
    again = _run(publish_app, _publish_args(cluster, supplier_files, path))
    assert again.exit_code == 1
    assert "FAIL" in again.stdout and "sent (acknowledged)" in again.stdout
    assert "error: range" in again.stdout


def _registry_serde(cluster: Cluster) -> Any:
    from pcf_exchange.contracts import AvroSerde, KafkaSchemaRegistry

    # the CLI uses the registry topic of its --topic-prefix: the cluster's own
    registry = KafkaSchemaRegistry(cluster.bootstrap, topic=cluster.schemas_topic)
    return AvroSerde(registry), registry


@pytest.mark.broker
def test_operator_registers_revokes_and_a_revoked_key_cannot_publish(
    cluster: Cluster,
    supplier_files: KeyPairFiles,
    operator_files: KeyPairFiles,
    tmp_path: Path,
) -> None:
    common = cluster.scope()
    result = _run(
        keys_app,
        [
            "register",
            "--key",
            operator_files.private_key,
            "--public-key",
            supplier_files.public_key,
            "--valid-until",
            "2099-01-01T00:00:00Z",
            "--namespace",
            "urn:pact:example-cells.cn",
            "--namespace",
            "urn:gtin:06901234567892",
            "--json",
            *common,
        ],
    )
    assert result.exit_code == 0, result.output
    listed = _run(
        keys_app,
        ["list", "--json", "--operator-public-key", operator_files.public_key, *common],
    )
    assert listed.exit_code == 0, listed.output
    (row,) = _json(listed)["keys"]
    assert (row["supplierId"], row["keyId"], row["state"]) == (
        SUPPLIER,
        supplier_files.key_id,
        "active",
    )
    assert row["role"] == "company"
    assert row["namespaces"] == ["urn:pact:example-cells.cn", "urn:gtin:06901234567892"]
    path = write_json(tmp_path / "cells.json", [footprint_json(1)])
    ok = _run(publish_app, [*_publish_args(cluster, supplier_files, path), "--json"])
    assert ok.exit_code == 0, ok.output
    assert "warning" not in _json(ok)
    revoked = _run(
        keys_app,
        [
            "revoke",
            "--key",
            operator_files.private_key,
            "--supplier",
            SUPPLIER,
            "--key-id",
            supplier_files.key_id,
            "--at",
            "2020-01-01T00:00:00Z",
            *common,
        ],
    )
    assert revoked.exit_code == 0, revoked.output
    messages = cluster.read(cluster.topics.keys, expected=2)
    serde, registry = _registry_serde(cluster)
    try:
        keys = [serde.decode(m.value(), SignedSupplierKey) for m in messages]
    finally:
        registry.close()
    operator_key = load_public_key(operator_files.public_key)
    assert [k.key.revoked_at is not None for k in keys] == [False, True]
    assert keys[1].sequence > keys[0].sequence
    assert all(verify(operator_key, k) for k in keys)
    refused = _run(publish_app, _publish_args(cluster, supplier_files, path))
    assert refused.exit_code == 1
    assert "revoked" in refused.stderr and _text("nothing was sent") in _text(refused.stderr)
    assert len(cluster.read(cluster.topics.declared, expected=1, timeout_s=5)) == 1


@pytest.mark.broker
def test_a_key_registered_to_another_supplier_is_refused(
    cluster: Cluster,
    supplier_files: KeyPairFiles,
    operator_signer: Any,
    tmp_path: Path,
) -> None:
    supplier_key = load_public_key(supplier_files.public_key)
    # registered through the cluster's registry topic, the one the CLI reads under its prefix
    with cluster.publisher(operator_signer) as operator:
        assert operator.publish_key(
            registration("other-co", supplier_key, registered_by="operator")
        ).ok
    path = write_json(tmp_path / "cells.json", [footprint_json(1)])
    result = _run(publish_app, _publish_args(cluster, supplier_files, path))
    assert result.exit_code == 1
    assert _text("registered for 'other-co'") in _text(result.stderr)
    assert cluster.read(cluster.topics.declared, expected=0, timeout_s=3) == []


@pytest.mark.broker
def test_supersedes_and_rerun(
    cluster: Cluster, supplier_files: KeyPairFiles, tmp_path: Path
) -> None:
    old_path = write_json(
        tmp_path / "old.json", [footprint_json(1, created="2025-01-01T00:00:00Z")]
    )
    new = footprint_json(2, created="2025-09-01T00:00:00Z")
    new["productIds"] = footprint_json(1)["productIds"]
    new_path = write_json(tmp_path / "new.json", [new])
    first = _run(publish_app, [*_publish_args(cluster, supplier_files, old_path), "--json"])
    assert first.exit_code == 0, first.output
    update = _run(
        publish_app,
        [*_publish_args(cluster, supplier_files, new_path), "--supersedes", old_path],
    )
    assert update.exit_code == 0, update.output
    assert "deprecated: superseded by" in update.stdout
    rerun = _run(
        publish_app,
        [*_publish_args(cluster, supplier_files, new_path), "--supersedes", old_path, "--json"],
    )
    assert rerun.exit_code == 0, rerun.output
    rerun_outcomes = {r["recordId"][-2:]: r for r in _json(rerun)["records"]}
    assert rerun_outcomes["01"]["status"] == "skipped", "its deprecation was published already"
    assert rerun_outcomes["02"]["status"] == "sent", "the same record again: a duplicate"
    # re-publishing the original (Active) after the update is refused: it was deprecated
    stale = _run(publish_app, [*_publish_args(cluster, supplier_files, old_path), "--json"])
    assert stale.exit_code == 1
    assert _json(stale)["byError"] == {"superseded": 1}
    messages = cluster.read(cluster.topics.declared, expected=4)
    serde, registry = _registry_serde(cluster)
    try:
        seen = [
            (str(r.footprint.id)[-2:], r.footprint.status, r.sequence)
            for r in (serde.decode(m.value(), SignedFootprint) for m in messages)
        ]
    finally:
        registry.close()
    assert [(i, s) for i, s, _ in seen] == [
        ("01", "Active"),
        ("01", "Deprecated"),
        ("02", "Active"),
        ("02", "Active"),
    ]
    assert seen[2][2] == seen[3][2], "the re-run repeats the sequence"


@pytest.mark.broker
def test_publish_factors_and_bom(
    cluster: Cluster, operator_files: KeyPairFiles, supplier_files: KeyPairFiles, tmp_path: Path
) -> None:
    result = _run(
        publish_app,
        [
            "factors",
            ROOT / "producers/data/factors-cn.json",
            "--key",
            operator_files.private_key,
            "--bootstrap",
            cluster.bootstrap,
            "--topic-prefix",
            cluster.prefix,
            "--topic",
            cluster.topics.factors,
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    sent = _json(result)["sent"]
    assert sent >= 20
    assert len(cluster.read(cluster.topics.factors, expected=sent)) == sent
    from tests.producers.conftest import bom_json

    bom_path = write_json(tmp_path / "bom.json", bom_json(owner=None, revision=0))
    result = _run(
        publish_app,
        [
            "bom",
            bom_path,
            "--key",
            supplier_files.private_key,
            "--supplier",
            SUPPLIER,
            "--topic",
            cluster.topics.bom,
            *cluster.scope(),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    (record,) = _json(result)["records"]
    assert "revision" in record["note"] and record["sequence"] > 0


def test_progress_bar_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    from pcf_exchange.pcfx.commands import publish as cli

    with cli._progress(True, "publishing footprints") as tick:
        assert tick is not None
        for _ in range(3):
            tick(1)
    with cli._progress(False, "quiet") as tick:
        assert tick is None


def test_a_company_key_cannot_be_registered_without_namespaces(
    supplier_files: KeyPairFiles, operator_files: KeyPairFiles
) -> None:
    result = _run(
        keys_app,
        [
            "register",
            "--key",
            operator_files.private_key,
            "--public-key",
            supplier_files.public_key,
            "--bootstrap",
            "127.0.0.1:1",
        ],
    )
    assert result.exit_code == 2
    assert "--namespace" in result.output and "urn:pact:acme.cn" in result.output
