"""Releasing a declaration: an outbound transfer like any other, through the gateway's own shell.

A declaration leaves only through :class:`gateway.Gateway` (``process``: the core's
:func:`~gateway.prepare_transfer` — decide under the policy, transform, seal to the recipient,
chain one audit entry — then the :class:`~gateway.TransferSink` commits message and entry
together or neither). There is no second sealing or audit path here: this module only turns a
declaration into the record the policy decides on (:func:`declaration_record`) and reads the
outcome back (:class:`Release`).

**The record.** ``{"id": <declaration id>, "declaration": <the declaration's JSON>}``, plus
``batteryPassport`` for Art. 7 (the passport part, decimals as strings: canonical JSON carries
no binary numbers; the passport file written locally has JSON numbers). ``None`` values and empty
lists are left out. The shipped policy (``gateway/policies/default.yaml``, section *Declarations*)
classifies every path of the three kinds; any other path blocks the record (deny by default).
What the law makes public goes unchanged (the Art. 7 figures, class and links under R02,
the plant's location under R20 for ``battery-regulation-art7`` only; the manufacturer's and
product's identity under R05, with the Catena-X usage policy abroad); the CBAM installation's
identity goes under R21 for ``cbam-reporting`` only, and its coordinates and UN/LOCODE are held
for a compliance officer's approval (R22; regulation.md §2.3: required by the EU side, so
*approval*, not *block*); a study report's free text stays home abroad (R04) and the background
factors' contributions are BOM composition (R15: redacted abroad).

**Held declarations and their approval.** A held declaration is audited as held
(``transfer_held``, with its approval id) and nothing leaves. It is not on a topic the gateway
runner could re-read (the runner's approvals fetch the held record from ``pcf.products``), so the
exact record the policy decided on is kept as a :class:`HeldDeclaration` (the
``*.held.json`` file next to the declaration), and the approval request names it
(:data:`DECLARATION_SOURCE` as its source, the declaration id as its product). A compliance
officer decides with the same signed path as every other held transfer (``pcfx approvals
approve|deny --key``, on ``pcf.approvals``); :func:`prepare_approved_release` then turns the
trusted decision into what the runner's ``_resolve`` writes for a held product: the approval's
own audit entry (approved or denied) and, when approved, the transfer decided again *with* the
approval (sealed; its ``transfer`` entry names the approval). The approval binds the record's
SHA-256 and the held fields (:meth:`gateway.Approval.problem_for`), so an edited held file is
blocked, not released.

**Purposes.** Art. 7 → ``battery-regulation-art7``; CBAM → ``cbam-reporting``; a study report
→ ``pcf-exchange`` (``carbon-label-certification`` for a certification body). The recipient must
hold the purpose in the policy, or the transfer is blocked and audited as such.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from pcf_exchange.contracts.errors import DeclarationInvalid, Violation
from pcf_exchange.gateway._approvals import Approval, ApprovalState
from pcf_exchange.gateway._pipeline import (
    Gateway,
    GatewaySecrets,
    PreparedTransfer,
    prepare_approval_event,
    prepare_transfer,
)
from pcf_exchange.gateway._sealing import SealedMessage
from pcf_exchange.gateway.audit._entry import AuditEntry, ChainHead
from pcf_exchange.gateway.declarations._art7 import Art7Declaration
from pcf_exchange.gateway.declarations._cbam import CbamCommunication
from pcf_exchange.gateway.declarations._study import StudyReport
from pcf_exchange.gateway.policy import CounterState, Policy
from pcf_exchange.gateway.policy._decision import Outcome

__all__ = [
    "DECLARATION_SOURCE",
    "DEFAULT_PURPOSES",
    "ApprovedRelease",
    "Declaration",
    "HeldDeclaration",
    "Release",
    "declaration_record",
    "doc_id",
    "prepare_approved_release",
    "release",
]

DECLARATION_SOURCE: Final = "pcfx-declarations"
"""The source an approval request names for a held declaration (it is on no topic: its record
waits in the ``*.held.json`` file); the gateway runner leaves such approvals alone."""

Declaration = Art7Declaration | CbamCommunication | StudyReport

DEFAULT_PURPOSES: Final = {
    "eu-battery-regulation-art7": "battery-regulation-art7",
    "cbam-embedded-emissions": "cbam-reporting",
    "gbt24067-study-report": "pcf-exchange",
}
"""Declaration type → the policy purpose it is released under by default."""


def _strings(value: Any) -> Any:
    """Decimals to strings; ``None`` and empty lists or objects dropped (the record the policy
    sees, and exactly what the recipient opens)."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Mapping):
        items = ((k, _strings(v)) for k, v in value.items())
        return {k: v for k, v in items if v is not None and v not in ([], {})}
    if isinstance(value, list | tuple):
        return [v for v in (_strings(v) for v in value) if v is not None]
    return value


def doc_id(doc: Declaration) -> str:
    """The declaration's own id (declaration, communication or report id)."""
    if isinstance(doc, Art7Declaration):
        return doc.declaration_id
    if isinstance(doc, CbamCommunication):
        return doc.communication_id
    return doc.report_id


def declaration_record(doc: Declaration) -> dict[str, Any]:
    """The record the policy decides on (see the module docstring)."""
    record: dict[str, Any] = {"id": doc_id(doc), "declaration": _strings(doc.to_json())}
    if isinstance(doc, Art7Declaration):
        record["batteryPassport"] = _strings(doc.passport())
    return record


@dataclass(frozen=True, slots=True)
class Release:
    """What the gateway did with one declaration."""

    declaration_type: str
    declaration_id: str
    recipient: str
    purpose: str
    outcome: Outcome
    reasons: tuple[str, ...]
    """The policy's reasons (``code|path|rule``), as the audit entry records them."""
    entry: AuditEntry
    """The one audit entry of this transfer (sent, held or blocked)."""
    message: SealedMessage | None
    """The sealed message for the recipient, when it went."""
    approval_id: str | None
    """The approval a held declaration waits for."""

    @property
    def released(self) -> bool:
        return self.message is not None

    def to_dict(self) -> dict[str, Any]:
        """camelCase, for ``--json``."""
        return {
            "declarationType": self.declaration_type,
            "declarationId": self.declaration_id,
            "recipient": self.recipient,
            "purpose": self.purpose,
            "outcome": self.outcome.value,
            "released": self.released,
            "messageId": None if self.message is None else self.message.message_id,
            "approvalId": self.approval_id,
            "auditEntry": {
                "seq": self.entry.seq,
                "kind": self.entry.kind,
                "hash": self.entry.entry_hash,
            },
            "reasons": list(self.reasons),
        }


def release(
    doc: Declaration,
    *,
    gateway: Gateway,
    recipient: str,
    purpose: str,
    now: datetime,
    on_hold: Callable[[PreparedTransfer], Sequence[Any]] | None = None,
) -> Release:
    """Release *doc* to *recipient* under *purpose* through *gateway* (decide, transform, seal,
    audit, commit: :meth:`gateway.Gateway.process`). Blocked and held declarations are audited
    too; nothing leaves for them.

    *on_hold* (the Kafka shell): the records to commit with a held declaration's audit entry,
    in the same transaction (the approval request on ``pcf.approvals``); they go to the sink's
    ``commit(..., extra=...)``, so the request exists exactly when its ``transfer_held`` entry
    does."""
    record = declaration_record(doc)
    if on_hold is None:
        prepared = gateway.process(record, recipient=recipient, purpose=purpose, now=now)
    else:
        prepared = prepare_transfer(
            gateway.policy,
            record,
            recipient=recipient,
            purpose=purpose,
            counters=gateway.counters,
            head=gateway.head,
            secrets=gateway.secrets,
            now=now,
        )
        extra = on_hold(prepared) if prepared.approval is not None else ()
        outbound = [prepared.outbound] if prepared.outbound else []
        commit: Any = gateway.sink.commit  # (the Kafka sink takes extra records)
        commit(outbound, prepared.entries, extra=extra)
        gateway.head, gateway.counters = prepared.head, prepared.counters
    (entry,) = prepared.entries
    return Release(
        declaration_type=doc.doc_type,
        declaration_id=doc_id(doc),
        recipient=recipient,
        purpose=purpose,
        outcome=prepared.decision.outcome,
        reasons=entry.reasons,
        entry=entry,
        message=prepared.outbound,
        approval_id=None if prepared.approval is None else prepared.approval.approval_id,
    )


# --- a held declaration, and its release once approved --------------------------------------


def _field(data: Mapping[str, Any], name: str, subject: str, kind: type) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or (isinstance(value, str) and not value.strip()):
        raise DeclarationInvalid(
            [
                Violation(
                    name,
                    "held_field",
                    f"a held declaration needs '{name}' as a {kind.__name__}",
                    None if value is None else repr(value)[:80],
                )
            ],
            subject=subject,
        )
    return value


@dataclass(frozen=True, slots=True)
class HeldDeclaration:
    """A declaration the policy held: the exact record it decided on, waiting for a decision.

    Written as ``<out>/<type>-<id>.held.json`` when the hold is audited; read back by
    ``pcfx declarations release --approval ID``. Nothing in it is trusted: the approval binds
    the record's SHA-256, recipient, purpose, policy and held fields."""

    approval_id: str
    declaration_type: str
    declaration_id: str
    recipient: str
    purpose: str
    record: Mapping[str, Any]

    @classmethod
    def of(cls, doc: Declaration, result: Release) -> HeldDeclaration:
        if result.approval_id is None:
            raise ValueError(f"declaration {result.declaration_id} was not held for approval")
        return cls(
            result.approval_id,
            doc.doc_type,
            doc_id(doc),
            result.recipient,
            result.purpose,
            declaration_record(doc),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "approvalId": self.approval_id,
            "declarationType": self.declaration_type,
            "declarationId": self.declaration_id,
            "recipient": self.recipient,
            "purpose": self.purpose,
            "record": dict(self.record),
        }

    @classmethod
    def from_json(cls, data: Any, *, subject: str) -> HeldDeclaration:
        if not isinstance(data, Mapping):
            raise DeclarationInvalid(
                [
                    Violation(
                        "", "held_file", "a held declaration is a JSON object", type(data).__name__
                    )
                ],
                subject=subject,
            )
        return cls(
            _field(data, "approvalId", subject, str),
            _field(data, "declarationType", subject, str),
            _field(data, "declarationId", subject, str),
            _field(data, "recipient", subject, str),
            _field(data, "purpose", subject, str),
            _field(data, "record", subject, Mapping),
        )


@dataclass(frozen=True, slots=True)
class ApprovedRelease:
    """What deciding a held declaration produces, ready to commit as one unit (pure)."""

    outcome: str
    """``released``, ``blocked`` (approved, but the policy no longer lets it go: a changed
    record, policy or an expired approval) or ``denied``."""
    detail: str | None
    entries: tuple[AuditEntry, ...]
    """The approval's entry, then (approved) the transfer's, which names the approval."""
    outbound: SealedMessage | None
    head: ChainHead
    counters: CounterState
    transfer: PreparedTransfer | None


def prepare_approved_release(
    held: HeldDeclaration,
    approval: Approval,
    *,
    policy: Policy,
    secrets: GatewaySecrets,
    head: ChainHead,
    counters: CounterState,
    now: datetime,
) -> ApprovedRelease:
    """The audit entries (and the sealed message) for a trusted decision on *held*; no I/O.

    *approval* is the request moved to approved or denied by a decision the caller verified
    (:func:`gateway._decision_signing.check_decision`)."""
    if approval.approval_id != held.approval_id:
        raise ValueError(
            f"approval {approval.approval_id} is not the one {held.declaration_id} waits for"
            f" ({held.approval_id})"
        )
    if approval.state not in (ApprovalState.APPROVED, ApprovalState.DENIED):
        raise ValueError(f"approval {approval.approval_id} is {approval.state.value}")
    entry, head = prepare_approval_event(approval, head=head, now=now)
    if approval.state is ApprovalState.DENIED:
        return ApprovedRelease("denied", approval.reason, (entry,), None, head, counters, None)
    prepared = prepare_transfer(
        policy,
        held.record,
        recipient=approval.recipient_id,
        purpose=approval.purpose,
        counters=counters,
        head=head,
        secrets=secrets,
        now=now,
        approval=approval,
    )
    entries = (entry, *prepared.entries)
    if prepared.outbound is None:
        why = "; ".join(str(r) for r in prepared.decision.reasons[:3]) or "blocked by policy"
        return ApprovedRelease("blocked", why, entries, None, prepared.head, counters, prepared)
    return ApprovedRelease(
        "released",
        approval.reason,
        entries,
        prepared.outbound,
        prepared.head,
        prepared.counters,
        prepared,
    )
