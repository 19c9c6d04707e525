"""The gateway on Kafka: the outbound pipeline, its transactional seams, approvals, subscriptions.

This package is the Kafka shell only; the pure modules it runs (the adapter, the codec, the
approvals book, subscriptions, topic names) live beside the core in ``gateway/`` and are
re-exported here for the runtime's callers.

``GatewayRunner`` consumes ``pcf.products`` in a consumer group and commits, per input
partition, outbound messages + audit entries + checkpoints + offsets in one Kafka transaction
(``KafkaTransferSink``). ``KafkaAuditStore`` reads a chain back. See ``gateway/README.md``.
"""

from pcf_exchange.gateway._adapter import (
    LINEAGE_SCHEMA,
    gateway_record,
    lineage_of,
    pilot_category_of,
)
from pcf_exchange.gateway._approvals_log import ApprovalBook, ApprovalRow, RowStatus
from pcf_exchange.gateway._codec import (
    HeldSource,
    approval_from_request,
    checkpoint_from_datum,
    checkpoint_to_datum,
    decided_event,
    entry_from_datum,
    entry_to_datum,
    requested_event,
    resolved_event,
    sealed_from_datum,
    sealed_to_datum,
)
from pcf_exchange.gateway._subscriptions import (
    Subscription,
    Subscriptions,
    default_subscriptions_path,
    load_subscriptions,
    parse_subscriptions,
)
from pcf_exchange.gateway._topics import Topics, log_id_for
from pcf_exchange.gateway.runtime._avro import (
    SCHEMA_NAMES,
    GatewaySerde,
    kafka_registrar,
    schema_text,
)
from pcf_exchange.gateway.runtime._kafka import fetch_one, partition_count, read_to_end
from pcf_exchange.gateway.runtime._runner import (
    GatewayRunner,
    RunnerSettings,
    RunStats,
    gateway_schemas,
)
from pcf_exchange.gateway.runtime._sink import (
    KafkaAuditStore,
    KafkaTransferSink,
    Produced,
    read_audit_logs,
)

__all__ = [
    "LINEAGE_SCHEMA",
    "SCHEMA_NAMES",
    "ApprovalBook",
    "ApprovalRow",
    "GatewayRunner",
    "GatewaySerde",
    "HeldSource",
    "KafkaAuditStore",
    "KafkaTransferSink",
    "Produced",
    "RowStatus",
    "RunStats",
    "RunnerSettings",
    "Subscription",
    "Subscriptions",
    "Topics",
    "approval_from_request",
    "checkpoint_from_datum",
    "checkpoint_to_datum",
    "decided_event",
    "default_subscriptions_path",
    "entry_from_datum",
    "entry_to_datum",
    "fetch_one",
    "gateway_record",
    "gateway_schemas",
    "kafka_registrar",
    "lineage_of",
    "load_subscriptions",
    "log_id_for",
    "parse_subscriptions",
    "partition_count",
    "pilot_category_of",
    "read_audit_logs",
    "read_to_end",
    "requested_event",
    "resolved_event",
    "schema_text",
    "sealed_from_datum",
    "sealed_to_datum",
]
