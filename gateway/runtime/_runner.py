"""The outbound pipeline on Kafka: ``pcf.products`` → policy → outbound topics + audit, atomically.

One :class:`GatewayRunner` is one gateway instance. Instances share the consumer group
(``--group``), so Kafka spreads the partitions of ``pcf.products`` (keyed by product id) over
them. **Each input partition has its own audit chain** (``log_id = gateway-p<n>``) and its own
transactional producer (``transactional.id = pcfx-gateway.<group>.<topic>.<n>``): the chain has
exactly one writer at any time, and the instance that takes a partition over fences the previous
owner (``init_transactions``) before it reads the chain head back from ``pcf.audit``.

It resumes a chain only from what it signed (``gateway.audit.resume_chain``): its newest
checkpoint, matched by the entries it covers, and a tail that ends in its batch seal. A chain it
cannot vouch for stops that partition only (``GatewayRunner.stopped``): the partition is paused,
nothing of it is consumed, committed, extended or sealed, and the other partitions go on.

For every batch of one partition, in this order (no I/O until step 4):

0. verify each record as a signed hand-off of the streams (:mod:`contracts.handoff`: batch
   signature headers, a key registered on ``pcf.keys`` with role ``service``, usable when the
   broker appended the record, the proof and root signature over the exact bytes); a record that
   does not verify is released to nobody: a ``transfer_blocked`` audit entry names why
   (``unsigned``, ``unknown_key``, ``wrong_role``, ``bad_signature``, ``revoked_key``, ...) and
   a ``Rejection`` with that reason goes to ``pcf.rejected``. The keyring is the one fold of
   ``pcf.keys`` (:class:`~contracts.keyring.Keyring`, trusting the configured operator keys),
   read to its end before the gateway subscribes and followed while it runs; a key registered
   later than the record was read is still unknown then (refused, audited);
1. decode each roll-up once, straight into the policy's input record (the reader generated
   from the writer's registered schema, :mod:`~gateway.runtime._rollup_reader`; what it cannot
   read, the Avro datum of ``RolledUpFootprint`` and
   :func:`~gateway._adapter.record_from_datum`) and route it to its subscribers;
   records that do not decode (framing, unknown schema id, another record type, malformed
   Avro) become ``Rejection`` records for ``pcf.rejected`` naming why;
2. run the pure core over the batch's ``(record, recipient)`` transfers in its batch form
   (:func:`~gateway._pipeline.prepare_transfers`: decide all → transform all → encrypt all into
   the batch's :class:`~gateway._sealing.OutboundBatch`, one HPKE context per recipient per
   batch → chain one audit entry each; blocked and held decisions get one too, held ones open an
   approval). Whatever else a record adds to the chain or the unit (a refused hand-off, a
   rejection, a reactivated footprint) first runs the core over the transfers before it, so
   entries and events keep the records' order; one clock reading stamps each such run;
3. sign a checkpoint of the chain when one is due;
4. sign the batch's outbound messages once (one Merkle root, an inclusion proof per message) and
   commit the unit in one Kafka transaction (``KafkaTransferSink.commit``): outbound messages,
   audit entries, checkpoint, approval requests, PI counter entries, rejections and the
   consumed offsets — all visible to ``read_committed`` readers, or none;
5. only then adopt the new chain head and counters. If the commit fails, rewind the partition
   to the batch's first offset and process it again (nothing went out, nothing is half-done).

**Stage by stage.** Steps 0 and 1 have no chain and no state that a record of the batch
changes (the keyring and the registry move between batches, in ``_follow``), so each runs over
the whole batch before step 2 walks the records in offset order: the hand-off check of every
record, then the decode and adaptation of every verified one, then the core per record, where
an unverified record's ``transfer_blocked`` entry and an undecodable record's rejection take
their place in the chain exactly as before. Only the order of the work changes, not what is
decided or written: one stage's code and data stay hot for a thousand records instead of
being evicted by the next stage after each one. In process, on the bench's roll-ups (76
fields), steps 0-2 cost 576 µs of CPU per record stage by stage against 825 µs record by record
(``bench/bench_gateway.py``, details ``steps_0_to_2_*``).

**A recipient never gets a footprint as Active after its deprecation.** The records of a
product share its partition, so its whole history passes through one chain. Each chain
remembers the (recipient, footprint id) pairs it sent as ``Deprecated`` (``_Chain.retired``;
adopted with the commit, step 5), rebuilt on resume from the chain's own entries
(:func:`gateway._pipeline.retired_by`: such transfers carry the reason
:data:`~gateway._pipeline.DEPRECATED_NOTE`). An ``Active`` copy of a retired footprint for
that recipient is refused in step 2 with a ``transfer_blocked`` entry (``reactivated``) and
counted (``RunStats.reactivated``). The notified body of the pilot got one footprint as
``Deprecated`` and then ``Active`` again (issue #22): the streams re-issue a footprint id when a
product's result comes back to an earlier one (the id is the result's deterministic UUID), for
instance while a restarted worker replays older inputs before newer ones. The set grows by one
pair per deprecation sent, per recipient (:class:`~gateway._pipeline.Retired`: a UUID footprint
id kept as its 128-bit integer, ~123 bytes a pair instead of ~305 for two strings).

**After a restart the gateway waits for its partitions.** ``run(idle_seconds=...)`` counts
idle time only while the instance holds partitions and is positioned on them
(:meth:`GatewayRunner.ready`); see :meth:`GatewayRunner.run`.

**Decode once, check once.** Step 1 does not validate the roll-up into the pydantic model
again (``contracts`` ``from_avro_dict``, a third of the time per record). It need not: the
streams built and validated every record on ``pcf.products`` (the contract rules ran when the
model was built) and signed it per batch over its exact key and value bytes; step 0 verifies
that signature before anything is read, and a record that fails it is refused as before. So the
bytes the gateway decodes are, bit for bit, bytes the streams validated: re-validating them
would find nothing new. What can still go wrong is the wire (a record of another schema id or
type, undecodable Avro): ``decode_datum`` raises for those and they end on ``pcf.rejected``
with the reason, as before. Pydantic stays at the edges (files, CLI, API) and for an approved
release (``_release``), which re-reads one held record.

**Delivery through the PACT API.** With an ``api_key`` (the API service's X25519 public key), a
footprint released to a recipient the API serves (``api_recipients``; default: every one) is
also encrypted to that key in step 2 (``prepare_transfer(api_key=...)``: the same envelope, in
the same batch, so the same signature and the same audit entry), and step 4 writes it to
``pcf.api.releases`` under the key ``<recipient id>|<footprint id>`` in the same transaction.
The topic is compacted: a footprint deprecated later is released again under the same key and
replaces the earlier copy. The API (:mod:`gateway.api._kafka`) reads that topic and nothing
else, so it serves only what the gateway released and audited.

Approval decisions on ``pcf.approvals`` are acted on by the owner of the held record's chain, in
the same way: the approval's audit entry, the released transfer (or its block), and the
``resolved`` event commit together. A decision counts only if a registered compliance officer's
key signed it for that very request (:mod:`gateway._decision_signing`); the approver audited is
that key's registered owner. Every other decision is refused: an ``approval_refused`` audit entry
and a ``refused`` event commit together, and the transfer stays held.

**Operations.** Each committed batch adds to the process's metrics
(:data:`contracts.observability.METRICS`, label ``service="gateway"``): the records taken, the
transfers by decision and recipient, the outbound messages, the rejections by reason and the
partition's lag; approvals pending are set as the approvals topic is followed. Counted per batch
and only once committed, so an aborted and retried batch counts once. :meth:`GatewayRunner.
readiness` answers ``/readyz``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from pcf_exchange.contracts import (
    AvroSerde,
    Keyring,
    KeyringOutcome,
    Rejection,
    RolledUpFootprint,
    SchemaRegistry,
    SignedSupplierKey,
    subject_for,
)
from pcf_exchange.contracts._collector import collector_paused
from pcf_exchange.contracts._schemas import schema_json
from pcf_exchange.contracts.errors import (
    ContractError,
    KeyStoreError,
    PcfError,
    SerdeError,
    TrustError,
    UnknownSchemaError,
)
from pcf_exchange.contracts.handoff import check_handoff
from pcf_exchange.contracts.observability import METRICS, Readiness
from pcf_exchange.contracts.topics import TOPICS, ensure_topics
from pcf_exchange.gateway._adapter import gateway_record, record_from_datum
from pcf_exchange.gateway._approvals import Approval, ApprovalState
from pcf_exchange.gateway._approvals_log import ApprovalBook, ApprovalRow, Candidate, Refusal
from pcf_exchange.gateway._codec import (
    HeldSource,
    checkpoint_from_datum,
    entry_from_datum,
    refused_event,
    requested_event,
    resolved_event,
    sealed_to_datum,
)
from pcf_exchange.gateway._decision_signing import check_decision
from pcf_exchange.gateway._errors import CommitFailed
from pcf_exchange.gateway._pipeline import (
    DEPRECATED_NOTE,
    GatewaySecrets,
    PreparedTransfer,
    Retired,
    TransferRequest,
    prepare_approval_event,
    prepare_transfer,
    prepare_transfers,
    reactivation_entry,
    retired_by,
)
from pcf_exchange.gateway._sealing import KeyRing, OutboundBatch, SealedMessage
from pcf_exchange.gateway._subscriptions import Subscriptions
from pcf_exchange.gateway._topics import Topics, log_id_for
from pcf_exchange.gateway._trust_entries import refused_decision_entry, untrusted_record_entry
from pcf_exchange.gateway.audit import (
    AuditEntry,
    AuditResumeRefused,
    ChainHead,
    Checkpoint,
    RefusalReason,
    ResumeCheck,
    make_checkpoint,
    resume_chain,
)
from pcf_exchange.gateway.audit._entry import format_time
from pcf_exchange.gateway.policy import (
    CounterDelta,
    CounterMetric,
    CounterState,
    Policy,
    counting_year,
    pseudonym,
)
from pcf_exchange.gateway.runtime._avro import GatewaySerde, Registrar, schema_text
from pcf_exchange.gateway.runtime._kafka import (
    consumer_config,
    coords,
    fetch_one,
    partition_count,
    read_to_end,
)
from pcf_exchange.gateway.runtime._rollup_reader import RollupReader
from pcf_exchange.gateway.runtime._sink import Fault, KafkaTransferSink, Produced

__all__ = ["API_RELEASES", "GatewayRunner", "RunStats", "RunnerSettings"]

API_RELEASES = "pcf.api.releases"
"""The table's row for what the gateway releases for delivery through the PACT API."""

log = logging.getLogger("pcfx.gateway")

SERVICE = "gateway"
"""The ``service`` label of the gateway's metrics and logs (:mod:`contracts.observability`)."""


@dataclass(frozen=True)
class RunnerSettings:
    bootstrap: str
    topics: Topics = field(default_factory=Topics)
    group_id: str = "pcfx-gateway"
    batch_size: int = 1000
    """Most input records in one transaction (per partition)."""
    poll_timeout_s: float = 0.1
    checkpoint_every: int = 10_000
    """Sign a checkpoint once this many entries are unsealed..."""
    checkpoint_interval_s: float = 5.0
    """...or once the oldest unsealed entry is this old (0: every transaction)."""
    approval_ttl: timedelta = timedelta(days=7)
    requested_by: str = "pcfx-gateway"
    audit_partitions: int = 1
    """Partitions for ``pcf.audit``/``pcf.audit.checkpoints`` when this run creates them."""
    outbound_partitions: int = 1
    create_topics: bool = True
    transaction_timeout_s: float = 30.0
    retry_backoff_s: float = 0.5
    consumer_overrides: dict[str, Any] = field(default_factory=dict)
    producer_overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunStats:
    records: int = 0
    """Input records committed (each in exactly one committed transaction)."""
    decisions: int = 0
    sent: int = 0
    blocked: int = 0
    held: int = 0
    unrouted: int = 0
    """Records no subscription matched: nothing decided, nothing sent."""
    no_footprint: int = 0
    """Roll-ups that issued no PACT footprint: nothing to send."""
    api_released: int = 0
    """Of ``sent``, also released for delivery through the PACT API."""
    rejected: int = 0
    untrusted: int = 0
    """Records that are not a verified hand-off of the streams: blocked, audited, rejected."""
    transactions: int = 0
    aborted: int = 0
    checkpoints: int = 0
    approvals_released: int = 0
    approvals_blocked: int = 0
    approvals_denied: int = 0
    approvals_expired: int = 0
    approvals_refused: int = 0
    """Decisions not signed by a registered officer's key for their request: refused, audited."""
    reactivated: int = 0
    """``Active`` copies of a footprint its recipient was already sent as ``Deprecated``:
    blocked, audited (``reactivated``), also counted in ``blocked``."""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Chain:
    """One owned input partition: its chain, its writer, what is not sealed yet."""

    partition: int
    log_id: str
    sink: KafkaTransferSink
    head: ChainHead
    unsealed: int = 0
    unsealed_since: float = 0.0
    retired: Retired = field(default_factory=Retired)
    """(recipient, footprint id) sent as ``Deprecated`` on this chain (committed)."""


@dataclass
class _Unit:
    """Everything one transaction writes (built by the pure core, committed by the sink)."""

    batch: OutboundBatch
    """The outbound messages: each encrypted as it is decided, all signed once at commit."""
    entries: list[AuditEntry] = field(default_factory=list)
    keys: dict[str, bytes] = field(default_factory=dict)
    extra: list[Produced] = field(default_factory=list)
    counters_added: list[tuple[int, CounterMetric, str]] = field(default_factory=list)
    retired: Retired = field(default_factory=Retired)
    """(recipient, footprint id) this unit sends as ``Deprecated``."""
    api_releases: dict[int, bytes] = field(default_factory=dict)
    """Position in :attr:`batch` of each copy for the PACT API -> its key on
    ``pcf.api.releases`` (``recipient|footprint id``)."""
    transfers: dict[tuple[str, str], int] = field(default_factory=dict)
    """(decision, recipient) -> how many: the transfers metric, added once committed."""
    rejected: list[str] = field(default_factory=list)
    """The reason of each rejection in ``extra``: the DLQ metric, added once committed."""


@dataclass
class _Pending:
    """Transfers of a batch waiting for step (2), in order (see :meth:`GatewayRunner._flush`)."""

    requests: list[TransferRequest] = field(default_factory=list)
    sources: list[HeldSource] = field(default_factory=list)
    retiring: list[tuple[str, str] | None] = field(default_factory=list)
    """(recipient, footprint id) of each request whose footprint is ``Deprecated``."""
    deprecated: set[tuple[str, str]] = field(default_factory=set)
    """The pairs of :attr:`retiring`: an ``Active`` copy of one waits for them to be decided."""

    def add(
        self, request: TransferRequest, source: HeldSource, retiring: tuple[str, str] | None
    ) -> None:
        self.requests.append(request)
        self.sources.append(source)
        self.retiring.append(retiring)
        if retiring is not None:
            self.deprecated.add(retiring)

    def clear(self) -> None:
        self.requests.clear()
        self.sources.clear()
        self.retiring.clear()
        self.deprecated.clear()


_GOES = frozenset({"allowed", "transformed", "approval_released"})
"""Decisions whose record goes out (an outbound message)."""


_Refusal = tuple[TrustError, str | None, str | None]
"""Why a record is not a verified hand-off: (error, claimed signer, key id)."""
_Decoded = tuple[dict[str, Any] | None, str | None, str] | ContractError
"""Step (1) of one record: (policy input record or ``None``, pilot category, product id), or
the error that makes it a rejection."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _own_records(
    topics: Topics, recipients: Iterable[str], *, api: bool = True
) -> list[tuple[str, str]]:
    """(topic, record type) of every gateway record the gateway writes (with *api*: also its
    releases for the PACT API)."""
    return [
        (topics.audit, "AuditLogEntry"),
        (topics.checkpoints, "AuditLogCheckpoint"),
        (topics.approvals, "ApprovalEvent"),
        (topics.counters, "PiCounterEntry"),
        *([(topics.of(API_RELEASES), "SealedMessage")] if api else []),
        *((topics.outbound(r), "SealedMessage") for r in recipients),
    ]


def gateway_schemas(topics: Topics, recipients: Iterable[str]) -> list[tuple[str, str]]:
    """(subject, schema text) of every record a gateway writes for *recipients*: what the
    operator registers (:func:`contracts.register_missing`) before a gateway runs under its own
    principal, which may not write the schemas topic."""
    own = [
        (subject_for(topic), schema_text(name)) for topic, name in _own_records(topics, recipients)
    ]
    return [*own, (subject_for(topics.rejected), schema_json("Rejection"))]


class GatewayRunner:
    """One gateway instance: a consumer-group member with one transactional writer per partition.

    ``run(max_records=, max_seconds=, idle_seconds=, stop=)`` is bounded on request, for tests
    and the demo. ``fault`` is handed to every sink (tests inject failures between the sends).
    ``trusted_keys`` are earlier gateway public keys (after a key rotation) whose checkpoints and
    batch seals a chain may resume from; the signing key's own public key is always trusted.
    *operator_keys* (key id -> the platform operator's public key) are the trust anchor of the
    key registry on ``pcf.keys``: the streams' service keys and the officers' keys are trusted
    only as the operator registered them. *api_key* (the PACT API service's X25519 public key)
    turns on delivery through the API for *api_recipients* (default: every recipient).
    """

    def __init__(
        self,
        settings: RunnerSettings,
        *,
        policy: Policy,
        subscriptions: Subscriptions,
        secrets: GatewaySecrets,
        registry: SchemaRegistry,
        operator_keys: Mapping[str, Ed25519PublicKey],
        registrar: Registrar | None = None,
        counter_salt: bytes | None = None,
        clock: Callable[[], datetime] = _utcnow,
        fault: Fault | None = None,
        trusted_keys: Sequence[Ed25519PublicKey] = (),
        api_key: X25519PublicKey | None = None,
        api_recipients: Iterable[str] | None = None,
    ) -> None:
        self.settings = settings
        self.api_key = api_key
        self.api_recipients = None if api_recipients is None else frozenset(api_recipients)
        self.topics = settings.topics
        self.policy = policy
        self.subscriptions = subscriptions
        self.secrets = secrets
        self.registry = registry
        self._registrar = registrar
        self.serde = GatewaySerde(registry, registrar=registrar)
        self._contracts = AvroSerde(registry)
        self._rollups = RollupReader(registry)
        self.clock = clock
        self.fault = fault
        self.stats = RunStats()
        self._salt = (
            counter_salt
            or hashlib.sha256(b"pcfx/pi-counter/v1" + secrets.pseudonym_secret).digest()
        )
        self.counters = CounterState.empty(counting_year(clock()), salt=self._salt)
        if not operator_keys:
            raise KeyStoreError(
                "'operator_keys' must name at least one operator public key (got none): without"
                " one no key registration, and so no hand-off or approval, can be trusted",
                hint="Pass the operator's public key: pcfx gateway run --operator-key"
                " operator.pub.pem.",
            )
        self.keyring = Keyring(dict(operator_keys))
        self.book = ApprovalBook()
        self._chains: dict[int, _Chain] = {}
        self._own_keys = KeyRing.of(secrets.signer.public_key, *trusted_keys)
        self.stopped: dict[int, AuditResumeRefused] = {}
        """Input partitions whose chain this instance refused to resume, and why."""
        self._positions: dict[tuple[str, int], int] = {}
        self._consumer: Consumer | None = None
        self._tail: Consumer | None = None
        self._audit_parts = 1
        self._checkpoint_parts = 1
        self._started = False
        self._ready = False
        """Partitions held and positioned (:meth:`ready`), until the next rebalance."""
        self._assigned = False
        """Whether the consumer group gave this instance its share yet (``/readyz``)."""

    # ------------------------------------------------------------------------------------------
    # lifecycle

    def start(self) -> None:
        """Topics, schemas, the approvals and counters read to their end, then subscribe."""
        if self._started:
            return
        s, t = self.settings, self.topics
        recipients = self.subscriptions.recipients
        # created when missing (if allowed), and refused when their configs differ from the
        # table's: audit evidence and approvals are kept for ever, and approvals, keys and
        # products carry the broker's clock (an officer's or the streams' key is judged on it)
        wanted = [
            (t.audit, TOPICS["pcf.audit"], s.audit_partitions),
            (t.checkpoints, TOPICS["pcf.audit.checkpoints"], s.audit_partitions),
            (t.approvals, TOPICS["pcf.approvals"], 1),
            (t.keys, TOPICS["pcf.keys"], 1),
            (t.counters, TOPICS["pcf.gateway.counters"], 1),
            (t.rejected, TOPICS["pcf.rejected"], 1),
            *((t.outbound(r), TOPICS["pcf.outbound."], s.outbound_partitions) for r in recipients),
            *([(t.of(API_RELEASES), TOPICS[API_RELEASES], 1)] if self.api_key is not None else []),
        ]
        ensure_topics(s.bootstrap, wanted, create=s.create_topics)
        # the streams create pcf.products (their partition count): checked only
        ensure_topics(s.bootstrap, [(t.products, TOPICS["pcf.products"], 1)], create=False)
        self._audit_parts = max(1, partition_count(s.bootstrap, t.audit))
        self._checkpoint_parts = max(1, partition_count(s.bootstrap, t.checkpoints))
        self.serde.ensure(_own_records(t, recipients, api=self.api_key is not None))
        self._ensure_contract_schema(t.rejected, "Rejection")
        # the shared state every instance follows: approvals and PI counters
        self._tail = Consumer(
            consumer_config(s.bootstrap, **{"fetch.wait.max.ms": 50, "fetch.queue.backoff.ms": 50})
        )
        tail_parts = [
            (topic, p)
            for topic in (t.keys, t.approvals, t.counters)
            for p in range(max(1, partition_count(s.bootstrap, topic)))
        ]
        self._positions = {tp: 0 for tp in tail_parts}
        self._catch_up()
        METRICS.approvals_pending.labels(SERVICE).set(self.book.pending)
        self._tail.assign([TopicPartition(topic, p, 0) for topic, p in tail_parts])
        self._consumer = Consumer(
            consumer_config(
                s.bootstrap,
                **{
                    "group.id": s.group_id,
                    "client.id": f"pcfx-gateway-{s.group_id}",
                    "isolation.level": "read_committed",
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "fetch.wait.max.ms": 50,
                    "fetch.queue.backoff.ms": 20,
                    **s.consumer_overrides,
                },
            )
        )
        self._consumer.subscribe(
            [t.products],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self._started = True

    def close(self) -> None:
        """Seal what is unsealed, leave the group, close every client."""
        if self._consumer is not None:
            try:
                self._consumer.close()  # revokes: _on_revoke seals and closes each chain
            finally:
                self._consumer = None
        for chain in list(self._chains.values()):
            chain.sink.close()
        self._chains.clear()
        if self._tail is not None:
            self._tail.close()
            self._tail = None
        self._started = False

    def __enter__(self) -> GatewayRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def readiness(self) -> Readiness:
        """``/readyz``: started (topics checked, keys, approvals and counters read to their end,
        subscribed) and given its partitions by the consumer group. A partition whose chain it
        refused (:attr:`stopped`) does not make it unready: the others go on, and the refusal is
        in the log and the run's result."""
        if not self._started:
            return Readiness.no("starting: checking topics, reading keys and approvals")
        if not self._assigned:
            return Readiness.no(f"joining consumer group {self.settings.group_id!r}")
        return Readiness.yes()

    # ------------------------------------------------------------------------------------------
    # the loop

    def run(
        self,
        *,
        max_records: int | None = None,
        max_seconds: float | None = None,
        idle_seconds: float | None = None,
        stop: threading.Event | None = None,
    ) -> RunStats:
        """Process until a bound is reached (records committed, wall time, idle time, *stop*).

        *idle_seconds* counts only while this instance holds partitions of ``pcf.products``
        and its consumer is positioned on each (:meth:`ready`). A gateway restarted after a
        kill -9 is not given its partitions until the dead instance's session times out (the
        broker's ``session.timeout.ms``, 45 s by default); an idle timer running meanwhile made
        it exit 0 having processed nothing, while the backlog waited (issue #22). It now waits
        for its partitions, bounded only by *max_seconds* and *stop*; an instance the group
        gives no partition at all (more instances than partitions) therefore never goes idle:
        bound it with *max_seconds*."""
        self.start()
        assert self._consumer is not None
        began = last = time.monotonic()
        was_ready = False
        s = self.settings
        while True:
            now_m = time.monotonic()
            if stop is not None and stop.is_set():
                break
            if max_records is not None and self.stats.records >= max_records:
                break
            if max_seconds is not None and now_m - began >= max_seconds:
                break
            if idle_seconds is not None:
                ready = self.ready()
                if not (ready and was_ready):
                    # waiting for partitions is not being idle, and neither is the time the
                    # take-over itself took (the chains resumed inside the consume call that
                    # ran the assignment): the idle clock starts once positioned
                    last = now_m
                elif now_m - last >= idle_seconds:
                    break
                was_ready = ready
            messages = self._consumer.consume(num_messages=s.batch_size, timeout=s.poll_timeout_s)
            self._follow()
            if messages and self._process(messages):
                last = time.monotonic()
            if self._approvals_step():
                last = time.monotonic()
            self._seal_idle()
        self.stats.seconds += time.monotonic() - began
        return self.stats

    def ready(self) -> bool:
        """Whether this instance holds partitions of ``pcf.products``, has taken each over (its
        chain resumed, or refused and paused: :attr:`stopped`) and knows where to read each
        from (its committed offsets fetched from the group coordinator; with none, the reset
        position). Cached until the next rebalance."""
        if self._ready:
            return True
        consumer = self._consumer
        if consumer is None:
            return False
        assigned = consumer.assignment()
        if not assigned or any(
            tp.partition not in self._chains and tp.partition not in self.stopped for tp in assigned
        ):
            return False
        try:
            consumer.committed(assigned, timeout=5)
        except KafkaException:
            return False
        self._ready = True
        return True

    def _process(self, messages: Sequence[Message]) -> bool:
        by_partition: dict[int, list[Message]] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer: %s", error.str())
                continue
            by_partition.setdefault(coords(message)[1], []).append(message)
        with collector_paused():  # (a batch leaves nothing for it: contracts._collector)
            for partition, batch in by_partition.items():
                if partition in self.stopped:  # refused chain: nothing of it goes on
                    self._hold(TopicPartition(*coords(batch[0])))
                    continue
                chain = self._chains.get(partition)
                if chain is None:  # revoked while in flight: the new owner redoes it
                    continue
                self._commit_batch(chain, batch)
        return bool(by_partition)

    # ------------------------------------------------------------------------------------------
    # (1)-(5) one batch of one partition

    def _commit_batch(self, chain: _Chain, batch: Sequence[Message]) -> None:
        head, counters = chain.head, self.counters
        unit = _Unit(OutboundBatch(self.secrets.signer))
        stats = RunStats()
        # (0) and (1) stage by stage over the whole batch, then (2) record by record in order
        # (see "Stage by stage" in the module docstring)
        refused = [self._handoff_error(message) for message in batch]
        decoded = [
            self._decode_or_error(message.value() or b"") if why is None else None
            for message, why in zip(batch, refused, strict=True)
        ]
        pending = _Pending()
        for message, why, found in zip(batch, refused, decoded, strict=True):
            head, counters = self._one(
                chain, message, why, found, head, counters, unit, stats, pending
            )
        head, counters = self._flush(pending, head, counters, unit, stats)
        checkpoints = self._due_checkpoint(chain, head, len(unit.entries))
        topic, partition, last = coords(batch[-1])
        offsets = [TopicPartition(topic, partition, last + 1)]
        assert self._consumer is not None
        ok = self._commit(
            chain,
            unit,
            checkpoints,
            offsets=offsets,
            group=self._consumer.consumer_group_metadata(),
        )
        if not ok:
            self._rewind(TopicPartition(*coords(batch[0])))
            return
        self._adopt(chain, head, counters, unit, checkpoints)
        stats.records = len(batch)
        self._add(stats)
        self._observe(batch, unit)

    def _observe(self, batch: Sequence[Message], unit: _Unit) -> None:
        """A committed batch's metrics (once per batch, see "Operations")."""
        topic, partition, last = coords(batch[-1])
        METRICS.records_in.labels(SERVICE, topic).inc(len(batch))
        self._count(unit)
        assert self._consumer is not None
        try:  # (the end the last fetch saw: no request to the broker)
            _, end = self._consumer.get_watermark_offsets(
                TopicPartition(topic, partition), cached=True
            )
        except Exception:  # (confluent_kafka raises KafkaException, even for no data yet)
            return
        if end >= 0:
            METRICS.lag(SERVICE, topic, partition, end, last + 1)

    def _count(self, unit: _Unit) -> None:
        for (decision, recipient), n in unit.transfers.items():
            METRICS.transfers.labels(SERVICE, decision, recipient).inc(n)
            if decision in _GOES:
                METRICS.records_out.labels(SERVICE, self.topics.outbound(recipient)).inc(n)
        for reason in unit.rejected:
            METRICS.dlq.labels(SERVICE, reason).inc()
        if unit.rejected:
            METRICS.records_out.labels(SERVICE, self.topics.rejected).inc(len(unit.rejected))

    def _one(
        self,
        chain: _Chain,
        message: Message,
        refused: _Refusal | None,
        decoded: _Decoded | None,
        head: ChainHead,
        counters: CounterState,
        unit: _Unit,
        stats: RunStats,
        pending: _Pending,
    ) -> tuple[ChainHead, CounterState]:
        """One record of a batch, in the chain's order: *refused* is what step (0) found
        (:meth:`_handoff_error`), *decoded* what step (1) gave (:meth:`_decode_or_error`; not
        run for a refused record). Its transfers join *pending* (step 2 runs over them in one
        :func:`~gateway._pipeline.prepare_transfers`); anything else the record adds to the
        unit (an entry, a rejection) first flushes what is pending, so the chain and the unit
        keep the records' order."""
        value = message.value() or b""
        # (0) a signed hand-off of the streams, or released to nobody
        if refused is not None:
            stats.untrusted += 1
            stats.blocked += 1
            head, counters = self._flush(pending, head, counters, unit, stats)
            return self._untrusted(message, refused, head, unit), counters
        # (1) decoded once (no model: see "Decode once, check once" above), adapted; route
        assert decoded is not None
        if isinstance(decoded, ContractError):
            head, counters = self._flush(pending, head, counters, unit, stats)
            unit.extra.append(self._rejection(message, decoded))
            unit.rejected.append(getattr(decoded, "reason", None) or decoded.code)
            stats.rejected += 1
            return head, counters
        record, category, product_id = decoded
        if record is None:
            stats.no_footprint += 1
            return head, counters
        routes = self.subscriptions.routes(product_id, category)
        if not routes:
            stats.unrouted += 1
            return head, counters
        record_hash = hashlib.sha256(value).hexdigest()
        source = HeldSource(chain.log_id, *coords(message), product_id)
        status, pf_id = record.get("status"), str(record.get("id"))
        for recipient, purpose in routes:
            retired = (recipient, pf_id)
            if status == "Active" and retired in pending.deprecated:
                # whether it was retired depends on a pending transfer: decide that one first
                head, counters = self._flush(pending, head, counters, unit, stats)
            if status == "Active" and (retired in chain.retired or retired in unit.retired):
                head, counters = self._flush(pending, head, counters, unit, stats)
                head = self._reactivated(message, head, unit, retired, purpose, record_hash)
                stats.blocked += 1
                stats.reactivated += 1
                continue
            # (2) the pure core, for all pending transfers at once (see _flush)
            request = TransferRequest(
                record,
                recipient,
                purpose,
                record_hash=record_hash,
                note=DEPRECATED_NOTE if status == "Deprecated" else None,
                api_key=self._api_key_for(recipient),
            )
            pending.add(request, source, retired if status == "Deprecated" else None)
        return head, counters

    def _flush(
        self,
        pending: _Pending,
        head: ChainHead,
        counters: CounterState,
        unit: _Unit,
        stats: RunStats,
    ) -> tuple[ChainHead, CounterState]:
        """Step (2) for the pending transfers, in order, in one batch of the pure core
        (:func:`~gateway._pipeline.prepare_transfers`, one clock reading for all of them); their
        entries, messages and events join the unit. Returns the chain head and counters after
        them (unchanged if nothing was pending)."""
        if not pending.requests:
            return head, counters
        at = len(unit.batch)  # (where the records these transfers add to the batch begin)
        done = prepare_transfers(
            self.policy,
            pending.requests,
            counters=counters,
            head=head,
            secrets=self.secrets,
            now=self.clock(),
            requested_by=self.settings.requested_by,
            batch=unit.batch,
        )
        for prepared, source, retired in zip(done, pending.sources, pending.retiring, strict=True):
            at += prepared.encrypted is not None
            self._collect(prepared, unit, source, stats, api_index=at)
            at += prepared.api_copy is not None
            if retired is not None and prepared.encrypted is not None:
                unit.retired.add(retired)
        pending.clear()
        return done[-1].head, done[-1].counters

    def _reactivated(
        self,
        message: Message,
        head: ChainHead,
        unit: _Unit,
        retired: tuple[str, str],
        purpose: str,
        record_hash: str,
    ) -> ChainHead:
        """Step (2) for an ``Active`` footprint its recipient was sent as ``Deprecated``: a
        ``transfer_blocked`` entry (``reactivated``), nothing sent."""
        recipient, pf_id = retired
        topic, partition, offset = coords(message)
        entry, head = reactivation_entry(
            head,
            pf_id=pf_id,
            recipient=recipient,
            purpose=purpose,
            record_sha256=record_hash,
            where=f"{topic}[{partition}]@{offset}",
            now=self.clock(),
        )
        unit.entries.append(entry)
        log.warning(
            "not sent to %s: footprint %s is Active again at %s[%d]@%d after its deprecation"
            " was sent (reactivated)",
            recipient,
            pf_id,
            topic,
            partition,
            offset,
        )
        return head

    def _decode(self, value: bytes) -> tuple[dict[str, Any] | None, str | None, str]:
        """(policy input record or ``None`` without a footprint, pilot category, product id) of
        a verified hand-off: the Avro datum read once with the writer's registered schema and
        adapted straight from it (:func:`~gateway.runtime._adapter.record_from_datum`).

        Raises :class:`SerdeError`/:class:`UnknownSchemaError` (framing, schema id, Avro) and
        :class:`SerdeError` for a record of another type, as ``AvroSerde.decode`` does.

        The generated reader (:class:`~gateway.runtime._rollup_reader.RollupReader`) gives the
        same result in one pass for the roll-ups it can read; for anything else (another schema,
        malformed bytes, ``pcfx.fieldLabels``) it gives ``None`` and the fastavro path below
        decides, raising what it always raised."""
        fast = self._rollups.read(value)
        if fast is not None:
            return fast
        model, datum = self._contracts.decode_datum(value)
        if model is not RolledUpFootprint:
            raise SerdeError(
                f"expected a RolledUpFootprint but the message holds a {model.__name__}"
            )
        record, category = record_from_datum(datum)
        return record, category, datum["productId"]

    def _decode_or_error(self, value: bytes) -> _Decoded:
        """:meth:`_decode`, or the :class:`ContractError` it raised (step 1 runs over a whole
        batch before step 2 turns its errors into rejections, in the chain's order)."""
        try:
            return self._decode(value)
        except ContractError as exc:
            return exc

    def _handoff_error(self, message: Message) -> _Refusal | None:
        """Why *message* is not a verified hand-off of the streams (error, claimed signer, key
        id), or ``None`` if it is (step 0)."""
        topic, partition, offset = coords(message)
        kind, stamp = message.timestamp()
        appended = (
            datetime.fromtimestamp(stamp / 1000, UTC)
            if kind != TIMESTAMP_NOT_AVAILABLE
            else self.clock()
        )
        check = check_handoff(
            self.keyring,
            message.key(),
            message.value() or b"",
            message.headers(),
            appended_at=appended,
            what=f"{topic}[{partition}]@{offset}",
        )
        if check.error is None:
            return None
        return check.error, check.signer, check.key_id

    def _untrusted(
        self, message: Message, refused: _Refusal, head: ChainHead, unit: _Unit
    ) -> ChainHead:
        """Step (0) for a record that did not verify (*refused*, from :meth:`_handoff_error`):
        its ``transfer_blocked`` entry and its rejection are added to *unit*; the new chain
        head is returned."""
        error, signer, key_id = refused
        value = message.value() or b""
        pf_id: str | None = None
        try:  # (only to name the record in the entry; nothing of it is trusted)
            rolled = self._contracts.decode(value, RolledUpFootprint)
            pf_id = str(rolled.footprint.id) if rolled.footprint is not None else None
        except PcfError:
            pass
        topic, partition, offset = coords(message)
        entry, head = untrusted_record_entry(
            head,
            error,
            where=f"{topic}[{partition}]@{offset}",
            record_sha256=hashlib.sha256(value).hexdigest(),
            pf_id=pf_id,
            signer=signer,
            key_id=key_id,
            now=self.clock(),
        )
        unit.entries.append(entry)
        unit.extra.append(self._rejection(message, error))
        unit.rejected.append(error.reason)
        log.warning("not released (%s): %s", error.reason, error.message)
        return head

    def _collect(
        self,
        prepared: PreparedTransfer,
        unit: _Unit,
        source: HeldSource,
        stats: RunStats,
        *,
        api_index: int | None = None,
    ) -> None:
        """Add one prepared transfer to *unit*. *api_index*: the position of its copy for the
        API in ``unit.batch`` (default: the batch's last record, as after one
        ``prepare_transfer``)."""
        unit.entries.extend(prepared.entries)
        stats.decisions += 1
        decided = (prepared.decision.outcome.value, prepared.decision.recipient_id)
        unit.transfers[decided] = unit.transfers.get(decided, 0) + 1
        if prepared.encrypted is not None:
            message = prepared.encrypted
            if source.product_id is not None:
                unit.keys[message.message_id] = pseudonym(
                    self.secrets.pseudonym_secret, message.recipient_id, source.product_id
                ).encode()
            stats.sent += 1
            if prepared.api_copy is not None:  # added to the batch right after `message`
                stats.api_released += 1
                pf_id = prepared.decision.record_ref.pf_id or message.message_id
                index = len(unit.batch) - 1 if api_index is None else api_index
                unit.api_releases[index] = f"{message.recipient_id}|{pf_id}".encode()
            delta = prepared.decision.counter_delta
            if delta is not None and not delta.empty:
                for metric, keys in delta.added.items():
                    unit.counters_added.extend((delta.year, metric, k) for k in sorted(keys))
        elif prepared.approval is not None:
            stats.held += 1
            unit.extra.append(
                self._event(
                    requested_event(
                        self._ttl(prepared.approval), source, at=format_time(self.clock())
                    )
                )
            )
        else:
            stats.blocked += 1

    def _api_key_for(self, recipient_id: str) -> X25519PublicKey | None:
        """The API service's key if *recipient_id*'s releases are delivered through the API."""
        if self.api_key is None:
            return None
        if self.api_recipients is not None and recipient_id not in self.api_recipients:
            return None
        return self.api_key

    def _split_api_copies(
        self, unit: _Unit, signed: Sequence[SealedMessage]
    ) -> tuple[Sequence[SealedMessage], list[Produced]]:
        """The signed batch as (outbound messages, records for ``pcf.api.releases``)."""
        if not unit.api_releases:
            return signed, []
        topic = self.topics.of(API_RELEASES)
        outbound: list[SealedMessage] = []
        copies: list[Produced] = []
        for index, message in enumerate(signed):
            key = unit.api_releases.get(index)
            if key is None:
                outbound.append(message)
            else:
                value = self.serde.encode(topic, "SealedMessage", sealed_to_datum(message))
                copies.append(Produced(topic, value, key))
        return outbound, copies

    def _ttl(self, approval: Approval) -> Approval:
        """The core opens approvals for 7 days; apply the configured time to live."""
        return replace(approval, expires_at=approval.requested_at + self.settings.approval_ttl)

    def _due_checkpoint(self, chain: _Chain, head: ChainHead, added: int) -> list[Checkpoint]:
        s = self.settings
        unsealed = chain.unsealed + added
        if unsealed == 0:
            return []
        since = chain.unsealed_since if chain.unsealed else time.monotonic()
        if unsealed >= s.checkpoint_every or time.monotonic() - since >= s.checkpoint_interval_s:
            return [
                make_checkpoint(
                    head, log_id=chain.log_id, signer=self.secrets.signer, issued_at=self.clock()
                )
            ]
        return []

    def _commit(
        self,
        chain: _Chain,
        unit: _Unit,
        checkpoints: Sequence[Checkpoint],
        *,
        offsets: Sequence[TopicPartition] = (),
        group: Any = None,
    ) -> bool:
        extra = list(unit.extra)
        for year, metric, individual in unit.counters_added:
            extra.append(self._counter_record(year, metric, individual, chain, unit))
        outbound, api_copies = self._split_api_copies(unit, unit.batch.sign())
        extra.extend(api_copies)
        try:
            # (4) one transaction
            chain.sink.commit(
                outbound,
                unit.entries,
                checkpoints,
                keys=unit.keys,
                extra=extra,
                offsets=offsets,
                group_metadata=group,
            )
        except CommitFailed as exc:
            self.stats.aborted += 1
            log.warning("%s; the records will be processed again", exc)
            if chain.sink.fenced:
                self._reopen(chain)
            time.sleep(self.settings.retry_backoff_s)
            return False
        return True

    def _adopt(
        self,
        chain: _Chain,
        head: ChainHead,
        counters: CounterState,
        unit: _Unit,
        checkpoints: Sequence[Checkpoint],
    ) -> None:
        # (5) state moves only after the commit
        chain.head = head
        chain.retired |= unit.retired
        self.counters = counters
        if checkpoints:
            chain.unsealed = 0
            self.stats.checkpoints += len(checkpoints)
        elif unit.entries:
            if chain.unsealed == 0:
                chain.unsealed_since = time.monotonic()
            chain.unsealed += len(unit.entries)
        self.stats.transactions += 1

    def _hold(self, tp: TopicPartition) -> None:
        """Pause a stopped partition where it is (nothing consumed, nothing committed)."""
        assert self._consumer is not None
        try:
            self._consumer.pause([TopicPartition(tp.topic, tp.partition)])
        except Exception as exc:
            log.warning("cannot pause %s[%d]: %s", tp.topic, tp.partition, exc)
        self._rewind(tp)

    def _rewind(self, tp: TopicPartition) -> None:
        assert self._consumer is not None
        try:
            self._consumer.seek(tp)
        except Exception as exc:
            log.warning("cannot rewind %s[%d]: %s", tp.topic, tp.partition, exc)

    def _add(self, stats: RunStats) -> None:
        for name, value in asdict(stats).items():
            if name != "seconds":
                setattr(self.stats, name, getattr(self.stats, name) + value)

    # ------------------------------------------------------------------------------------------
    # records besides outbound and audit

    def _event(self, datum: dict[str, Any]) -> Produced:
        topic = self.topics.approvals
        return Produced(
            topic, self.serde.encode(topic, "ApprovalEvent", datum), datum["approvalId"].encode()
        )

    def _counter_record(
        self, year: int, metric: CounterMetric, individual: str, chain: _Chain, unit: _Unit
    ) -> Produced:
        topic = self.topics.counters
        datum = {
            "year": year,
            "metric": metric.value,
            "individual": individual,
            "logId": chain.log_id,
            "entrySeq": unit.entries[-1].seq if unit.entries else chain.head.size,
        }
        key = f"{year}|{metric.value}|{individual}".encode()
        return Produced(topic, self.serde.encode(topic, "PiCounterEntry", datum), key)

    def _rejection(self, message: Message, error: PcfError) -> Produced:
        value = message.value() or b""
        rejection = Rejection.of(
            error,
            source_topic=coords(message)[0],
            partition=coords(message)[1],
            offset=coords(message)[2],
            original=value,
            rejected_at=self.clock(),
            key=message.key(),
            processor="pcfx-gateway",
        )
        return Produced(
            self.topics.rejected,
            self._contracts.encode(self.topics.rejected, rejection),
            message.key(),
        )

    def _ensure_contract_schema(self, topic: str, model: str) -> None:
        subject, text = subject_for(topic), schema_json(model)
        try:
            self.registry.lookup(subject, text)
        except UnknownSchemaError:
            if self._registrar is not None:
                self._registrar([(subject, text)])
            else:
                self.registry.register(subject, text)

    # ------------------------------------------------------------------------------------------
    # partitions come and go

    def _open_chain(self, partition: int) -> _Chain:
        s, t = self.settings, self.topics
        log_id = log_id_for(partition)
        sink = KafkaTransferSink(
            s.bootstrap,
            topics=t,
            serde=self.serde,
            log_id=log_id,
            transactional_id=f"pcfx-gateway.{s.group_id}.{t.products}.{partition}",
            audit_partition=partition % self._audit_parts,
            checkpoint_partition=partition % self._checkpoint_parts,
            timeout_s=s.transaction_timeout_s,
            fault=self.fault,
            overrides=s.producer_overrides,
            signer=self.secrets.signer,
        )
        # fence any older writer of this chain (its open transaction is finished first) ...
        sink.open()
        # ... then read the chain back: nothing can be appended behind our back any more
        try:
            head, unsealed, retired = self._recover(log_id, partition)
        except BaseException:
            sink.close()
            raise
        return _Chain(partition, log_id, sink, head, unsealed, time.monotonic(), retired)

    def _recover(self, log_id: str, partition: int) -> tuple[ChainHead, int, Retired]:
        """The chain head from ``pcf.audit``, resumed only from what this gateway signed.

        Reads the chain's entries (with their offsets) and its checkpoints, then
        ``resume_chain``: the newest own checkpoint must match the entries it covers, and the
        tail after it must chain on and end in an own batch seal. A record under the log's key
        that does not decode as an entry of this log is a bad entry too. Raises
        :class:`AuditResumeRefused` (only this partition stops); returns the head, the
        number of entries after the anchor checkpoint, and the footprints the chain sent as
        ``Deprecated`` (:func:`~gateway._pipeline.retired_by`).
        """
        t, b = self.topics, self.settings.bootstrap
        key = log_id.encode()
        entries: list[AuditEntry] = []
        offsets: list[int] = []
        checkpoint_records: list[Message] = []
        audit_tp = (t.audit, partition % self._audit_parts)
        checkpoints_tp = (t.checkpoints, partition % self._checkpoint_parts)
        # both partitions read by one short-lived consumer (each in its append order): one
        # consumer's start-up per chain taken over instead of two
        for message in read_to_end(b, [audit_tp, checkpoints_tp], timeout_s=300):
            if message.key() != key:
                continue
            if message.topic() == t.checkpoints:
                checkpoint_records.append(message)
                continue
            offset = coords(message)[2]
            try:
                owner, entry = entry_from_datum(
                    self.serde.decode(message.value() or b"", "AuditLogEntry")
                )
            except PcfError as exc:
                raise self._unreadable(
                    log_id, len(entries), offset, f"does not decode: {exc}"
                ) from exc
            if owner != log_id:
                raise self._unreadable(
                    log_id, len(entries), offset, f"holds an entry of log '{owner}'"
                )
            entries.append(entry)
            offsets.append(offset)
        checkpoints: list[Checkpoint] = []
        for message in checkpoint_records:
            try:
                checkpoints.append(
                    checkpoint_from_datum(
                        self.serde.decode(message.value() or b"", "AuditLogCheckpoint")
                    )
                )
            except PcfError as exc:  # not the gateway's: it cannot anchor anything
                log.warning(
                    "%s: checkpoint at %s offset %d ignored: %s",
                    log_id,
                    t.checkpoints,
                    coords(message)[2],
                    exc,
                )
        check = resume_chain(
            log_id, entries, checkpoints, self._own_keys, offsets=offsets, topic=t.audit
        )
        if check.ignored_checkpoints:
            log.warning(
                "%s: %d checkpoint(s) not signed by this gateway's keys ignored",
                log_id,
                check.ignored_checkpoints,
            )
        assert check.head is not None
        log.info(
            "chain %s resumed: %d entries, newest own checkpoint at %d, %d sealed after it",
            log_id,
            len(entries),
            check.anchor.tree_size if check.anchor is not None else 0,
            check.unsealed,
        )
        return check.head, check.unsealed, retired_by(entries)

    def _unreadable(self, log_id: str, index: int, offset: int, why: str) -> AuditResumeRefused:
        topic = self.topics.audit
        return AuditResumeRefused(
            ResumeCheck(
                log_id,
                index + 1,
                None,
                reason=RefusalReason.BAD_ENTRY,
                first_bad_entry=index,
                offset=offset,
                message=(
                    f"audit log {log_id}: refusing to resume (bad_entry): the record at {topic}"
                    f" offset {offset} under key '{log_id}' {why}; first bad entry: entry"
                    f" {index} ({topic} offset {offset}). The chain is not extended or sealed"
                ),
            )
        )

    def _stop(self, partition: int, error: AuditResumeRefused) -> None:
        self.stopped[partition] = error
        log.error("partition %d stopped: %s", partition, error.message)

    def _reopen(self, chain: _Chain) -> None:
        """After being fenced: a new writer (fencing back only if the group still gives us the
        partition), and the head read again."""
        chain.sink.close()
        try:
            fresh = self._open_chain(chain.partition)
        except AuditResumeRefused as exc:
            self._chains.pop(chain.partition, None)
            self._stop(chain.partition, exc)
            return
        chain.sink, chain.head, chain.unsealed = fresh.sink, fresh.head, fresh.unsealed
        chain.retired = fresh.retired

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._ready = False
        for tp in partitions:
            if tp.partition not in self._chains:
                self.stopped.pop(tp.partition, None)  # assigned again: look at the chain again
                try:
                    self._chains[tp.partition] = self._open_chain(tp.partition)
                except AuditResumeRefused as exc:  # this partition only; the others go on
                    self._stop(tp.partition, exc)
        # approvals resolved by the previous owner are visible now (its transaction is done)
        self._catch_up()
        self._assigned = True

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._ready = False
        for tp in partitions:
            chain = self._chains.pop(tp.partition, None)
            if chain is None:
                continue
            if chain.unsealed and not chain.sink.fenced:
                self._seal(chain)
            chain.sink.close()

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._ready = False
        for tp in partitions:
            chain = self._chains.pop(tp.partition, None)
            if chain is not None:
                chain.sink.close()

    def _seal(self, chain: _Chain) -> bool:
        cp = make_checkpoint(
            chain.head, log_id=chain.log_id, signer=self.secrets.signer, issued_at=self.clock()
        )
        try:
            chain.sink.commit([], [], [cp])
        except CommitFailed as exc:
            log.warning("could not seal %s: %s", chain.log_id, exc)
            return False
        chain.unsealed = 0
        self.stats.checkpoints += 1
        return True

    def _seal_idle(self) -> None:
        interval = self.settings.checkpoint_interval_s
        for chain in list(self._chains.values()):
            if chain.unsealed and time.monotonic() - chain.unsealed_since >= interval:
                self._seal(chain)

    # ------------------------------------------------------------------------------------------
    # shared state: approvals and PI counters

    def _apply_tail(self, message: Message) -> None:
        topic, value = message.topic(), message.value() or b""
        try:
            if topic == self.topics.keys:
                update = self.keyring.apply(self._contracts.decode(value, SignedSupplierKey))
                if update.outcome is KeyringOutcome.REJECTED and update.error is not None:
                    log.warning("%s: key registration refused: %s", topic, update.error.message)
            elif topic == self.topics.approvals:
                kind, stamp = message.timestamp()
                self.book.apply(
                    self.serde.decode(value, "ApprovalEvent"),
                    offset=message.offset(),
                    appended_at=(
                        datetime.fromtimestamp(stamp / 1000, UTC)
                        if kind != TIMESTAMP_NOT_AVAILABLE
                        else None
                    ),
                )
                METRICS.approvals_pending.labels(SERVICE).set(self.book.pending)
            else:
                datum = self.serde.decode(value, "PiCounterEntry")
                year, metric = int(datum["year"]), CounterMetric(datum["metric"])
                if year == self.counters.year or year > self.counters.year:
                    delta = CounterDelta(
                        year=year, added={metric: frozenset({datum["individual"]})}
                    )
                    self.counters = self.counters.apply(delta)
        except (PcfError, ValueError, KeyError) as exc:
            log.warning(
                "%s[%d]@%d unreadable: %s", topic, message.partition(), message.offset(), exc
            )

    def _catch_up(self) -> None:
        """Read the key registry, then approvals and counters, to their current end (the keys
        first: the records and decisions judged next are judged with every key known now)."""
        keys = [tp for tp in self._positions if tp[0] == self.topics.keys]
        rest = [tp for tp in self._positions if tp[0] != self.topics.keys]
        for parts in (keys, rest):
            for message in read_to_end(self.settings.bootstrap, parts, start=self._positions):
                topic, partition, offset = coords(message)
                if offset >= self._positions.get((topic, partition), 0):
                    self._apply_tail(message)
                    self._positions[(topic, partition)] = offset + 1

    def _follow(self) -> None:
        if self._tail is None:
            return
        for message in self._tail.consume(num_messages=1000, timeout=0):
            if message.error() is not None:
                continue
            topic, partition, offset = coords(message)
            if offset >= self._positions.get((topic, partition), 0):
                self._apply_tail(message)
                self._positions[(topic, partition)] = offset + 1

    def _approvals_step(self) -> bool:
        owned = {c.log_id: c for c in self._chains.values()}
        if not owned or not self.book.has_open:
            return False
        acted = False
        for row, approval, refusals in self.book.actionable(owned, self.clock(), self._judge):
            chain = owned[row.source.log_id]
            if refusals:
                if not self._refuse(chain, row, refusals):
                    continue
                acted = True
            if approval is not None:
                acted = self._resolve(chain, row, approval) or acted
        return acted

    def _judge(self, row: ApprovalRow, candidate: Candidate) -> Approval | TrustError:
        """A decision counts only if a registered officer's key signed it for this request."""
        check = check_decision(
            self.keyring,
            row.approval,
            candidate.verdict,
            at=candidate.at,
            appended_at=candidate.appended_at or self.clock(),
            what=f"decision at {self.topics.approvals}@{candidate.offset}",
        )
        if check.approval is not None:
            return check.approval
        assert check.error is not None
        return check.error

    def _refuse(self, chain: _Chain, row: ApprovalRow, refusals: Sequence[Refusal]) -> bool:
        """Audit each refused decision and mark it ``refused`` on the topic, in one transaction;
        the approval stays open (the transfer stays held)."""
        now = self.clock()
        unit = _Unit(OutboundBatch(self.secrets.signer))
        head = chain.head
        events = []
        for refusal in refusals:
            candidate, error = refusal.candidate, refusal.error
            verdict = candidate.verdict
            signer, key_id = verdict.get("signerId"), verdict.get("keyId")
            entry, head = refused_decision_entry(
                head,
                row.approval,
                error,
                where=f"{self.topics.approvals}@{candidate.offset}",
                signer=signer if isinstance(signer, str) else None,
                key_id=key_id if isinstance(key_id, str) else None,
                now=now,
            )
            unit.entries.append(entry)
            event = refused_event(
                row.approval.approval_id,
                log_id=chain.log_id,
                entry_seq=entry.seq,
                at=format_time(now),
                decision_offset=candidate.offset,
                detail=f"{error.reason}: {error.message}",
            )
            events.append(event)
            unit.extra.append(self._event(event))
            log.warning("approval decision refused (%s): %s", error.reason, error.message)
        checkpoints = self._due_checkpoint(chain, head, len(unit.entries))
        if not self._commit(chain, unit, checkpoints):
            return False
        self._adopt(chain, head, self.counters, unit, checkpoints)
        for event in events:
            self.book.apply(event)
        self._add(RunStats(approvals_refused=len(refusals)))
        return True

    def _resolve(self, chain: _Chain, row: ApprovalRow, approval: Approval) -> bool:
        """The approval's entry, then (approved) the released transfer, and ``resolved``."""
        now = self.clock()
        unit = _Unit(OutboundBatch(self.secrets.signer))
        stats = RunStats()
        entry, head = prepare_approval_event(approval, head=chain.head, now=now)
        unit.entries.append(entry)
        counters = self.counters
        outcome, detail, message_id = approval.state.value, approval.reason, None
        if approval.state is ApprovalState.APPROVED:
            head, counters, outcome, detail, message_id = self._release(
                row, approval, head, counters, unit, stats, now
            )
        resolution = resolved_event(
            approval.approval_id,
            outcome=outcome,
            log_id=chain.log_id,
            entry_seq=unit.entries[-1].seq,
            at=format_time(now),
            message_id=message_id,
            detail=detail,
        )
        unit.extra.append(self._event(resolution))
        checkpoints = self._due_checkpoint(chain, head, len(unit.entries))
        if not self._commit(chain, unit, checkpoints):
            return False
        self._adopt(chain, head, counters, unit, checkpoints)
        self.book.apply(resolution)
        unit.transfers[(f"approval_{outcome}", approval.recipient_id)] = 1
        self._count(unit)
        METRICS.approvals_pending.labels(SERVICE).set(self.book.pending)
        name = {
            "released": "approvals_released",
            "blocked": "approvals_blocked",
            "denied": "approvals_denied",
        }.get(outcome, "approvals_expired")
        setattr(stats, name, 1)
        self._add(stats)
        return True

    def _release(
        self,
        row: ApprovalRow,
        approval: Approval,
        head: ChainHead,
        counters: CounterState,
        unit: _Unit,
        stats: RunStats,
        now: datetime,
    ) -> tuple[ChainHead, CounterState, str, str | None, str | None]:
        source = row.source
        message = fetch_one(self.settings.bootstrap, source.topic, source.partition, source.offset)
        if message is None:
            return head, counters, "blocked", "the held record is no longer on its topic", None
        value = message.value() or b""
        untrusted = self._handoff_error(message)
        if untrusted is not None:
            error = untrusted[0]
            return head, counters, "blocked", f"the held record is not trusted: {error}", None
        try:
            rolled = self._contracts.decode(value, RolledUpFootprint)
            record = gateway_record(rolled)
        except ContractError as exc:
            return head, counters, "blocked", f"the held record no longer decodes: {exc}", None
        prepared = prepare_transfer(
            self.policy,
            record,
            recipient=approval.recipient_id,
            purpose=approval.purpose,
            counters=counters,
            head=head,
            secrets=self.secrets,
            now=now,
            approval=approval,
            requested_by=self.settings.requested_by,
            record_hash=hashlib.sha256(value).hexdigest(),
            batch=unit.batch,
            api_key=self._api_key_for(approval.recipient_id),
        )
        self._collect(prepared, unit, source, stats)
        if prepared.encrypted is None:
            reasons = "; ".join(str(r) for r in prepared.decision.reasons[:3])
            return prepared.head, counters, "blocked", reasons or "blocked by policy", None
        return (
            prepared.head,
            prepared.counters,
            "released",
            approval.reason,
            prepared.encrypted.message_id,
        )
