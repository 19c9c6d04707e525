"""A realistic audit log for the console and report tests, made by the real gateway core.

Three days of transfers through :class:`gateway.Gateway` on the shipped policy: transformed
transfers to the EU battery OEM, a blocked record, a CBAM transfer held then approved and
released, one held then denied, and one still pending (with its ``requested`` event in an
in-memory approvals queue). The officer ``alice`` has a key file and an operator registration,
so a decision made in the console can be judged by :func:`check_decision` and acted on by the
gateway exactly as the runtime does (:func:`act_on_decisions`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pcf_exchange.contracts import SignerRole
from pcf_exchange.contracts.keyring import Keyring
from pcf_exchange.gateway import (
    Gateway,
    GatewaySecrets,
    InMemoryTransferSink,
    Policy,
    approve,
    deny,
)
from pcf_exchange.gateway._approvals import Approval, ApprovalState
from pcf_exchange.gateway._codec import HeldSource, requested_event, resolved_event
from pcf_exchange.gateway._decision_signing import check_decision
from pcf_exchange.gateway.audit import JsonLinesAuditStore
from pcf_exchange.gateway.console import InMemoryApprovalQueue
from pcf_exchange.gateway.policy import CounterState
from tests.gateway._factories import NOW, battery_record
from tests.gateway._trust import OFFICER, Trust

OEM = ("eu-battery-oem-de", "battery-regulation-art7")
CBAM = ("eu-cbam-importer-nl", "cbam-reporting")
DAY = timedelta(days=1)


@dataclass
class Scenario:
    path: Path
    gateway: Gateway
    queue: InMemoryApprovalQueue
    trust: Trust
    keyring: Keyring
    pending: Approval
    """The CBAM approval still waiting for an officer (requested on day 3)."""
    records: dict[str, dict[str, Any]]
    """Approval id -> the held record (what the gateway re-reads to release it)."""

    @property
    def officer_key(self) -> Path:
        return self.trust.party(OFFICER).key_file


def build_scenario(
    tmp_path: Path, policy: Policy, secrets: GatewaySecrets, counters: CounterState
) -> Scenario:
    path = tmp_path / "audit.jsonl"
    gw = Gateway(
        policy, secrets, InMemoryTransferSink(audit=JsonLinesAuditStore(path)), counters=counters
    )
    trust = Trust(tmp_path / "keys")
    keyring = Keyring(trust.operator_keys)
    keyring.apply(trust.registration(OFFICER, SignerRole.OFFICER))
    queue = InMemoryApprovalQueue()
    records: dict[str, dict[str, Any]] = {}

    def hold(at: datetime) -> Approval:
        record = battery_record()
        prepared = gw.process(record, recipient=CBAM[0], purpose=CBAM[1], now=at)
        assert prepared.approval is not None
        records[prepared.approval.approval_id] = record
        source = HeldSource(secrets.log_id, "pcf.products", 0, len(queue.events), "pack-77")
        queue.submit(
            prepared.approval.approval_id,
            requested_event(prepared.approval, source, at=at.isoformat()),
        )
        return prepared.approval

    # day 1: two transformed transfers to the OEM, one blocked record
    gw.process(battery_record(), recipient=OEM[0], purpose=OEM[1], now=NOW)
    gw.process(battery_record(), recipient=OEM[0], purpose=OEM[1], now=NOW + timedelta(hours=1))
    bad = battery_record()
    bad["pcf"]["undeclared"] = "x"
    gw.process(bad, recipient=OEM[0], purpose=OEM[1], now=NOW + timedelta(hours=2))
    gw.checkpoint(now=NOW + timedelta(hours=3))
    # day 2: held, approved by an officer, released; held, denied
    first = hold(NOW + DAY)
    approved = approve(
        first,
        approver="bob",
        reason="CBAM Q2 report, LOCODE only",
        now=NOW + DAY + timedelta(hours=1),
    )
    gw.record_approval(approved, now=NOW + DAY + timedelta(hours=1))
    gw.process(
        records[first.approval_id],
        recipient=CBAM[0],
        purpose=CBAM[1],
        now=NOW + DAY + timedelta(hours=2),
        approval=approved,
    )
    queue.events.append(
        resolved_event(
            first.approval_id,
            outcome="released",
            log_id=secrets.log_id,
            entry_seq=gw.head.size - 1,
            at=(NOW + DAY + timedelta(hours=2)).isoformat(),
        )
    )
    second = hold(NOW + DAY + timedelta(hours=3))
    gw.record_approval(
        deny(
            second,
            approver="bob",
            reason="no CBAM goods in this shipment",
            now=NOW + DAY + timedelta(hours=4),
        ),
        now=NOW + DAY + timedelta(hours=4),
    )
    queue.events.append(
        resolved_event(
            second.approval_id,
            outcome="denied",
            log_id=secrets.log_id,
            entry_seq=gw.head.size - 1,
            at=(NOW + DAY + timedelta(hours=4)).isoformat(),
        )
    )
    # day 3: one more OEM transfer, one CBAM transfer held and pending
    gw.process(battery_record(), recipient=OEM[0], purpose=OEM[1], now=NOW + 2 * DAY)
    pending = hold(NOW + 2 * DAY + timedelta(hours=1))
    gw.checkpoint(now=NOW + 2 * DAY + timedelta(hours=2))
    return Scenario(path, gw, queue, trust, keyring, pending, records)


def act_on_decisions(scenario: Scenario, now: datetime) -> list[str]:
    """What the gateway runtime does with ``decided`` events: judge each candidate
    (:func:`check_decision`), record the officer's decision, release (or not) the held record,
    and checkpoint. Returns the refusals' reasons."""
    refused: list[str] = []
    book = scenario.queue.book()
    for row in book.rows.values():
        if row.resolution is not None:
            continue
        for candidate in row.untried():
            check = check_decision(
                scenario.keyring,
                row.approval,
                candidate.verdict,
                at=candidate.at,
                appended_at=now,
            )
            if check.error is not None:
                refused.append(check.error.reason)
                continue
            decided = check.approval
            assert decided is not None
            scenario.gateway.record_approval(decided, now=now)
            outcome = "denied"
            if decided.state is ApprovalState.APPROVED:
                prepared = scenario.gateway.process(
                    scenario.records[row.approval.approval_id],
                    recipient=row.approval.recipient_id,
                    purpose=row.approval.purpose,
                    now=now,
                    approval=decided,
                )
                outcome = "released" if prepared.outbound is not None else "blocked"
            scenario.queue.events.append(
                resolved_event(
                    row.approval.approval_id,
                    outcome=outcome,
                    log_id=scenario.gateway.secrets.log_id,
                    entry_seq=scenario.gateway.head.size - 1,
                    at=now.isoformat(),
                )
            )
            break
    scenario.gateway.checkpoint(now=now)
    return refused
