"""The audit log: hash-chained entries, RFC 6962 signed checkpoints, proofs, and a storage seam.

Build entries with ``append_entry``, seal with ``make_checkpoint``, check with
``check_audit_log`` / ``verify_audit_log``; store through any ``AuditStore``.
"""

from pcf_exchange.gateway.audit._entry import (
    CHECKPOINT_TYPE,
    ENTRY_TYPE,
    GENESIS_HASH,
    SEAL_TYPE,
    AuditEntry,
    BatchSeal,
    ChainHead,
    Checkpoint,
    EntryKind,
    append_entry,
    chain_entries,
    chain_new_entry,
    format_time,
    make_checkpoint,
    seal_entry,
)
from pcf_exchange.gateway.audit._resume import (
    AuditResumeRefused,
    RefusalReason,
    ResumeCheck,
    check_resume,
    resume_chain,
)
from pcf_exchange.gateway.audit._store import AuditStore, InMemoryAuditStore, JsonLinesAuditStore
from pcf_exchange.gateway.audit._verify import (
    AuditVerification,
    Finding,
    InclusionProof,
    Problem,
    check_audit_log,
    check_inclusion,
    prove_consistency,
    prove_inclusion,
    verify_audit_log,
    verify_checkpoint_consistency,
    verify_inclusion_proof,
)

__all__ = [
    "CHECKPOINT_TYPE",
    "ENTRY_TYPE",
    "GENESIS_HASH",
    "SEAL_TYPE",
    "AuditEntry",
    "AuditResumeRefused",
    "AuditStore",
    "AuditVerification",
    "BatchSeal",
    "ChainHead",
    "Checkpoint",
    "EntryKind",
    "Finding",
    "InMemoryAuditStore",
    "InclusionProof",
    "JsonLinesAuditStore",
    "Problem",
    "RefusalReason",
    "ResumeCheck",
    "append_entry",
    "chain_entries",
    "chain_new_entry",
    "check_audit_log",
    "check_inclusion",
    "check_resume",
    "format_time",
    "make_checkpoint",
    "prove_consistency",
    "prove_inclusion",
    "resume_chain",
    "seal_entry",
    "verify_audit_log",
    "verify_checkpoint_consistency",
    "verify_inclusion_proof",
]
