"""Gateway errors, each a subclass of the one tree in ``contracts.errors``.

``PolicyFileInvalid`` (every problem with YAML path and line), ``TransferBlocked``/``TransferHeld``
(``PolicyDenied``), ``ApprovalStateError``, and ``AuditStoreError``/``CommitFailed`` (I/O).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pcf_exchange.contracts.errors import (
    InfrastructureError,
    PcfError,
    PolicyDenied,
    ValidationFailed,
    Violation,
)

__all__ = [
    "ApprovalStateError",
    "AuditStoreError",
    "CommitFailed",
    "PolicyFileInvalid",
    "TransferBlocked",
    "TransferHeld",
]


class PolicyFileInvalid(ValidationFailed):
    """The policy file is not valid: every problem is listed with its path (and YAML line)."""

    code = "policy_invalid"
    hint = (
        "Fix the policy file at the paths named; nothing was loaded, the old policy stays active."
    )

    def __init__(
        self,
        violations: Iterable[Violation],
        *,
        source: str,
        lines: Mapping[str, int] | None = None,
    ) -> None:
        self.source = source
        self.lines: dict[str, int] = dict(lines or {})
        """YAML line (1-based) of each violation path that could be located."""
        super().__init__(violations, subject=f"policy {source}")


class TransferBlocked(PolicyDenied):
    """The policy blocks this record for this recipient; ``reasons`` lists every cause."""

    code = "transfer_blocked"

    def __init__(self, message: str, *, reasons: Iterable[Any] = ()) -> None:
        super().__init__(message)
        self.reasons = tuple(reasons)


class TransferHeld(PolicyDenied):
    """The record waits for a human approval; ``reasons`` lists every field and rule holding it."""

    code = "transfer_held"
    hint = "A compliance officer must approve (or deny) the pending approval request."

    def __init__(self, message: str, *, reasons: Iterable[Any] = ()) -> None:
        super().__init__(message)
        self.reasons = tuple(reasons)


class ApprovalStateError(PcfError):
    """An approval cannot make the transition asked for (wrong state, expired, missing approver)."""

    code = "approval_state"
    hint = "Check the approval's state and expiry; request a new approval if it expired."


class CommitFailed(InfrastructureError):
    """The outbound messages and their audit entries could not be committed together: none went."""

    code = "commit_failed"
    hint = "Nothing was sent. Fix the audit store or broker and process the record again."


class AuditStoreError(InfrastructureError):
    """The audit store cannot be written (disk full, permissions, broker refused)."""

    code = "audit_store"
    hint = "Nothing was sent: restore the audit store, then process the record again."
