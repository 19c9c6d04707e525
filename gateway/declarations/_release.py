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

**Known limit.** A held declaration has no approval route yet: the runner's approvals re-read
the held record from ``pcf.products``, and a declaration is not on a topic. It is audited as
held (``transfer_held``, with its approval id) and nothing leaves.

**Purposes.** Art. 7 → ``battery-regulation-art7``; CBAM → ``cbam-reporting``; a study report
→ ``pcf-exchange`` (``carbon-label-certification`` for a certification body). The recipient must
hold the purpose in the policy, or the transfer is blocked and audited as such.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from gateway._pipeline import Gateway
from gateway._sealing import SealedMessage
from gateway.audit._entry import AuditEntry
from gateway.declarations._art7 import Art7Declaration
from gateway.declarations._cbam import CbamCommunication
from gateway.declarations._study import StudyReport
from gateway.policy._decision import Outcome

__all__ = [
    "DEFAULT_PURPOSES",
    "Declaration",
    "Release",
    "declaration_record",
    "doc_id",
    "release",
]

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
    doc: Declaration, *, gateway: Gateway, recipient: str, purpose: str, now: datetime
) -> Release:
    """Release *doc* to *recipient* under *purpose* through *gateway* (decide, transform, seal,
    audit, commit: :meth:`gateway.Gateway.process`). Blocked and held declarations are audited
    too; nothing leaves for them."""
    prepared = gateway.process(
        declaration_record(doc), recipient=recipient, purpose=purpose, now=now
    )
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
