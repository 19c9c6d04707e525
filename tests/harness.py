"""The test-and-bench harness (not installed): exchange participants with their keys, and the
command lines of streams workers, as the broker tests, the reliability tests and the streams
benchmark build their exchanges (one place, so all drive the workers the same way). The
demo's own session is :mod:`pcf_exchange.pcfx._exchange`.

* :class:`Participants` -- the operator, the streams' service key, and every
  supplier/manufacturer with a signing key; turns payloads into the signed records the ingest
  agents verify (key registrations signed by the operator, factors by the operator, footprints
  and BOMs by their owners), one by one or batch-signed as ``pcfx publish`` does;
* :func:`worker_command` / :func:`start_worker` -- a ``pcfx streams run`` worker process;
* :func:`demo_on_its_own_secure_broker` -- one ``pcfx demo`` process with no broker configured.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pcf_exchange.contracts import (
    BillOfMaterials,
    EmissionFactor,
    Payload,
    ProductFootprint,
    SignedBillOfMaterials,
    SignedEmissionFactor,
    SignedFootprint,
    SignedRecord,
    SignedSupplierKey,
    SignerRole,
    SupplierKey,
    sign,
    sign_batch,
)
from pcf_exchange.pcfx._exchange import namespace_of, stop_worker
from pcf_exchange.producers.keys import load_private_key, new_key_pair

__all__ = [
    "OPERATOR_ID",
    "SERVICE_ID",
    "DemoRun",
    "Participants",
    "demo_on_its_own_secure_broker",
    "namespace_of",
    "raw_public",
    "start_worker",
    "stop_worker",
    "worker_command",
]

ROOT = Path(__file__).resolve().parents[1]
PCFX = [sys.executable, "-m", "pcf_exchange.pcfx"]

OPERATOR_ID = "operator"
SERVICE_ID = "pcfx-streams"
"""Whom the streams workers' service key is registered for."""

_Signed = TypeVar("_Signed", bound=SignedRecord)


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass
class Participants:
    """The operator (key files in *keydir*, the public one for ``--operator-key``) and one
    Ed25519 key per owner, created on first use; key ids are ``<owner>-k1``."""

    keydir: Path
    keys: dict[str, Ed25519PrivateKey] = field(default_factory=dict)
    namespaces: dict[str, list[str]] = field(default_factory=dict)
    """owner -> the product-id namespaces its registration grants (:meth:`claim`)."""

    def __post_init__(self) -> None:
        files = new_key_pair(OPERATOR_ID, self.keydir)
        self.operator = load_private_key(files.private_key)
        self.operator_pub: Path = files.public_key
        self.operator_key_id: str = files.key_id
        service = new_key_pair(SERVICE_ID, self.keydir)
        self.service_key: Path = service.private_key
        """The streams workers' service key file (``--service-key``): it signs pcf.products."""
        self.service_key_id: str = service.key_id

    def service_registration(self, sequence: int = 1) -> SignedSupplierKey:
        """The operator's registration of the streams' service key (role ``service``)."""
        return self.registration(
            SERVICE_ID,
            sequence,
            key_id=self.service_key_id,
            public_key=raw_public(load_private_key(self.service_key)),
            role=SignerRole.SERVICE,
        )

    def key(self, owner: str) -> Ed25519PrivateKey:
        return self.keys.setdefault(owner, Ed25519PrivateKey.generate())

    @staticmethod
    def key_id(owner: str) -> str:
        return f"{owner}-k1"

    def claim(self, owner: str, product_id: str) -> bool:
        """Grant *owner* the namespace of *product_id* in its next registration; whether it is
        new (then the key must be registered again)."""
        namespaces = self.namespaces.setdefault(owner, [])
        namespace = namespace_of(product_id)
        if namespace in namespaces:
            return False
        namespaces.append(namespace)
        return True

    def registration(self, owner: str, sequence: int = 1, **changes: Any) -> SignedSupplierKey:
        """The operator's registration of *owner*'s key (valid since 2020, with the namespaces
        it :meth:`claim`-ed); *changes* override fields (``valid_from``, ``revoked_at``...)."""
        registration = SupplierKey(
            supplier_id=owner,
            key_id=self.key_id(owner),
            public_key=raw_public(self.key(owner)),
            valid_from=datetime(2020, 1, 1, tzinfo=UTC),
            registered_by=OPERATOR_ID,
            namespaces=tuple(self.namespaces.get(owner, ())),
        ).model_copy(update=changes)
        return self._operator_signed(SignedSupplierKey, registration, sequence)

    def factor(self, factor: EmissionFactor, sequence: int) -> SignedEmissionFactor:
        return self._operator_signed(SignedEmissionFactor, factor, sequence)

    def _operator_signed(self, kind: type[_Signed], record: Payload, sequence: int) -> _Signed:
        """*record* signed with the operator's key, in its envelope *kind*."""
        signed = sign(
            self.operator,
            record,
            supplier_id=OPERATOR_ID,
            key_id=self.operator_key_id,
            sequence=sequence,
        )
        assert isinstance(signed, kind)
        return signed

    def footprint(
        self, fp: ProductFootprint, sequence: int, key: Ed25519PrivateKey | None = None
    ) -> SignedFootprint:
        """*fp* signed by its supplier (``companyIds[0]``), or by *key* (a forgery)."""
        owner = fp.company_ids[0]
        signed = sign(
            key or self.key(owner),
            fp,
            supplier_id=owner,
            key_id=self.key_id(owner),
            sequence=sequence,
        )
        assert isinstance(signed, SignedFootprint)
        return signed

    def footprints(
        self, fps: Sequence[ProductFootprint], sequences: Sequence[int]
    ) -> list[SignedFootprint]:
        """One supplier's footprints batch-signed (one Ed25519 signature over a Merkle root)."""
        if not fps:
            return []
        owner = fps[0].company_ids[0]
        batch = sign_batch(
            self.key(owner), fps, supplier_id=owner, key_id=self.key_id(owner), sequences=sequences
        )
        records = [r for r in batch.records if isinstance(r, SignedFootprint)]
        assert len(records) == len(fps)
        return records

    def bom(self, bom: BillOfMaterials, signer: str | None = None) -> SignedBillOfMaterials:
        """*bom* signed by its owner (or *signer*), with its revision as the sequence."""
        owner = signer or bom.owner or "unknown"
        key_id, sequence = self.key_id(owner), bom.revision
        signed = sign(self.key(owner), bom, supplier_id=owner, key_id=key_id, sequence=sequence)
        assert isinstance(signed, SignedBillOfMaterials)
        return signed


def worker_command(
    operator_pub: Path,
    *,
    service_key: Path,
    app_id: str,
    topic_prefix: str,
    partitions: int,
    data_dir: Path,
    key_grace_s: float = 5.0,
    loglevel: str = "warn",
) -> list[str]:
    """The ``pcfx streams run`` command line of one worker."""
    return [
        sys.executable, "-m", "pcf_exchange.pcfx", "streams", "run",
        "--operator-key", str(operator_pub),
        "--service-key", str(service_key),
        "--group", app_id,
        "--topic-prefix", topic_prefix,
        "--partitions", str(partitions),
        "--data-dir", str(data_dir),
        "--key-grace", f"{key_grace_s:g}",
        "--log-level", loglevel,
    ]  # fmt: skip


def start_worker(
    bootstrap: str, command: list[str], log_file: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start *command* (see :func:`worker_command`) with its output in *log_file*."""
    log = log_file.open("wb")
    try:
        return subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {}), "KAFKA_BOOTSTRAP_SERVERS": bootstrap},
        )
    finally:
        log.close()  # the child has its own descriptor


@dataclass(frozen=True)
class DemoRun:
    """One ``pcfx demo`` process: how it ended, and its ``--workdir`` (``figures.json``, the
    audit report, the labels, the principals' client configs in ``kafka/``)."""

    result: subprocess.CompletedProcess[str]
    workdir: Path


def demo_on_its_own_secure_broker(home: Path) -> DemoRun:
    """``pcfx demo --workdir <home>/work`` with no broker configured, as a user runs it: it starts
    a local --secure broker (SASL_SSL, ACLs; state in ``<home>/broker``) and plays the whole
    story on it. The broker is stopped again however the run ends."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KAFKA_", "PCFX_TOPIC_PREFIX", "PCFX_BROKER_DIR"))
    }
    env |= {"PCFX_BROKER_DIR": str(home / "broker"), "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    try:
        result = subprocess.run(
            [*PCFX, "demo", "--workdir", str(home / "work")],
            capture_output=True, text=True, timeout=1400, env=env, cwd=home, check=False,
        )  # fmt: skip
    finally:  # never leave the broker running, whatever happened
        subprocess.run(
            [*PCFX, "broker", "stop"],
            capture_output=True, text=True, timeout=120, env=env, check=False,
        )  # fmt: skip
    return DemoRun(result, home / "work")
