"""The outbound gateway's pure core: policy, transforms, sealing, audit log, approvals, pipeline.

Everything here is plain Python with no Kafka or HTTP in it; the I/O shells plug in through
``AuditStore`` and ``TransferSink``. Sub-packages: ``gateway.policy``, ``gateway.audit``.
"""

from pcf_exchange.gateway._approvals import (
    Approval,
    ApprovalState,
    approve,
    deny,
    expire,
    request_approval,
)
from pcf_exchange.gateway._errors import (
    ApprovalStateError,
    AuditStoreError,
    CommitFailed,
    PolicyFileInvalid,
    TransferBlocked,
    TransferHeld,
)
from pcf_exchange.gateway._pipeline import (
    Gateway,
    GatewaySecrets,
    InMemoryTransferSink,
    PreparedTransfer,
    TransferSink,
    prepare_approval_event,
    prepare_transfer,
)
from pcf_exchange.gateway._sealing import (
    OUTBOUND_CONTENT_TYPE,
    SEAL_SUITE,
    SEAL_SUITE_BATCH,
    EncryptedRecord,
    GatewayKey,
    KeyRing,
    OpenedMessage,
    OutboundBatch,
    SealedMessage,
    key_id_of,
    open_message,
    seal,
    seal_batch,
)
from pcf_exchange.gateway.policy import (
    Outcome,
    Policy,
    PolicyDecision,
    apply,
    default_policy_path,
    evaluate,
    load_policy,
    parse_policy,
)

__all__ = [
    "OUTBOUND_CONTENT_TYPE",
    "SEAL_SUITE",
    "SEAL_SUITE_BATCH",
    "Approval",
    "ApprovalState",
    "ApprovalStateError",
    "AuditStoreError",
    "CommitFailed",
    "EncryptedRecord",
    "Gateway",
    "GatewayKey",
    "GatewaySecrets",
    "InMemoryTransferSink",
    "KeyRing",
    "OpenedMessage",
    "OutboundBatch",
    "Outcome",
    "Policy",
    "PolicyDecision",
    "PolicyFileInvalid",
    "PreparedTransfer",
    "SealedMessage",
    "TransferBlocked",
    "TransferHeld",
    "TransferSink",
    "apply",
    "approve",
    "default_policy_path",
    "deny",
    "evaluate",
    "expire",
    "key_id_of",
    "load_policy",
    "open_message",
    "parse_policy",
    "prepare_approval_event",
    "prepare_transfer",
    "request_approval",
    "seal",
    "seal_batch",
]
