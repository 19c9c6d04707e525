"""The runtime's pure parts: adapter vs policy, subscriptions, codecs, export, report, keys."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from fastavro import schemaless_writer

from pcf_exchange.contracts import InMemorySchemaRegistry, Keyring, SignerRole
from pcf_exchange.contracts.errors import KeyStoreError, SerdeError, TrustError
from pcf_exchange.gateway import (
    GatewayKey,
    GatewaySecrets,
    KeyRing,
    Policy,
    PolicyFileInvalid,
    PreparedTransfer,
    approve,
    open_message,
    prepare_transfer,
)
from pcf_exchange.gateway._adapter import LINEAGE_SCHEMA, NoFootprint
from pcf_exchange.gateway._approvals import Approval
from pcf_exchange.gateway._approvals_log import ApprovalRow, Candidate
from pcf_exchange.gateway._codec import refused_event
from pcf_exchange.gateway._decision_signing import check_decision, sign_decision
from pcf_exchange.gateway._keys import (
    load_gateway_key,
    load_gateway_public_key,
    load_recipient_private_key,
    write_gateway_key,
    write_recipient_key,
)
from pcf_exchange.gateway._pipeline import prepare_approval_event
from pcf_exchange.gateway.audit import ChainHead, EntryKind, check_audit_log, make_checkpoint
from pcf_exchange.gateway.audit._export import read_export, write_export
from pcf_exchange.gateway.audit._report import render_report
from pcf_exchange.gateway.policy import Action, CounterState, Outcome, evaluate
from pcf_exchange.gateway.runtime import (
    ApprovalBook,
    GatewaySerde,
    HeldSource,
    RowStatus,
    approval_from_request,
    checkpoint_from_datum,
    checkpoint_to_datum,
    decided_event,
    entry_from_datum,
    entry_to_datum,
    gateway_record,
    parse_subscriptions,
    requested_event,
    resolved_event,
    sealed_from_datum,
    sealed_to_datum,
)
from tests.gateway._factories import NOW
from tests.gateway._rollups import (
    CELL_PRODUCT,
    CELL_SUPPLIER,
    SECRET_ADDRESS,
    SECRET_COMMENT,
    rolled_footprint,
)
from tests.gateway._trust import Trust

EU, EU_PURPOSE = "eu-battery-oem-de", "battery-regulation-art7"
GB, GB_PURPOSE = "uk-customer-gb", "pcf-exchange"
CN, CN_PURPOSE = "cn-carbon-label-body", "carbon-label-certification"
LINEAGE = "extensions[1].data.lineage"


@pytest.fixture
def record() -> dict[str, Any]:
    return gateway_record(rolled_footprint())


# ----------------------------------------------------------------------------------------------
# adapter: the layout the shipped policy classifies


def _prepare(
    policy: Policy,
    record: dict[str, Any],
    secrets: GatewaySecrets,
    recipient: str = EU,
    purpose: str = EU_PURPOSE,
    head: ChainHead | None = None,
    **options: Any,
) -> PreparedTransfer:
    """``prepare_transfer`` of *record* at ``NOW`` with a fresh year of counters."""
    return prepare_transfer(
        policy,
        record,
        recipient=recipient,
        purpose=purpose,
        counters=CounterState.empty(2026),
        head=ChainHead() if head is None else head,
        secrets=secrets,
        now=NOW,
        **options,
    )


def test_adapter_appends_the_lineage_extension(record: dict[str, Any]) -> None:
    lineage_ext = record["extensions"][1]
    assert lineage_ext["dataSchema"] == LINEAGE_SCHEMA
    lineage = lineage_ext["data"]["lineage"]
    assert lineage["facility"] == {
        "name": "Ningde pack plant 2",
        "address": SECRET_ADDRESS,
        "city": "Ningde",
        "subdivision": "CN-FJ",
        "country": "CN",
        "productionVolume": {"quantity": "1200000", "unit": "kilowatt hour"},
        "energy": [{"carrier": "total", "quantity": "54000000", "unit": "kilowatt hour"}],
    }
    first = lineage["inputs"][0]
    assert (first["supplierId"], first["productId"], first["contribution"]) == (
        CELL_SUPPLIER,
        CELL_PRODUCT,
        "64.470",
    )
    assert first["pfId"] == "0b9e3f58-2c4d-4a1b-8e7f-6a5b4c3d2e1f"
    assert lineage["ownEmissions"]["electricityKgCO2e"] == "6.70750"
    # plain JSON only: the record has a canonical form (strings, ints, bools)
    json.dumps(record, allow_nan=False)


def test_adapter_refuses_a_rollup_without_footprint() -> None:
    rolled = rolled_footprint().model_copy(update={"footprint": None})
    with pytest.raises(NoFootprint, match="footprint"):
        gateway_record(rolled)


@pytest.mark.parametrize(
    ("recipient", "purpose"), [(EU, EU_PURPOSE), (GB, GB_PURPOSE), (CN, CN_PURPOSE)]
)
def test_shipped_policy_classifies_every_field_of_a_rollup(
    policy: Policy, record: dict[str, Any], recipient: str, purpose: str
) -> None:
    decision = evaluate(policy, record, recipient, purpose, CounterState.empty(2026), NOW)
    unknown = [r for r in decision.reasons if r.code == "unknown_field"]
    assert unknown == []
    assert decision.outcome is Outcome.TRANSFORMED


def test_sub_tier_identities_never_reach_a_destination_that_forbids_them(
    policy: Policy,
    record: dict[str, Any],
    secrets: GatewaySecrets,
    recipient_keys: dict[str, X25519PrivateKey],
    keyring: KeyRing,
) -> None:
    """R06: EU gets per-recipient pseudonyms, other destinations nothing, domestic encrypted."""
    sub_tier = (CELL_SUPPLIER, CELL_PRODUCT, "0b9e3f58-2c4d-4a1b-8e7f-6a5b4c3d2e1f")
    seen: dict[str, dict[str, Any]] = {}
    for recipient, purpose in ((EU, EU_PURPOSE), (GB, GB_PURPOSE), (CN, CN_PURPOSE)):
        prepared = _prepare(policy, record, secrets, recipient, purpose)
        assert prepared.outbound is not None
        opened = open_message(
            prepared.outbound,
            recipient_id=recipient,
            private_key=recipient_keys[recipient],
            trusted=keyring,
        )
        text = opened.plaintext.decode()
        secrets_here = sub_tier if recipient == CN else (*sub_tier, SECRET_COMMENT, SECRET_ADDRESS)
        for secret in secrets_here:
            assert secret not in text, (recipient, secret)
        seen[recipient] = opened.footprint["extensions"][1]["data"]["lineage"]
        decision = prepared.decision
        action = decision.field(f"{LINEAGE}.inputs[0].supplierId").action
        assert (
            action
            is {
                EU: Action.PSEUDONYMISE,
                GB: Action.REDACT,
                CN: Action.ENCRYPT,
            }[recipient]
        )
    assert seen[EU]["inputs"][0]["supplierId"].startswith("urn:pcfx:pseudonym:")
    assert "supplierId" not in seen[GB]["inputs"][0]
    assert seen[CN]["inputs"][0]["supplierId"] == {
        "pcfxEncrypted": f"{LINEAGE}.inputs[0].supplierId"
    }
    # generalised for the EU, exact at home
    assert seen[EU]["facility"]["city"] == "CN-FJ"
    assert seen[GB]["facility"]["city"] == "CN"
    assert "quantity" not in seen[EU]["facility"]["productionVolume"]
    assert seen[EU]["facility"]["energy"][0]["quantity"] == {
        "intensity": "45",
        "per": "kilowatt hour",
    }


# ----------------------------------------------------------------------------------------------
# subscriptions


def test_subscriptions_route_by_product_and_category(policy: Policy) -> None:
    subs = parse_subscriptions(
        {
            "schema_version": 1,
            "subscriptions": [
                {"recipient": EU, "purpose": EU_PURPOSE, "categories": ["LITHIUM_BATTERY"]},
                {"recipient": GB, "purpose": GB_PURPOSE, "products": ["urn:pact:a.cn:*"]},
                {"recipient": EU, "purpose": EU_PURPOSE},
            ],
        },
        policy,
    )
    assert subs.routes("urn:pact:a.cn:x", "LITHIUM_BATTERY") == (
        (EU, EU_PURPOSE),
        (GB, GB_PURPOSE),
    )
    assert subs.routes("urn:pact:b.cn:x", None) == ((EU, EU_PURPOSE),)
    assert subs.recipients == (EU, GB)


@pytest.mark.parametrize(
    ("entry", "path", "code"),
    [
        (
            {"recipient": "nobody", "purpose": "pcf-exchange"},
            "subscriptions[0].recipient",
            "unknown_recipient",
        ),
        (
            {"recipient": GB, "purpose": "cbam-reporting"},
            "subscriptions[0].purpose",
            "purpose_not_allowed",
        ),
        (
            {"recipient": GB, "purpose": GB_PURPOSE, "products": []},
            "subscriptions[0].products",
            "type",
        ),
        (
            {"recipient": GB, "purpose": GB_PURPOSE, "to": "x"},
            "subscriptions[0].to",
            "unknown_field",
        ),
    ],
)
def test_subscriptions_refuse_what_the_policy_does_not_allow(
    policy: Policy, entry: dict[str, Any], path: str, code: str
) -> None:
    with pytest.raises(PolicyFileInvalid) as info:
        parse_subscriptions({"schema_version": 1, "subscriptions": [entry]}, policy)
    assert (info.value.violations[0].path, info.value.violations[0].code) == (path, code)


# ----------------------------------------------------------------------------------------------
# codecs: lossless images of the core objects


def _entries_of_every_kind(
    policy: Policy, record: dict[str, Any], secrets: GatewaySecrets
) -> tuple[list[Any], Any]:
    head = ChainHead()
    entries: list[Any] = []
    for recipient, purpose in ((EU, EU_PURPOSE), ("nobody", "x"), (GB, GB_PURPOSE)):
        p = _prepare(policy, record, secrets, recipient, purpose, head=head)
        head = p.head
        entries.extend(p.entries)
    return entries, head


def test_audit_entries_survive_avro_with_their_hash(
    policy: Policy, record: dict[str, Any], secrets: GatewaySecrets
) -> None:
    serde = GatewaySerde(InMemorySchemaRegistry())
    entries, head = _entries_of_every_kind(policy, record, secrets)
    kinds = {e.kind for e in entries}
    assert {EntryKind.TRANSFER.value, EntryKind.TRANSFER_BLOCKED.value} <= kinds
    back = []
    for entry in entries:
        data = serde.encode("t.pcf.audit", "AuditLogEntry", entry_to_datum(entry, "gateway-p3"))
        # the sink's encoder writes the field groups once per layout: the same bytes
        assert serde.encode_entry("t.pcf.audit", entry, "gateway-p3") == data
        log_id, decoded = entry_from_datum(serde.decode(data, "AuditLogEntry"))
        assert log_id == "gateway-p3"
        assert decoded == entry
        assert decoded.compute_hash() == entry.entry_hash
        back.append(decoded)
    cp = make_checkpoint(head, log_id="gateway-p3", signer=secrets.signer, issued_at=NOW)
    data = serde.encode("t.cp", "AuditLogCheckpoint", checkpoint_to_datum(cp))
    assert checkpoint_from_datum(serde.decode(data, "AuditLogCheckpoint")) == cp
    assert check_audit_log(back, [cp], KeyRing.of(secrets.signer.public_key)).ok


def test_sealed_messages_survive_avro(
    policy: Policy, record: dict[str, Any], secrets: GatewaySecrets
) -> None:
    serde = GatewaySerde(InMemorySchemaRegistry())
    p = _prepare(policy, record, secrets)
    assert p.outbound is not None
    data = serde.encode("t.out", "SealedMessage", sealed_to_datum(p.outbound))
    assert sealed_from_datum(serde.decode(data, "SealedMessage")) == p.outbound
    with pytest.raises(SerdeError, match="expected a AuditLogEntry"):
        serde.decode(data, "AuditLogEntry")
    with pytest.raises(SerdeError):
        serde.decode(data[:-3], "SealedMessage")


def test_the_compiled_encoder_writes_fastavros_bytes(
    policy: Policy, record: dict[str, Any], secrets: GatewaySecrets
) -> None:
    """``GatewaySerde`` writes through the producers' compiled encoder: for every gateway record
    type and the shapes the gateway writes, the bytes fastavro writes; a datum it refuses is
    written by fastavro (or refused with a ``SerdeError``, as before)."""
    from pcf_exchange.gateway import OutboundBatch
    from pcf_exchange.gateway.audit import seal_entry
    from pcf_exchange.gateway.runtime._avro import SCHEMA_NAMES, _entry_parts, _fast, _parsed

    assert all(_fast(name) is not None for name in SCHEMA_NAMES)
    assert None not in _entry_parts()[3:]  # the entry's head and tail too
    serde = GatewaySerde(InMemorySchemaRegistry())

    def same(name: str, datum: dict[str, Any], wire: bytes | None = None) -> None:
        buffer = io.BytesIO()
        schemaless_writer(buffer, _parsed(name), datum)
        written = serde.encode(f"t.{name}", name, datum) if wire is None else wire
        assert written[5:] == buffer.getvalue()

    entries, head = _entries_of_every_kind(policy, record, secrets)
    for entry in [*entries, seal_entry(entries[-1], log_id="gateway-p3", signer=secrets.signer)]:
        datum = entry_to_datum(entry, "gateway-p3")
        same("AuditLogEntry", datum)
        same("AuditLogEntry", datum, serde.encode_entry("t.AuditLogEntry", entry, "gateway-p3"))
    cp = make_checkpoint(head, log_id="gateway-p3", signer=secrets.signer, issued_at=NOW)
    same("AuditLogCheckpoint", checkpoint_to_datum(cp))
    batch = OutboundBatch(secrets.signer)
    held = _prepare(_hold_city(policy), record, secrets, requested_by="pcfx-gateway")
    single = _prepare(policy, record, secrets, batch=batch)
    assert held.approval is not None and single.encrypted is not None
    (in_batch,) = batch.sign()
    assert in_batch.proof is not None
    for message in (in_batch, replace(in_batch, version=1, proof=None)):
        same("SealedMessage", sealed_to_datum(message))
    source = HeldSource("gateway-p1", "pcf.products", 1, 42, "urn:x")
    same("ApprovalEvent", requested_event(held.approval, source, at="t"))
    resolved = resolved_event("a-1", outcome="released", log_id="g", entry_seq=3, at="t")
    same("ApprovalEvent", resolved)
    refused = refused_event("a-1", log_id="g", entry_seq=4, at="t", decision_offset=9, detail="x")
    same("ApprovalEvent", refused)
    counter = {"year": 2026, "metric": "pi", "individual": "h", "logId": "g", "entrySeq": 2**40}
    same("PiCounterEntry", counter)
    # a member left out that has a default: the compiled encoder refuses it, fastavro writes it
    datum = sealed_to_datum(in_batch)
    without = {k: v for k, v in datum.items() if k != "proof"}
    assert serde.encode("t.SealedMessage", "SealedMessage", without) == serde.encode(
        "t.SealedMessage", "SealedMessage", {**datum, "proof": None}
    )
    with pytest.raises(SerdeError, match="cannot encode SealedMessage"):
        serde.encode("t.SealedMessage", "SealedMessage", {**datum, "version": "2"})
    with pytest.raises(SerdeError, match="cannot encode PiCounterEntry"):
        serde.encode("t.PiCounterEntry", "PiCounterEntry", {**counter, "entrySeq": "2"})


def test_approval_events_rebuild_the_core_approval_and_its_states(
    policy: Policy, record: dict[str, Any], secrets: GatewaySecrets, tmp_path: Path
) -> None:
    held_policy = _hold_city(policy)
    p = _prepare(held_policy, record, secrets, requested_by="pcfx-gateway")
    assert p.approval is not None
    source = HeldSource("gateway-p1", "pcf.products", 1, 42, "urn:x")
    serde = GatewaySerde(InMemorySchemaRegistry())
    wire = serde.encode("a", "ApprovalEvent", requested_event(p.approval, source, at="t"))
    rebuilt, src = approval_from_request(serde.decode(wire, "ApprovalEvent"))
    assert (rebuilt, src) == (p.approval, source)

    # the officer's key, registered by the operator with role officer
    trust = Trust(tmp_path / "keys")
    keyring = Keyring(trust.operator_keys)
    keyring.apply(trust.registration("alice", SignerRole.OFFICER))
    officer = trust.party("alice")

    def judge(row: ApprovalRow, c: Candidate) -> Approval | TrustError:
        check = check_decision(keyring, row.approval, c.verdict, at=c.at, appended_at=NOW)
        if check.approval is not None:
            return check.approval
        assert check.error is not None
        return check.error

    book = ApprovalBook()
    book.apply(serde.decode(wire, "ApprovalEvent"))
    row = book.rows[p.approval.approval_id]
    assert row.status(NOW) is RowStatus.PENDING
    assert row.status(NOW + timedelta(days=8)) is RowStatus.OVERDUE
    # an unsigned decision (free-text approver) is only a candidate: refused when judged
    forged = approve(p.approval, approver="mallory", reason="let it go", now=NOW)
    book.apply(decided_event(forged, at=NOW.isoformat()), offset=7)
    assert row.status(NOW) is RowStatus.PENDING
    ((_, nothing, refusals),) = book.actionable(["gateway-p1"], NOW, judge)
    assert nothing is None and [r.error.reason for r in refusals] == ["unsigned"]
    # the officer's signed decision after it decides; the forged one before it is refused
    decided = approve(p.approval, approver="alice", reason="contract SC-1", now=NOW)
    signed = sign_decision(
        decided,
        p.approval,
        private_key=officer.private_key,
        signer_id="alice",
        key_id=officer.key_id,
        at=NOW.isoformat(),
    )
    datum = decided_event(decided, at=NOW.isoformat(), signed=signed)
    book.apply(serde.decode(serde.encode("a", "ApprovalEvent", datum), "ApprovalEvent"), offset=8)
    ((_, acted, refusals),) = book.actionable(["gateway-p1"], NOW, judge)
    assert acted == decided and [r.candidate.offset for r in refusals] == [7]
    assert book.actionable(["gateway-p0"], NOW, judge) == []
    book.apply(
        refused_event(
            decided.approval_id,
            log_id="gateway-p1",
            entry_seq=1,
            at="t",
            decision_offset=7,
            detail="unsigned",
        )
    )
    assert book.actionable(["gateway-p1"], NOW, judge) == [(row, decided, [])]
    # a signed decision altered afterwards (another reason) does not verify
    altered = {**datum["decision"], "reason": "something else"}
    assert check_decision(keyring, p.approval, altered, at=NOW.isoformat(), appended_at=NOW).error
    book.apply(
        resolved_event(
            decided.approval_id, outcome="released", log_id="gateway-p1", entry_seq=2, at="t"
        )
    )
    assert row.status(NOW) is RowStatus.RELEASED
    assert book.actionable(["gateway-p1"], NOW, judge) == []
    entry, _ = prepare_approval_event(decided, head=ChainHead(), now=NOW)
    assert entry.kind == EntryKind.APPROVAL_APPROVED.value


def _hold_city(policy: Policy) -> Policy:
    """The policy with R09 (facility address) held for EU recipients, then allowed."""
    from pcf_exchange.gateway.policy._model import ActionSpec, DestinationGroup

    rules = tuple(
        replace(
            r,
            actions={
                **r.actions,
                DestinationGroup.EU: ActionSpec(Action.HOLD, then=ActionSpec(Action.ALLOW)),
            },
        )
        if r.id == "R09-facility-address"
        else r
        for r in policy.rules
    )
    return replace(policy, rules=rules)


# ----------------------------------------------------------------------------------------------
# export, report


def test_export_round_trip_and_tamper_detection(
    tmp_path: Path, policy: Policy, record: dict[str, Any], secrets: GatewaySecrets
) -> None:
    entries, head = _entries_of_every_kind(policy, record, secrets)
    cp = make_checkpoint(head, log_id="gateway-p0", signer=secrets.signer, issued_at=NOW)
    path = tmp_path / "audit.jsonl"
    assert write_export(path, {"gateway-p0": entries}, {"gateway-p0": [cp]}) == len(entries) + 1
    got, cps, problems = read_export(path)
    keys = KeyRing.of(secrets.signer.public_key)
    assert problems == [] and check_audit_log(got["gateway-p0"], cps["gateway-p0"], keys).ok
    lines = path.read_text().splitlines()
    tampered = json.loads(lines[1])
    tampered["entry"]["recipient"]["id"] = "someone-else"
    lines[1] = json.dumps(tampered)
    path.write_text("\n".join(lines) + "\n")
    got, cps, _ = read_export(path)
    verdict = check_audit_log(got["gateway-p0"], cps["gateway-p0"], keys)
    assert not verdict.ok and verdict.first_bad_entry == 1


def test_report_escapes_everything(
    policy: Policy, record: dict[str, Any], secrets: GatewaySecrets
) -> None:
    entries, _ = _entries_of_every_kind(policy, record, secrets)
    evil = replace(entries[0], purpose="<script>alert(1)</script>", recipient_id='x"><img src=x>')
    keys = KeyRing.of(secrets.signer.public_key)
    verdict = check_audit_log([evil, *entries[1:]], [], keys)
    page = render_report(
        {"gateway-p0": [evil, *entries[1:]]}, {"gateway-p0": verdict}, source="<file>"
    )
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "NOT INTACT" in page  # the edited entry no longer hashes to its recorded hash
    assert page.count("<html") == 1 and "http://" not in page.replace("http-equiv", "")


# ----------------------------------------------------------------------------------------------
# keys


def test_key_files_round_trip(tmp_path: Path) -> None:
    key_id, public = write_gateway_key(tmp_path / "gw.pem", passphrase=b"pw")
    assert (tmp_path / "gw.pem").stat().st_mode & 0o777 == 0o600
    loaded = load_gateway_key(tmp_path / "gw.pem", passphrase=b"pw")
    assert loaded.key_id == key_id
    assert KeyRing.of(load_gateway_public_key(public)).keys.keys() == {key_id}
    text, _ = write_recipient_key(tmp_path / "r.pem")
    assert text.startswith("x25519:")
    load_recipient_private_key(tmp_path / "r.pem")
    with pytest.raises(KeyStoreError, match="must be X25519"):
        load_recipient_private_key(tmp_path / "gw.pem", passphrase=b"pw")
    with pytest.raises(KeyStoreError, match="refusing to overwrite"):
        write_gateway_key(tmp_path / "gw.pem")
    with pytest.raises(KeyStoreError, match="wrong passphrase"):
        load_gateway_key(tmp_path / "gw.pem", passphrase=b"nope")
    assert isinstance(GatewayKey.generate(), GatewayKey)


def test_a_world_readable_gateway_key_is_refused(tmp_path: Path) -> None:
    """The gateway signs releases and checkpoints: its key file is held as a supplier's is."""
    write_gateway_key(tmp_path / "gw.pem")
    (tmp_path / "gw.pem").chmod(0o644)
    with pytest.raises(KeyStoreError, match="readable by others") as caught:
        load_gateway_key(tmp_path / "gw.pem")
    assert caught.value.hint == f"Run: chmod 600 '{tmp_path / 'gw.pem'}'"
    write_recipient_key(tmp_path / "r2.pem")
    (tmp_path / "r2.pem").chmod(0o640)
    with pytest.raises(KeyStoreError, match="readable by others"):
        load_recipient_private_key(tmp_path / "r2.pem")


def test_runtime_public_api_is_pinned() -> None:
    import pcf_exchange.gateway.runtime as runtime

    assert len(set(runtime.__all__)) == len(runtime.__all__)
    for name in runtime.__all__:
        assert getattr(runtime, name) is not None
    from pcf_exchange.pcfx.commands import gateway as cli

    assert {"gateway_app", "audit_app", "approvals_app", "outbound_app"} <= set(cli.__all__)
