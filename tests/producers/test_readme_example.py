"""The SDK example in ``producers/README.md`` runs as written, and what it publishes verifies."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pcf_exchange.contracts import AvroSerde, KafkaSchemaRegistry, SignedFootprint, verify
from pcf_exchange.producers import load_signer
from tests.producers.conftest import read_topic

ROOT = Path(__file__).resolve().parents[2]


def _example() -> str:
    text = (ROOT / "producers" / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "producers/README.md has a python example"
    return str(blocks[-1])


@pytest.mark.broker
def test_readme_example_runs_and_publishes_a_verifiable_record(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    script = tmp_path / "example.py"
    script.write_text(_example(), encoding="utf-8")
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PCFX_LEDGER": str(tmp_path / "ledger.json"),
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["ok"] and report["topic"] == "pcf.declared"
    (private,) = (tmp_path / "keys").glob("*.key.pem")
    signer = load_signer(private)
    messages = [
        m
        for m in read_topic(kafka_bootstrap, "pcf.declared", expected=report["offset"] + 1)
        if (m.partition(), m.offset()) == (report["partition"], report["offset"])
    ]
    assert len(messages) == 1
    with KafkaSchemaRegistry(kafka_bootstrap) as registry:
        record = AvroSerde(registry).decode(messages[0].value(), SignedFootprint)
    assert verify(signer.public_key, record)
    assert record.supplier_id == signer.owner and signer.owner in record.footprint.company_ids
    assert record.footprint.product_name_company == "LFP280"
