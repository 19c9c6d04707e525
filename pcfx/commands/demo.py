"""``pcfx demo``: the whole exchange on a lithium-iron-phosphate battery supply chain.

The story, each step on the real broker with real signatures, workers and encryption:

1. the operator registers every party's signing key and publishes sourced background factors;
2. raw-material suppliers publish signed PACT footprints, manufacturers their BOMs
   (cathode and anode material, cell per kWh, module, pack, city bus);
3. a streams worker rolls everything up: the pack's footprint appears, with lineage;
4. the cell maker moves to hydro power: the change reaches the pack and the bus in seconds;
5. a forged supplier record is refused into the DLQ, with the reason;
6. the gateway releases the pack's footprint to an EU customer (location generalised, BOM
   detail withheld, encrypted to the customer), holds a transfer for approval, which is
   approved; the audit log verifies; an HTML compliance report is written;
7. the operator registers a certification body, which certifies the cell maker's current
   footprint against its PCR pack and prints a carbon label (text, QR PNG/SVG, label SVG); the
   label verifies with ``pcfx label verify`` (live) and the PACT API's ``GET /labels/verify``
   (against the snapshot the operator exports);
8. the cell maker's electrolyte supplier publishes a new version: the roll-up republishes the
   cell, the watcher tells holder and body, and the label now verifies as *stale*, naming the
   superseding footprint;
9. a second body certifies and labels the cell, the operator blacklists it: its label is refused
   (``blacklisted_body``);
10. the pack maker's EU Battery Regulation Art. 7 declaration, built from the pack's current
    roll-up (its Annex II stages split from the roll-ups' lineage, :func:`annex_ii_stages`),
    goes to the EU customer through the gateway (``pcfx declarations art7 --kafka``: decided,
    sealed, one audit entry), and the customer opens it.

The certification and declaration steps run the very ``pcfx`` commands each party would, in
this process (:func:`_pcfx_here`: no interpreter start-up per command); the gateway act runs
them as separate processes, with each party's own principal on a secure broker.

Every run uses a fresh topic namespace (``demo-<time>.``) so runs never see each other's data.

With ``--keep-running`` the streams worker and a gateway stay up afterwards (pids and logs in
``<workdir>/services.json``, the settings to use them in ``<workdir>/env.sh``, which the README's
walkthroughs source); ``pcfx demo stop`` stops them, and the local broker if the demo started it.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from rich.table import Table

from pcf_exchange.contracts import (
    AvroSerde,
    BillOfMaterials,
    EmissionFactor,
    KafkaSchemaRegistry,
    ProductFootprint,
    Rejection,
    RolledUpFootprint,
    SignerRole,
    SupplierKey,
    load_boms,
    load_factors,
    load_footprints,
    register_missing,
    register_schemas,
    sign,
    subject_for,
    to_pact_json,
    topic_schemas,
)
from pcf_exchange.contracts.errors import BrokerError, PcfError
from pcf_exchange.contracts.kafka_client import use_config_file
from pcf_exchange.gateway.runtime import Topics, gateway_schemas
from pcf_exchange.pcfx._exchange import ExchangeSession, namespace_of, stop_worker
from pcf_exchange.pcfx._services import Service, Services, start_service, stop_services
from pcf_exchange.pcfx.console import console, err_console, handle_errors, print_json
from pcf_exchange.pcfx.options import JsonOut
from pcf_exchange.pcfx.settings import bootstrap_servers
from pcf_exchange.producers.delivery import KafkaSink
from pcf_exchange.producers.keys import (
    KeyPairFiles,
    KeyRole,
    key_id_of,
    load_private_key,
    new_key_pair,
)

__all__ = ["DEMO_DIR", "DemoExchange", "demo_app", "records_on", "run_demo"]

ROOT = Path(__file__).resolve().parents[2]
"""The folder holding the packages: the repository in a checkout, site-packages when installed."""


def _demo_dir() -> Path:
    """The demo's supply chain: the repository's ``demo/lfp`` in a checkout, else the copy an
    installed wheel carries as package data (``pcfx.demo_data``, see pyproject.toml)."""
    checkout = ROOT / "demo" / "lfp"
    if checkout.is_dir():
        return checkout
    try:
        return Path(str(importlib.resources.files("pcf_exchange.pcfx.demo_data") / "lfp"))
    except ModuleNotFoundError:
        return checkout  # (neither: the loaders name the missing file)


DEMO_DIR = _demo_dir()
FACTORS_FILE = ROOT / "producers" / "data" / "factors-cn.json"


def _values(loaded: list[Any]) -> list[Any]:
    bad = [item for item in loaded if item.error is not None]
    if bad:
        raise bad[0].error
    return [item.value for item in loaded]


SERVICE_ID = "pcfx-streams"
"""Whom the streams workers' service key is registered for (role service)."""
OFFICER_ID = "li-wei"
"""The compliance officer whose registered key (role officer) approves held transfers."""


@dataclass
class DemoExchange(ExchangeSession):
    """One topic namespace on a broker, its operator, and every party's signing key.

    Used by ``pcfx demo`` and by the end-to-end tests: publish signed records as each party,
    run streams workers, and read what came out.
    """

    bootstrap: str
    workdir: Path
    prefix: str
    partitions: int = 6
    detach: bool = False
    """Workers in their own session, left running by :meth:`stop` (``--keep-running``)."""
    keys: dict[str, Ed25519PrivateKey] = field(default_factory=dict)
    sequences: dict[str, int] = field(default_factory=dict)
    namespaces: dict[str, list[str]] = field(default_factory=dict)
    """owner -> the product-id namespaces its key registration grants."""
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        from pcf_exchange.streams.runtime import StreamsConfig, ensure_topics

        files = new_key_pair(
            "operator", self.workdir / "keys", overwrite=True, role=KeyRole.OPERATOR
        )
        self.operator_file = files.private_key
        self.operator = load_private_key(files.private_key)
        self.operator_pub = files.public_key
        self.operator_key_id = files.key_id
        # the streams' service key (signs what they publish on pcf.products) and a compliance
        # officer's key (signs approvals): key files, registered by the operator in step 1
        service = new_key_pair(SERVICE_ID, self.workdir / "keys", overwrite=True)
        self.service_key, self.service_key_id = service.private_key, service.key_id
        officer = new_key_pair(OFFICER_ID, self.workdir / "keys", overwrite=True)
        self.officer_key, self.officer_key_id = officer.private_key, officer.key_id
        ensure_topics(
            StreamsConfig(self.bootstrap, {}, topic_prefix=self.prefix, partitions=self.partitions)
        )
        # every schema of the run's topics, the certification topics' statement schema included,
        # in one write session at set-up, on the run's own registry topic (<prefix>pcf._schemas)
        from pcf_exchange.contracts.certification import STATEMENT_SCHEMA
        from pcf_exchange.producers.certification import CertTopics, ensure_cert_topics

        cert_topics = CertTopics(self.prefix)
        ensure_cert_topics(self.bootstrap, cert_topics)
        register_schemas(
            self.bootstrap,
            [
                *topic_schemas(self.prefix),
                *(
                    (subject_for(topic), STATEMENT_SCHEMA)
                    for topic in (cert_topics.bodies, cert_topics.certificates)
                ),
            ],
            prefix=self.prefix,
        )
        self.serde = AvroSerde(KafkaSchemaRegistry(self.bootstrap, prefix=self.prefix))
        self.sink = KafkaSink(self.bootstrap)

    def register(self, owner: str) -> Ed25519PrivateKey:
        """The operator registers a (new) signing key for *owner* on ``pcf.keys``, with the
        product-id namespaces of the products it declares (:meth:`claim`)."""
        key = self.keys.setdefault(owner, Ed25519PrivateKey.generate())
        self._register(owner, key.public_key(), namespaces=self.namespaces.get(owner, ()))
        return key

    def claim(self, owner: str, *product_ids: str) -> None:
        """Note the namespaces of *product_ids* (``urn:pact:<company>.cn``) for *owner*'s next
        registration: the operator grants each company the product ids it declares."""
        namespaces = self.namespaces.setdefault(owner, [])
        for product_id in product_ids:
            namespace = namespace_of(product_id)
            if namespace not in namespaces:
                namespaces.append(namespace)

    def register_file(self, owner: str, key_file: Path, role: SignerRole) -> None:
        """The operator registers the key in *key_file* for *owner* with *role* on ``pcf.keys``
        (as ``pcfx keys register --role ROLE --public-key ...`` does)."""
        self._register(owner, load_private_key(key_file).public_key(), role=role)

    def _register(
        self,
        owner: str,
        public: Ed25519PublicKey,
        *,
        role: SignerRole = SignerRole.COMPANY,
        namespaces: Sequence[str] = (),
    ) -> None:
        registration = SupplierKey(
            supplier_id=owner,
            key_id=key_id_of(public),
            public_key=public.public_bytes(Encoding.Raw, PublicFormat.Raw),
            valid_from=datetime(2020, 1, 1, tzinfo=UTC),
            registered_by="operator",
            role=role,
            namespaces=tuple(namespaces),
        )
        signed = sign(
            self.operator,
            registration,
            supplier_id="operator",
            key_id=self.operator_key_id,
            sequence=self.next_sequence(f"key:{owner}"),
        )
        self.send("pcf.keys", owner, signed)

    def publish_factor(self, factor: EmissionFactor) -> None:
        signed = sign(
            self.operator,
            factor,
            supplier_id="operator",
            key_id=self.operator_key_id,
            sequence=self.next_sequence(f"factor:{factor.factor_id}"),
        )
        self.send("pcf.factors", factor.factor_id, signed)

    def publish_footprint(self, fp: ProductFootprint, key: Ed25519PrivateKey | None = None) -> None:
        owner = fp.company_ids[0]
        registered = self.keys.get(owner) or self.register(owner)
        signed = sign(  # (with another *key*: a forgery under the registered key's id)
            key or registered,
            fp,
            supplier_id=owner,
            key_id=key_id_of(registered.public_key()),
            sequence=self.next_sequence(f"fp:{fp.product_ids[0]}"),
        )
        self.send("pcf.declared", fp.product_ids[0], signed)

    def publish_bom(self, bom: BillOfMaterials) -> None:
        owner = bom.owner or "unknown"
        signer = self.keys.get(owner) or self.register(owner)
        key_id = key_id_of(signer.public_key())
        signed = sign(signer, bom, supplier_id=owner, key_id=key_id, sequence=bom.revision)
        self.send("pcf.bom", bom.product_id, signed)

    def publish_chain(self) -> tuple[list[ProductFootprint], list[BillOfMaterials]]:
        """Keys, factors, supplier footprints, then BOMs top tier first (order must not matter)."""
        factors = cast(list[EmissionFactor], _values(load_factors(FACTORS_FILE)))
        footprints = cast(
            list[ProductFootprint], _values(load_footprints(DEMO_DIR / "suppliers-footprints.json"))
        )
        boms = cast(list[BillOfMaterials], _values(load_boms(DEMO_DIR / "manufacturers-boms.json")))
        for bom in boms:
            self.claim(bom.owner or "", bom.product_id)
        for fp in footprints:
            self.claim(fp.company_ids[0], *fp.product_ids)
        for owner in {*(b.owner or "" for b in boms), *(f.company_ids[0] for f in footprints)}:
            self.register(owner)
        self.register_file(SERVICE_ID, self.service_key, SignerRole.SERVICE)
        self.register_file(OFFICER_ID, self.officer_key, SignerRole.OFFICER)
        for factor in factors:
            self.publish_factor(factor)
        for fp in footprints:
            self.publish_footprint(fp)
        for bom in reversed(boms):
            self.publish_bom(bom)
        return footprints, boms

    # --- workers -------------------------------------------------------------------------------

    def start_worker(self, name: str = "w1") -> subprocess.Popen[bytes]:
        log = (self.workdir / f"worker-{name}.log").open("wb")
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "pcf_exchange.pcfx", "streams", "run",
                "--operator-key", str(self.operator_pub),
                "--service-key", str(self.service_key),
                "--group", f"{self.prefix}streams",
                "--topic-prefix", self.prefix,
                "--partitions", str(self.partitions),
                "--data-dir", str(self.workdir / f"data-{name}"),
                "--key-grace", "5",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=principal_env(self.bootstrap, self.workdir, "streams"),
            start_new_session=self.detach,
        )  # fmt: skip
        self.workers.append(proc)
        return proc

    def stop(self) -> None:
        """Stop the workers (unless detached) and close the producer."""
        for proc in [] if self.detach else self.workers:
            stop_worker(proc)
        self.sink.close(timeout_s=10)


# --- the gateway act: the very commands a compliance officer and a recipient run ---------------

EU_OEM = "eu-battery-oem-de"
NOTIFIED_BODY = "eu-notified-body-fr"
_HOLD_RULE = """  - id: D01-plant-address-for-verification
    when: {class: facility-address, purpose: battery-cf-verification}
    actions:
      domestic: allow
      eu: {action: hold, then: allow}
      other: {action: hold, then: allow}
    basis: "demo: on-site verification needs the exact plant address; released per approval"
"""


def principal_env(bootstrap: str, workdir: Path, principal: str) -> dict[str, str]:
    """The environment a demo party's process runs with: on the secure broker the demo started,
    the client config of *principal* (``<workdir>/kafka/<principal>.properties``, made by
    :func:`_demo_tenants`), so the broker grants it what its role's ACLs allow and no more;
    otherwise the settings this process has."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    config = workdir / "kafka" / f"{principal}.properties"
    if config.exists():
        env["KAFKA_CLIENT_CONFIG"] = str(config)
    return env


def _pcfx(
    bootstrap: str, *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pcf_exchange.pcfx", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env or {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap},
        check=False,
    )
    if check and result.returncode != 0:
        raise PcfError(f"pcfx {' '.join(args[:3])} failed ({result.returncode}):\n{result.stderr}")
    return result


def _gateway_files(bootstrap: str, keys: Path) -> tuple[Path, Path]:
    """Gateway and recipients' keys, the PACT API service's keys (X25519 to open what the gateway
    releases for it, Ed25519 to seal its disclosure audit chain), the shipped policy with these
    recipients' keys and a hold rule for the notified body, and the demo's subscriptions."""
    from pcf_exchange.gateway._keys import (
        load_recipient_private_key,
        policy_with_recipient_keys,
        write_gateway_key,
        write_recipient_key,
    )
    from pcf_exchange.gateway.policy import default_policy_path

    _pcfx(bootstrap, "gateway", "keys", "signing", "--out", str(keys / "gateway.key.pem"))
    write_recipient_key(keys / "api.x25519.pem")
    write_gateway_key(keys / "api.key.pem")
    public = {}
    for rid in (EU_OEM, NOTIFIED_BODY):
        path = keys / f"{rid}.x25519.pem"
        _pcfx(bootstrap, "gateway", "keys", "recipient", "--out", str(path))
        public[rid] = load_recipient_private_key(path).public_key()
    text = policy_with_recipient_keys(Path(default_policy_path()).read_text(), public)
    # the notified body's purpose gets the hold rule instead of the usual generalisation
    r09 = "  - id: R09-facility-address\n    when: {class: facility-address}\n"
    scoped = (
        "  - id: R09-facility-address\n    when:\n      class: facility-address\n"
        "      purpose: [pcf-exchange, battery-regulation-art7, cbam-reporting, "
        "carbon-label-certification]\n"
    )
    anchor = "  - id: R10a-facility-coordinates\n"
    if text.count(r09) != 1 or text.count(anchor) != 1:
        raise PcfError("the shipped policy changed: the demo's edits no longer apply")
    policy = keys.parent / "policy.yaml"
    policy.write_text(text.replace(r09, scoped).replace(anchor, _HOLD_RULE + anchor))
    subscriptions = keys.parent / "subscriptions.yaml"
    subscriptions.write_text(
        "schema_version: 1\nsubscriptions:\n"
        f"  - recipient: {EU_OEM}\n    purpose: battery-regulation-art7\n"
        f'    products: ["{PACK}"]\n'
        f"  - recipient: {NOTIFIED_BODY}\n    purpose: battery-cf-verification\n"
        f'    products: ["{PACK}"]\n'
    )
    return policy, subscriptions


def _decrypt(bootstrap: str, prefix: str, keys: Path, recipient: str) -> list[dict[str, Any]]:
    out = _must(
        "outbound", "decrypt",
        "--recipient", recipient,
        "--key", str(keys / f"{recipient}.x25519.pem"),
        "--gateway-pub", str(keys / "gateway.key.pub.pem"),
        "--topic-prefix", prefix,
        "--bootstrap", bootstrap,
    )  # fmt: skip
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _lineage(message: dict[str, Any]) -> dict[str, Any]:
    for extension in message["footprint"].get("extensions", ()):
        lineage = extension.get("data", {}).get("lineage")
        if lineage is not None:
            return dict(lineage)
    return {}


def _gateway_run(prefix: str, workdir: Path, operator_pub: Path) -> list[str]:
    """``pcfx gateway run`` with the demo's policy, subscriptions and key (runs until stopped);
    it trusts the service and officer keys the operator (*operator_pub*) registered, and
    releases the EU customer's footprints for the PACT API too (``pcfx api serve``)."""
    return [
        "gateway", "run",
        "--policy", str(workdir / "policy.yaml"),
        "--subscriptions", str(workdir / "subscriptions.yaml"),
        "--gateway-key", str(workdir / "gateway-keys" / "gateway.key.pem"),
        "--operator-key", str(operator_pub),
        "--topic-prefix", prefix,
        "--group", f"{prefix}gateway",
        "--api-key", str(workdir / "gateway-keys" / "api.x25519.pub.pem"),
        "--api-recipient", EU_OEM,
    ]  # fmt: skip


def records_on(bootstrap: str, topic: str) -> int:
    """How many records *topic* holds now (the sum of its partitions' end offsets)."""
    from kafka import KafkaConsumer, TopicPartition

    from pcf_exchange.contracts.kafka_client import kafka_python_kwargs

    consumer = KafkaConsumer(**kafka_python_kwargs(), bootstrap_servers=bootstrap)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        ends = consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
        return sum(ends.values())
    finally:
        consumer.close()


def gateway_act(
    bootstrap: str, prefix: str, workdir: Path, *, operator_pub: Path, officer_key: Path
) -> dict[str, Any]:
    keys = workdir / "gateway-keys"
    _gateway_files(bootstrap, keys)
    run = [*_gateway_run(prefix, workdir, operator_pub), "--json"]
    # the operator registers the gateway's schemas: the gateway's principal may not
    register_missing(
        bootstrap, gateway_schemas(Topics(prefix), (EU_OEM, NOTIFIED_BODY)), prefix=prefix
    )
    as_gateway = principal_env(bootstrap, workdir, "gateway")
    # the roll-ups are all there: the run ends once it has taken every one of them (else once
    # nothing came for 15 s)
    backlog = records_on(bootstrap, f"{prefix}pcf.products")
    until = ["--max-records", str(backlog)] if backlog else ["--idle-seconds", "15"]
    out = _pcfx(bootstrap, *run, *until, env=as_gateway).stdout
    stats = json.loads(out[out.index("{") :])
    eu = _decrypt(bootstrap, prefix, keys, EU_OEM)[-1]
    pcf = eu["footprint"]["pcf"]
    facility = _lineage(eu).get("facility", {})
    inputs = _lineage(eu).get("inputs", [])
    table = Table(title=f"What {EU_OEM} received: the pack's EU Battery Regulation declaration")
    table.add_column("field")
    table.add_column("value")
    table.add_row("carbon footprint", f"{pcf['pcfExcludingBiogenicUptake']} kgCO2e per kWh")
    table.add_row("plant location", f"{facility.get('city')} (generalised from the city)")
    table.add_row(
        "sub-tier suppliers", ", ".join(str(i.get("productId", i.get("factorId"))) for i in inputs)
    )
    table.add_row("signed by the gateway, encrypted to", eu["recipientId"])
    console.print(table)
    console.print(
        f"Gateway run: {stats.get('sent')} sent, {stats.get('held')} held for approval, "
        f"{stats.get('no_footprint')} transient incomplete roll-ups skipped (no PACT footprint)."
    )
    # the officer's and the recipients' commands run in this process (_pcfx_here): the same
    # command code without a second interpreter's start-up each; the gateway runs as its own
    # principal (as_gateway), in its own process
    pending = json.loads(
        _must("approvals", "list", "--topic-prefix", prefix, "--bootstrap", bootstrap, "--json")
    )
    for approval in pending:
        held = ", ".join(sorted({h["path"].rsplit(".", 1)[-1] for h in approval["held"]}))
        console.print(
            f"[yellow]HELD[/] {approval['approvalId'][:8]}… for {approval['recipient']}: {held}"
        )
        _must(
            "approvals", "approve", approval["approvalId"],
            "--key", str(officer_key),
            "--reason", "on-site verification under standard contract SC-2026-0117",
            "--topic-prefix", prefix,
            "--bootstrap", bootstrap,
        )  # fmt: skip
        console.print(
            f"[green]APPROVED[/] {approval['approvalId'][:8]}… by {OFFICER_ID}"
            " (signed with the officer key the operator registered)"
        )
    # releases the approved transfers. The decisions are read to their end before it joins the
    # group, and its idle clock starts only once it holds its partitions with their chains
    # resumed, so it releases them in its first round; then 3 s with nothing to do end it
    _pcfx(bootstrap, *run, "--idle-seconds", "3", env=as_gateway)
    released = _decrypt(bootstrap, prefix, keys, NOTIFIED_BODY)
    city = _lineage(released[-1]).get("facility", {}).get("city") if released else None
    console.print(f"{NOTIFIED_BODY} received the exact plant city after approval: {city}")
    verify = _pcfx(
        bootstrap, "audit", "verify", "--gateway-pub", str(keys / "gateway.key.pub.pem"),
        "--topic-prefix", prefix, check=False,
    )  # fmt: skip
    console.print(verify.stdout.strip() or verify.stderr.strip())
    report = workdir / "audit-report.html"
    _must(
        "audit", "report", "--gateway-pub", str(keys / "gateway.key.pub.pem"),
        "--out", str(report), "--topic-prefix", prefix, "--bootstrap", bootstrap,
    )  # fmt: skip
    console.print(f"Compliance report: {report}")
    return {
        "eu_pcf": pcf["pcfExcludingBiogenicUptake"],
        "eu_city": facility.get("city"),
        "eu_inputs": inputs,
        "held": len(pending),
        "released_city": city,
        "audit_ok": verify.returncode == 0,
        "report": str(report),
    }


# --- the certification act: a body certifies the cell, a label is printed, verified, goes stale --

BODY = "cec"
"""The registered certification body that certifies the cell maker's footprint (not the
README walkthrough's ``cqc``, which runs on the demo left running)."""
ROGUE_BODY = "quick-cert"
"""A body the operator blacklists after it issued a label."""
PCR_PACK = ("CN-CCL-PCR-LIB-TRACTION", "1.0.0")
"""The PCR pack (id, version) the bodies verify the cell against (traction batteries)."""
CELL_HOLDER = "urn:pact:company:customcode:vendor-assigned:fj-cells"
ELECTROLYTE_UPDATE = DEMO_DIR / "electrolyte-update.json"
"""The cell maker's electrolyte supplier's new footprint version (it buys green power)."""
ART7_INPUT = DEMO_DIR / "art7-pack.yaml"
"""What the pack maker's Art. 7 declaration needs beyond the footprint (manufacturer, plant, …)."""


def _pcfx_here(*args: str) -> tuple[int, str]:
    """Run a ``pcfx`` command in this process, as the operator's shell would run it (the same
    command code, without a second interpreter's start-up): its exit code and what it wrote to
    stdout (its ``--json`` document, if asked for). Its diagnostics go to stderr as usual."""
    import contextlib
    import io

    from typer.main import get_command

    from pcf_exchange.pcfx.cli import app

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = get_command(app).main(list(args), prog_name="pcfx", standalone_mode=False)
    return int(code or 0), out.getvalue()


def _must(*args: str) -> str:
    code, out = _pcfx_here(*args)
    if code != 0:
        raise PcfError(f"pcfx {' '.join(args[:2])} failed (exit {code})")
    return out


def _verdict_lines(verdict: dict[str, Any]) -> list[str]:
    lines = []
    for check in verdict["checks"]:
        mark = "OK:  " if check["ok"] else "FAIL:"
        detail = f" - {check['message']}" if check.get("message") else ""
        lines.append(f"{mark} ({check['step']}) {check['check']}{detail}")
    lines.append(
        "VALID" if verdict["valid"] else "NOT VALID: " + ", ".join(verdict["reasons"] or ())
    )
    return lines


@dataclass
class CertificationAct:
    """The certification steps on the demo exchange, with the commands each party runs."""

    exchange: DemoExchange
    folder: Path = field(init=False)
    keys: dict[str, KeyPairFiles] = field(default_factory=dict)
    """body id -> its key files (:func:`producers.keys.new_key_pair`)."""

    def __post_init__(self) -> None:
        self.folder = self.exchange.workdir / "certification"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.scope = ["--topic-prefix", self.exchange.prefix]
        self.operator_pub = str(self.exchange.operator_pub)

    def body_key(self, body: str) -> Path:
        return self.keys[body].private_key

    def register(self, body: str, name: str, accreditation: str) -> None:
        """The operator registers *body* (its signing key, scope: lithium batteries)."""
        self.keys[body] = new_key_pair(body, self.folder, overwrite=True)
        _must(
            "bodies", "register", "--key", str(self.exchange.operator_file),
            "--body-id", body, "--name", name, "--accreditation-no", accreditation,
            "--scope", "LITHIUM_BATTERY", "--body-key", str(self.keys[body].public_key),
            *self.scope,
        )  # fmt: skip

    def certify_cell(self, body: str, certificate_id: str) -> dict[str, Any]:
        """*body* certifies the cell's current footprint on the exchange and prints its label."""
        cert = json.loads(
            _must(
                "certificates",
                "issue",
                "--product",
                CELL,
                "--key",
                str(self.body_key(body)),
                "--body-id",
                body,
                "--holder",
                CELL_HOLDER,
                "--pcr-pack",
                PCR_PACK[0],
                "--pcr-version",
                PCR_PACK[1],
                "--scope",
                "LITHIUM_BATTERY",
                "--certificate-id",
                certificate_id,
                "--operator-key",
                self.operator_pub,
                "--json",
                *self.scope,
            )
        )
        files = json.loads(
            _must(
                "label",
                "issue",
                certificate_id,
                "--key",
                str(self.body_key(body)),
                "--out-dir",
                str(self.folder / "labels"),
                "--product-name",
                "LFP280 cell (1 kWh)",
                "--operator-key",
                self.operator_pub,
                "--json",
                *self.scope,
            )
        )
        return {"certificate": cert, "label": files}

    def verify(self, label: dict[str, Any], what: str) -> dict[str, Any]:
        """``pcfx label verify`` (live from the topics) and the API's ``GET /labels/verify``
        (against a snapshot the operator exports now), side by side."""
        text_file = label["text"]
        console.print(f"$ pcfx label verify {text_file}   [{what}]", markup=False)
        code, out = _pcfx_here(
            "label", "verify", text_file, "--operator-key", self.operator_pub, "--json",
            *self.scope,
        )  # fmt: skip
        verdict = json.loads(out)
        if (code == 0) != verdict["valid"]:
            raise PcfError(f"pcfx label verify exited {code} for a verdict {verdict['valid']}")
        for line in _verdict_lines(verdict):
            console.print("  " + line, markup=False, highlight=False)
        api = self.api_verify(label["label"])
        console.print(
            f"GET /labels/verify?payload=PCFX1.… (PACT API, registry snapshot exported now):"
            f" valid={str(api['valid']).lower()}"
            + (f", reasons {', '.join(api['reasons'])}" if api["reasons"] else ""),
            markup=False,
            highlight=False,
        )
        return {
            "valid": verdict["valid"],
            "reasons": verdict["reasons"],
            "certificateStatus": verdict["certificateStatus"],
            "exitCode": code,
            "apiValid": api["valid"],
            "apiReasons": api["reasons"],
        }

    def api_verify(self, payload: str) -> dict[str, Any]:
        """The PACT API's label endpoint (:func:`gateway.api._labels.label_router`, as ``pcfx api
        serve --label-snapshot`` mounts it) asked over HTTP in this process."""
        import warnings

        from fastapi import FastAPI

        with warnings.catch_warnings():  # starlette's note on its httpx transport: not ours
            warnings.simplefilter("ignore")
            from fastapi.testclient import TestClient

        from pcf_exchange.contracts.keyfiles import load_ed25519_public_key
        from pcf_exchange.gateway.api._labels import SnapshotFile, label_router

        snapshot = self.folder / "registry-snapshot.json"
        _must(
            "bodies", "export", "--key", str(self.exchange.operator_file), "--out", str(snapshot),
            "--json", *self.scope,
        )  # fmt: skip
        public = load_ed25519_public_key(self.exchange.operator_pub)
        api = FastAPI()
        api.include_router(label_router(SnapshotFile(snapshot, {key_id_of(public): public})))
        with TestClient(api) as client:
            response = client.get("/labels/verify", params={"payload": payload})
        if response.status_code != 200:
            raise PcfError(f"GET /labels/verify answered {response.status_code}: {response.text}")
        return cast(dict[str, Any], response.json())


def annex_ii_stages(
    latest: dict[str, RolledUpFootprint], product: str, tiers: Sequence[str]
) -> dict[str, Decimal]:
    """Split *product*'s rolled-up figure into the EU Battery Regulation's cradle-to-gate stages
    from the roll-ups' own lineage: *main product production* is the own process emissions of
    the battery manufacturing *tiers* (cell, module, pack), each scaled by the quantity the tier
    above uses; *raw material acquisition and pre-processing* is everything else (what those
    tiers buy: materials, active materials, foils, background factors). Exact: the two add up to
    the figure by construction."""

    def production(pid: str) -> Decimal:
        record = latest[pid]
        own = record.own_emissions
        total = own.direct_kg_co2e + own.electricity_kg_co2e + own.other_kg_co2e
        for line in record.inputs:
            if line.product_id in tiers and line.product_id in latest:
                below = latest[line.product_id]
                total += line.quantity * production(line.product_id) / below.declared_unit.amount
        return total / record.declared_unit.amount

    made = production(product)
    figure = latest[product].pcf_excluding_biogenic_uptake
    if not Decimal(0) <= made <= figure:
        raise PcfError(f"the production stage ({made}) is not within the footprint ({figure})")
    return {"raw_material_acquisition": figure - made, "production": made}


def art7_footprint(
    latest: dict[str, RolledUpFootprint], product: str, tiers: Sequence[str]
) -> dict[str, Any]:
    """The pack maker's footprint for its Art. 7 declaration: the pack's current roll-up from
    ``pcf.products`` as PACT JSON, naming its catalogue entry and PCR pack, with the stage
    breakdown :func:`annex_ii_stages` derives from the roll-up's lineage."""
    from pcf_exchange.contracts import to_pact_json

    record = latest[product]
    if record.footprint is None:
        raise PcfError(f"{product} has no PACT footprint yet: {record.footprint_withheld}")
    pact = to_pact_json(record.footprint)
    stages = annex_ii_stages(latest, product, tiers)
    pact["pcf"]["productOrSectorSpecificRules"] = [
        {"operator": "Other", "ruleNames": [PCR_PACK[0]], "otherOperatorName": "CEC (demo)"}
    ]
    pact["extensions"] = [
        *(
            e
            for e in pact.get("extensions") or ()
            if not e["dataSchema"].endswith("pcfx-footprint/1.0.0/data-model.json")
        ),
        {
            "specVersion": "2.0.0",
            "dataSchema": "https://pcf-exchange.io/schemas/pcfx-footprint/1.0.0/data-model.json",
            "data": {
                "pilotCategory": "LITHIUM_BATTERY",
                "stageBreakdown": {k: format(v, "f") for k, v in stages.items()},
            },
        },
    ]
    return pact


MODULE = "urn:pact:js-modules.cn:product-id:MOD-16S"
BATTERY_TIERS = (
    "urn:pact:fj-cells.cn:product-id:LFP280-CELL",
    MODULE,
    "urn:pact:cz-packs.cn:product-id:PACK-282",
)
"""The battery manufacturing tiers (cell, module, pack): Annex II's *main product production*."""


def _opened(
    bootstrap: str, topics: Topics, serde: Any, keys: Path, recipient: str
) -> list[dict[str, Any]]:
    """What *recipient* opens on its outbound topic (as ``pcfx outbound decrypt`` does, in this
    process): each message's signature verified and decrypted with the recipient's key."""
    from pcf_exchange.contracts.errors import TrustError
    from pcf_exchange.contracts.kafka_client import read_to_end
    from pcf_exchange.gateway._codec import sealed_from_datum
    from pcf_exchange.gateway._keys import (
        load_gateway_public_key,
        load_recipient_private_key,
    )
    from pcf_exchange.gateway._sealing import KeyRing, open_message

    private = load_recipient_private_key(keys / f"{recipient}.x25519.pem")
    trusted = KeyRing.of(load_gateway_public_key(keys / "gateway.key.pub.pem"))
    opened = []
    for message in read_to_end(bootstrap, topics.outbound(recipient)):
        sealed = sealed_from_datum(serde.decode(message.value() or b"", "SealedMessage"))
        try:
            envelope = open_message(
                sealed, recipient_id=recipient, private_key=private, trusted=trusted
            ).envelope
        except TrustError as exc:
            raise PcfError(f"{recipient} cannot open {sealed.message_id}: {exc.message}") from exc
        opened.append(dict(envelope))
    return opened


def declaration_act(exchange: DemoExchange, latest: dict[str, RolledUpFootprint]) -> dict[str, Any]:
    """``pcfx declarations art7 --kafka``: the pack maker's Art. 7 declaration built from the
    pack's current roll-up, decided, sealed to the EU customer and audited by the gateway (one
    entry on the chain ``pcfx-declarations``); then the customer opens it."""
    from pcf_exchange.contracts import KafkaSchemaRegistry
    from pcf_exchange.gateway.runtime import read_audit_logs
    from pcf_exchange.gateway.runtime._avro import GatewaySerde

    workdir, prefix = exchange.workdir, exchange.prefix
    folder = workdir / "declarations"
    folder.mkdir(parents=True, exist_ok=True)
    footprint = folder / "pack-282-footprint.json"
    footprint.write_text(
        json.dumps(art7_footprint(latest, PACK, BATTERY_TIERS), ensure_ascii=False), "utf-8"
    )
    keys = workdir / "gateway-keys"
    out = json.loads(
        _must(
            "declarations",
            "art7",
            str(footprint),
            "--input",
            str(ART7_INPUT),
            "--out",
            str(folder),
            "--recipient",
            EU_OEM,
            "--gateway-key",
            str(keys / "gateway.key.pem"),
            "--policy",
            str(workdir / "policy.yaml"),
            "--kafka",
            "--topic-prefix",
            prefix,
            "--json",
        )
    )
    release = out["release"]
    document = json.loads(Path(out["files"]["json"]).read_text(encoding="utf-8"))
    registry = KafkaSchemaRegistry(exchange.bootstrap, prefix=prefix)
    try:  # one registry reader for the audit chain and the customer's topic
        serde = GatewaySerde(registry)
        entries, _, problems = read_audit_logs(
            exchange.bootstrap, Topics(prefix), serde, log_ids=["pcfx-declarations"]
        )
        received = [
            envelope
            for envelope in _opened(exchange.bootstrap, Topics(prefix), serde, keys, EU_OEM)
            if envelope.get("footprint", {}).get("declaration", {}).get("declarationId")
            == out["declarationId"]
        ]
    finally:
        registry.close()
    chain = entries.get("pcfx-declarations", [])
    cf = document["carbonFootprint"]
    table = Table(title=f"Art. 7 declaration {out['declarationId'][:8]}… for {EU_OEM}")
    table.add_column("Annex II stage")
    table.add_column("kgCO2e per kWh", justify="right")
    table.add_column("from")
    for stage in cf["lifeCycleStages"]:
        table.add_row(stage["annexII"], stage["kgCO2ePerKWh"], stage["origin"])
    table.add_row("life cycle", cf["lifeCycle"], "")
    console.print(table)
    console.print(
        f"Released through the gateway ({release['outcome']}): sealed to {EU_OEM} on"
        f" {prefix}pcf.outbound.{EU_OEM} (message {release['messageId']}), audit entry"
        f" pcfx-declarations:{release['auditEntry']['seq']} in the same transaction"
        f" ({len(chain)} on that chain); the customer opened it: {bool(received)}."
        f" JSON, printable HTML and the Battery Pass part: {folder}",
        highlight=False,
    )
    return {
        "outcome": release["outcome"],
        "released": release["released"],
        "messageId": release["messageId"],
        "lifeCycle": cf["lifeCycle"],
        "stages": {s["annexII"]: s["kgCO2ePerKWh"] for s in cf["lifeCycleStages"]},
        "auditEntries": [{"seq": e.seq, "kind": e.kind, "messageId": e.message_id} for e in chain],
        "auditProblems": problems,
        "received": len(received),
        "files": out["files"],
    }


# --- the narrative -------------------------------------------------------------------------------

PACK = "urn:pact:cz-packs.cn:product-id:PACK-282"
BUS = "urn:pact:zz-bus.cn:product-id:E-BUS-12M"
CELL = "urn:pact:fj-cells.cn:product-id:LFP280-CELL"


def _kg(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')):,}"


def _products_table(latest: dict[str, RolledUpFootprint], boms: list[BillOfMaterials]) -> Table:
    table = Table(title="Rolled-up footprints, tier by tier (kgCO2e per declared unit)")
    for column in ("product", "per", "kgCO2e", "95 % interval", "primary %", "inputs", "PACT id"):
        table.add_column(column)
    for bom in boms:
        record = latest.get(bom.product_id)
        if record is None:
            continue
        unc = record.uncertainty
        table.add_row(
            bom.product_name or bom.product_id,
            f"{record.declared_unit.amount} {record.declared_unit.unit}",
            _kg(record.pcf_excluding_biogenic_uptake),
            f"{_kg(unc.lower95)} – {_kg(unc.upper95)}"
            if unc and unc.lower95 is not None and unc.upper95 is not None
            else "—",
            str(record.primary_data_share or "—"),
            str(len(record.inputs)),
            str(record.footprint.id)[:8] + "…" if record.footprint else "—",
        )
    return table


def demo_prefix() -> str:
    """A fresh topic namespace for one demo run."""
    return f"demo-{datetime.now(UTC):%Y%m%d%H%M%S}-{os.getpid() % 10000:04d}."


def run_demo(
    bootstrap: str,
    workdir: Path,
    *,
    keep_running: bool = False,
    broker_started: bool = False,
    prefix: str | None = None,
) -> dict[str, Any]:
    """Play the story; return the figures it showed, also written to ``<workdir>/figures.json``
    (the end-to-end test checks them against an independent calculation).

    With *keep_running* the streams worker and a gateway are left running, recorded in
    ``<workdir>/services.json`` (see :func:`pcfx._services.stop_services`); *broker_started*
    says the caller started the local broker for the demo, so that ``pcfx demo stop`` stops it.
    """
    from pcf_exchange.streams.batch import run_rollup

    prefix = prefix or demo_prefix()
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if (workdir / "services.json").exists():
        raise PcfError(
            f"a demo left running in {workdir} is recorded in services.json",
            hint=f"Stop it first: pcfx demo stop --workdir {workdir}",
        )
    figures: dict[str, Any] = {"prefix": prefix}
    exchange = DemoExchange(bootstrap, workdir, prefix, detach=keep_running)
    try:
        console.rule("[bold]1. The operator registers keys and publishes background factors")
        console.rule("[bold]2. Suppliers publish signed footprints, manufacturers their BOMs")
        began = time.monotonic()
        _, boms = exchange.publish_chain()
        console.print(
            f"Published {len(exchange.keys) + 2} key registrations (the companies', the streams'"
            f" service key, officer {OFFICER_ID}'s), the factor set "
            f"({FACTORS_FILE.name}), 5 supplier footprints and {len(boms)} BOMs to "
            f"topics {prefix}pcf.* in {time.monotonic() - began:.1f} s."
        )
        console.rule("[bold]3. The streams roll everything up through every tier")
        exchange.start_worker()
        expected = {
            r.product_id: r.pcf_excluding_biogenic_uptake
            for r in run_rollup(
                [DEMO_DIR / "suppliers-footprints.json"],
                [DEMO_DIR / "manufacturers-boms.json"],
                [FACTORS_FILE],
            ).records
        }
        began = time.monotonic()
        latest = exchange.wait_for(
            lambda got: all(
                got.get(p) is not None and got[p].pcf_excluding_biogenic_uptake == v
                for p, v in expected.items()
            ),
            what="the supply chain's roll-ups",
        )
        console.print(_products_table(latest, boms))
        console.print(
            f"The pack's footprint: [bold]{_kg(latest[PACK].pcf_excluding_biogenic_uptake)} "
            f"kgCO2e per kWh[/] (ready {time.monotonic() - began:.1f} s after the worker "
            "started; identical to batch mode, digit for digit)."
        )
        figures["before"] = {p: str(r.pcf_excluding_biogenic_uptake) for p, r in latest.items()}

        console.rule("[bold]4. The cell maker moves to hydro power")
        green = cast(
            BillOfMaterials, _values(load_boms(DEMO_DIR / "cell-green-electricity.json"))[0]
        )
        after = {
            r.product_id: r.pcf_excluding_biogenic_uptake
            for r in run_rollup(
                [DEMO_DIR / "suppliers-footprints.json"],
                [DEMO_DIR / "manufacturers-boms.json", DEMO_DIR / "cell-green-electricity.json"],
                [FACTORS_FILE],
            ).records
        }
        began = time.monotonic()
        exchange.publish_bom(green)
        latest = exchange.wait_for(
            lambda got: all(
                got[p].pcf_excluding_biogenic_uptake == after[p] for p in (CELL, PACK, BUS)
            ),
            what="the green cell to reach the pack and the bus",
        )
        took = time.monotonic() - began
        change = Table(title=f"Propagated cell → module → pack → bus in {took:.1f} s")
        for column in ("product", "before", "after", "change"):
            change.add_column(column)
        for pid in (CELL, PACK, BUS):
            old, new = expected[pid], after[pid]
            change.add_row(pid.rsplit(":", 1)[-1], _kg(old), _kg(new), f"{(new - old) / old:+.1%}")
        console.print(change)
        figures["after"] = {p: str(r.pcf_excluding_biogenic_uptake) for p, r in latest.items()}
        figures["propagation_s"] = round(took, 2)

        console.rule("[bold]5. A forged supplier record is refused")
        lithium = cast(
            ProductFootprint, _values(load_footprints(DEMO_DIR / "suppliers-footprints.json"))[0]
        )
        forged = lithium.model_copy(update={"comment": "forged: 0.1 kgCO2e claimed"})
        exchange.publish_footprint(forged, key=Ed25519PrivateKey.generate())
        rejection: Rejection | None = None
        for _ in range(60):
            found = exchange.rejections()
            if found:
                rejection = found[-1]
                break
            time.sleep(0.5)
        if rejection is None:
            raise PcfError("the forged record did not reach the DLQ within 30 s")
        console.print(
            f"[red]REJECTED[/] {rejection.source_topic}[{rejection.partition}]@"
            f"{rejection.offset}: {rejection.error_code}/{rejection.reason}: {rejection.message}"
        )
        figures["rejection"] = {"reason": rejection.reason, "message": rejection.message}

        console.rule("[bold]6. The gateway releases the pack's footprint to EU recipients")
        figures["gateway"] = gateway_act(
            bootstrap,
            prefix,
            workdir,
            operator_pub=exchange.operator_pub,
            officer_key=exchange.officer_key,
        )
        if not figures["gateway"]["audit_ok"]:
            raise PcfError("the audit log did not verify")

        console.rule(
            "[bold]7. A registered certification body certifies the cell maker's footprint"
        )
        certifying = time.monotonic()
        act = CertificationAct(exchange)
        act.register(BODY, "China Environmental Certification Centre (demo)", "CNCA-R-2002-008")
        issued = act.certify_cell(BODY, "CEC-2026-0001")
        cert = issued["certificate"]
        label_files = {k: v for k, v in issued["label"].items() if k not in ("label", "length")}
        console.print(
            f"Operator registered body {BODY} (scope LITHIUM_BATTERY); {BODY} certified"
            f" {CELL.rsplit(':', 1)[-1]}'s current footprint {cert['footprintId'][:8]}… on the"
            f" exchange: certificate {cert['certificateId']}, {cert['figure']} {cert['unit']},"
            f" PCR {cert['pcrPackId']} {cert['pcrPackVersion']}, bound to content hash"
            f" {cert['contentHash'][:16]}…. Label printed:"
            f" {', '.join(Path(v).name for v in label_files.values())}"
            f" ({issued['label']['length']} characters in the QR code).",
            highlight=False,
        )
        certification: dict[str, Any] = {
            "certificate": cert,
            "files": label_files,
            "valid": act.verify(issued["label"], "the label just printed"),
        }

        console.rule(
            "[bold]8. The cell maker's supplier updates its footprint: the label turns stale"
        )
        update = cast(ProductFootprint, _values(load_footprints(ELECTROLYTE_UPDATE))[0])
        suppliers = [
            update if fp.product_ids[0] == update.product_ids[0] else fp
            for fp in cast(
                list[ProductFootprint],
                _values(load_footprints(DEMO_DIR / "suppliers-footprints.json")),
            )
        ]
        updated_file = workdir / "suppliers-after-update.json"
        updated_file.write_text(
            json.dumps([to_pact_json(fp) for fp in suppliers], ensure_ascii=False), "utf-8"
        )
        updated = {
            r.product_id: r.pcf_excluding_biogenic_uptake
            for r in run_rollup(
                [updated_file],
                [DEMO_DIR / "manufacturers-boms.json", DEMO_DIR / "cell-green-electricity.json"],
                [FACTORS_FILE],
            ).records
        }
        began = time.monotonic()
        exchange.publish_footprint(update)
        latest = exchange.wait_for(
            lambda got: all(
                got[p].pcf_excluding_biogenic_uptake == updated[p] for p in (CELL, PACK, BUS)
            ),
            what="the electrolyte update to reach the cell, the pack and the bus",
        )
        took = time.monotonic() - began
        console.print(
            f"{update.company_name} published version 2 of its electrolyte footprint"
            f" ({update.pcf.pcf_excluding_biogenic_uptake} kgCO2e/kg, superseding"
            f" {update.preceding_pf_ids[0] if update.preceding_pf_ids else '?'}); the roll-up"
            f" republished the cell at {_kg(updated[CELL])} kgCO2e per kWh"
            f" (was {_kg(after[CELL])}) and the pack at {_kg(updated[PACK])} in {took:.1f} s.",
            highlight=False,
        )
        figures["update"] = {p: str(r.pcf_excluding_biogenic_uptake) for p, r in latest.items()}
        watch = json.loads(
            _must(
                "certificates",
                "watch",
                "--key",
                str(exchange.operator_file),
                "--once",
                "--json",
                "--topic-prefix",
                prefix,
            )
        )
        for notice in watch["staleNotices"]:
            console.print(
                f"[yellow]STALE[/] notice for certificate {notice['certificateId']}: told"
                f" {notice['holder']} and {notice['bodyId']} (pcfx certificates watch)",
                highlight=False,
            )
        certification["staleNotices"] = watch["staleNotices"]
        certification["stale"] = act.verify(issued["label"], "after the supplier's update")

        console.rule("[bold]9. A blacklisted body's label is refused")
        act.register(ROGUE_BODY, "Quick Cert Services (demo)", "CNCA-R-2019-0999")
        rogue = act.certify_cell(ROGUE_BODY, "QC-2026-0042")
        _must(
            "bodies", "blacklist", ROGUE_BODY, "--key", str(exchange.operator_file),
            "--reason", "accreditation withdrawn by the accreditor (demo)",
            "--topic-prefix", prefix,
        )  # fmt: skip
        console.print(
            f"{ROGUE_BODY} certified the cell (certificate QC-2026-0042) and printed a label; the"
            f" operator then blacklisted {ROGUE_BODY} (pcfx bodies blacklist).",
            highlight=False,
        )
        certification["blacklisted"] = act.verify(rogue["label"], "its body is blacklisted")
        figures["certification"] = certification

        console.rule(
            "[bold]10. The pack's Art. 7 declaration goes to the EU customer through the gateway"
        )
        figures["declaration"] = declaration_act(exchange, latest)
        figures["certification_and_declaration_s"] = round(time.monotonic() - certifying, 1)

        if keep_running:
            figures["services"] = _leave_running(exchange, broker_started)
    except BaseException:
        exchange.detach = False  # a demo that failed leaves nothing running
        stop_services(workdir)
        raise
    finally:
        exchange.stop()
    shown = {k: v for k, v in figures.items() if k != "services"}  # those are in services.json
    (workdir / "figures.json").write_text(json.dumps(shown, indent=1, ensure_ascii=False), "utf-8")
    return figures


def _leave_running(exchange: DemoExchange, broker_started: bool) -> Services:
    """Start a gateway that runs on, record it and the streams worker, write ``env.sh`` and
    print what to try next."""
    workdir, prefix = exchange.workdir, exchange.prefix
    env = principal_env(exchange.bootstrap, workdir, "gateway")
    services = Services(exchange.bootstrap, prefix, broker_started=broker_started)
    for number, proc in enumerate(exchange.workers, start=1):
        log = str(workdir / f"worker-w{number}.log")
        services.processes.append(Service(f"streams worker w{number}", proc.pid, log, prefix))
    gateway, _ = start_service(
        "gateway",
        [
            sys.executable,
            "-m",
            "pcf_exchange.pcfx",
            *_gateway_run(prefix, workdir, exchange.operator_pub),
        ],
        workdir / "gateway.log",
        prefix,
        env,
    )
    services.processes.append(gateway)
    services.save(workdir)
    gw = workdir / "gateway-keys"
    operator_pub = exchange.operator_pub.resolve()
    (workdir / "env.sh").write_text(
        "# pcfx demo --keep-running: `source` this to work with the running demo exchange\n"
        f"export KAFKA_BOOTSTRAP_SERVERS={exchange.bootstrap}\n"
        + (
            f"export KAFKA_CLIENT_CONFIG={os.environ['KAFKA_CLIENT_CONFIG']}\n"
            if os.environ.get("KAFKA_CLIENT_CONFIG")
            else ""
        )
        + f"export PCFX_TOPIC_PREFIX={prefix}\n"
        f"export OPERATOR_KEY={exchange.operator_file.resolve()}\n"
        f"export OPERATOR_PUB={operator_pub}\n"
        f"export OFFICER_KEY={exchange.officer_key.resolve()}\n"
        f"export GATEWAY_KEYS={gw}\n"
        f"export DEMO_WORKDIR={workdir}\n"
    )
    console.rule("[bold]Left running")
    table = Table(title=f"Running on {exchange.bootstrap}, topics {prefix}pcf.*")
    for column in ("service", "pid", "log"):
        table.add_column(column)
    for service in services.processes:
        table.add_row(service.name, str(service.pid), service.log)
    table.add_row(
        "Kafka broker",
        "",
        "started by the demo (pcfx broker logs)" if broker_started else "yours: left as it was",
    )
    console.print(table)
    console.print(
        "Try next (the README's walkthroughs start here):\n"
        f"  source {workdir / 'env.sh'}\n"
        "  pcfx keys list\n"
        "  pcfx approvals list --all\n"
        "  pcfx approvals approve ID --key $OFFICER_KEY --reason TEXT   # signed by the officer\n"
        f"  pcfx audit verify --gateway-pub {gw / 'gateway.key.pub.pem'}\n"
        f"  pcfx audit show --recipient {EU_OEM}\n"
        f"  pcfx outbound decrypt --recipient {EU_OEM} --key {gw / (EU_OEM + '.x25519.pem')} "
        f"--gateway-pub {gw / 'gateway.key.pub.pem'} --footprint-only\n"
        f"  pcfx rollup --footprints {DEMO_DIR / 'suppliers-footprints.json'} "
        f"--boms {DEMO_DIR / 'manufacturers-boms.json'} --factors {FACTORS_FILE} --tree {PACK}\n"
        f"Stop everything: pcfx demo stop --workdir {workdir}",
        soft_wrap=True,
        highlight=False,
        markup=False,
    )
    return services


# --- the command line ----------------------------------------------------------------------------

DEMO_TENANTS = {
    "operator": "operator",
    "streams": "streams",
    "gateway": "gateway",
    "api": "api",
    "officer": "officer",
    "cz-packs": "manufacturer",
    "fj-cells": "supplier",
    EU_OEM: "recipient",
    NOTIFIED_BODY: "recipient",
}
"""The principals ``pcfx demo`` creates on a secure broker it started (by role)."""


def _demo_tenants(bootstrap: str, workdir: Path, prefix: str) -> None:
    """Create the demo's principals and their ACLs on the run's topics (*prefix*), with their
    client configs in ``<workdir>/kafka/``."""
    from pcf_exchange.infra.kafka.tenants import add_tenant

    folder = workdir / "kafka"
    for name, role in DEMO_TENANTS.items():
        add_tenant(
            name,
            role,
            bootstrap=bootstrap,
            out=folder / f"{name}.properties",
            prefix=prefix,
            app_id=f"{prefix}streams",  # as DemoExchange.start_worker and _gateway_run name them
            group=f"{prefix}gateway",
            force=True,
        )
    console.print(
        f"Created {len(DEMO_TENANTS)} principals with least-privilege ACLs"
        f" ({', '.join(sorted(set(DEMO_TENANTS.values())))}); their client configs are in"
        f" {folder} (pcfx tenants list shows them). The streams worker runs as User:streams"
        " and the gateway as User:gateway, with only their roles' grants."
    )


def _broker_refusals(bootstrap: str, workdir: Path, prefix: str) -> list[str]:
    """What the broker itself refuses the demo's parties (a line each): the ACLs at work."""
    from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

    from pcf_exchange.contracts.kafka_client import KafkaClientSettings

    def settings(name: str) -> dict[str, Any]:
        path = workdir / "kafka" / f"{name}.properties"
        return KafkaClientSettings.from_properties(path).librdkafka() | {
            "bootstrap.servers": bootstrap,
            "log_level": 2,  # the refusals are the point: no librdkafka notices about them
        }

    lines = []
    for who, topic in (("fj-cells", "pcf.products"), ("fj-cells", "pcf.keys")):
        errors: list[Any] = []
        producer = Producer(settings(who) | {"message.timeout.ms": 10000})

        def report(error: Any, _message: Any, out: list[Any] = errors) -> None:
            out.append(error)

        producer.produce(prefix + topic, b"forged", on_delivery=report)
        producer.flush(15)
        error = errors[0] if errors else None
        lines.append(f"{who} writes {topic}: {error.str() if error else 'ACCEPTED (!)'}")
    for who, topic in (("fj-cells", "pcf.declared"), (EU_OEM, f"pcf.outbound.{NOTIFIED_BODY}")):
        consumer = Consumer(settings(who) | {"group.id": f"{who}.demo"})
        try:
            described = consumer.list_topics(prefix + topic, timeout=10).topics[prefix + topic]
            error = described.error
            if error is None:
                consumer.assign([TopicPartition(prefix + topic, 0, 0)])
                message = consumer.poll(10)
                error = message.error() if message is not None else None
            refused = error is not None and error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
            lines.append(
                f"{who} reads {topic}: {error.str() if refused and error else 'ALLOWED (!)'}"
            )
        finally:
            consumer.close()
    return lines


demo_app = typer.Typer(
    help="The whole exchange on an LFP battery supply chain (`pcfx demo stop` ends a demo left "
    "running).",
    invoke_without_command=True,
)

WorkDir = Annotated[
    Path,
    typer.Option(
        "--workdir", help="Where keys, logs, reports, figures.json and services.json are written."
    ),
]


@demo_app.callback()
@handle_errors
def demo(
    ctx: typer.Context,
    keep_running: Annotated[
        bool,
        typer.Option(
            "--keep-running",
            help="Leave the broker, the streams worker and the gateway up afterwards "
            "(stop them with: pcfx demo stop).",
        ),
    ] = False,
    workdir: WorkDir = Path(".pcfx/demo"),
) -> None:
    """Play the whole exchange on an LFP battery supply chain, on the broker in use (a local
    broker is started, and stopped again, when none is)."""
    if ctx.invoked_subcommand is not None:
        return
    from pcf_exchange.infra.kafka import launcher

    started = False
    prefix = demo_prefix()
    try:
        bootstrap = bootstrap_servers(check=False)  # a dead one fails in the first client
    except BrokerError:
        with console.status("No broker configured: starting a local secure one…"):
            info = launcher.start(secure=True)
        bootstrap = info.bootstrap
        started = True
        console.print(
            f"Started a local Kafka broker at {bootstrap} for the demo: SASL_SSL (SCRAM-SHA-512),"
            f" ACLs enforced; the operator connects with {info.admin_config}."
        )
        assert info.admin_config is not None
        use_config_file(info.admin_config)
        _demo_tenants(bootstrap, workdir.resolve(), prefix)
    try:
        run_demo(
            bootstrap, workdir, keep_running=keep_running, broker_started=started, prefix=prefix
        )
    except BaseException:
        if started:
            launcher.stop()
        raise
    if started:
        console.rule("[bold]The broker refuses what a party's ACLs do not allow")
        for line in _broker_refusals(bootstrap, workdir.resolve(), prefix):
            console.print(line, highlight=False, markup=False)
    if started and not keep_running:
        console.print(launcher.stop().detail)
    console.print("[green]Demo complete.[/]")


@demo_app.command("stop")
@handle_errors
def demo_stop(workdir: WorkDir = Path(".pcfx/demo"), json_out: JsonOut = False) -> None:
    """Stop what `pcfx demo --keep-running` left running (and a broker the demo started)."""
    from pcf_exchange.infra.kafka import launcher

    done, services = stop_services(workdir.resolve())
    if services is None:
        if json_out:
            print_json({"stopped": [], "broker": None})
            return
        err_console.print(f"Nothing recorded as running in {workdir.resolve()}.")
        return
    broker = launcher.stop().detail if services.broker_started else None
    if json_out:
        print_json({"stopped": done, "broker": broker, "brokerStartedByDemo": broker is not None})
        return
    for line in done:
        console.print(line, highlight=False)
    if broker is not None:
        console.print(broker, highlight=False)
    else:
        console.print(f"The broker at {services.bootstrap} was not started by the demo: left up.")
