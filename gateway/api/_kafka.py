"""The API on Kafka: what it serves comes from the gateway's releases, and what it serves is
audited (ARCHITECTURE decision 13: nothing leaves except through the gateway).

**Reading releases.** :class:`KafkaReleaseSource` is the :class:`~gateway.api._source.
FootprintSource` of ``pcfx api serve``. A background thread reads ``pcf.api.releases`` (every
partition, from the start, ``read_committed``: a release whose transaction with its audit entry
aborted is never seen) and keeps reading. Each record is a :class:`~gateway._sealing.
SealedMessage` the gateway encrypted to the API service's key in the same transaction as the
audit entry of the decision that released it (:mod:`gateway.runtime._runner`). For each:

1. the key must be ``<recipient id>|<footprint id>``;
2. :func:`~gateway._sealing.open_message` with the API's private key, for the recipient the key
   names: the header must name that recipient, it must decrypt, and the batch signature must be
   the gateway's (a trusted public key) over exactly this plaintext;
3. the signed envelope's footprint must carry the footprint id of the key.

A record that fails any step is served to nobody; it is logged with its place and reason and
counted in :attr:`KafkaReleaseSource.refused` (it stays on the topic, nothing is lost). A record
that cannot be decoded because the schema registry does not answer (an
:class:`~contracts.errors.InfrastructureError`, e.g. an HTTP registry given with
``--registry-url`` that is down) is not at fault and is not refused: the reader waits and tries
the same record again, with growing pauses, so no later release is served before it. A record
that passes replaces what that recipient had under that footprint id: a later release of the
same footprint (``Deprecated`` after a new revision) changes its status without a restart.
:meth:`KafkaReleaseSource.wait_ready` returns once the topic was read to its end at start-up,
so the API does not answer "nothing released" while it is still catching up.

**Auditing disclosures.** :class:`KafkaDisclosureRecorder` is the API's own audit chain on
``pcf.audit`` (log id ``--audit-log``, default ``pcfx-api``), written exactly as the gateway
writes its chains: one transactional writer (:class:`~gateway.runtime._sink.KafkaTransferSink`,
which fences an older instance of the same log), entries hash-chained with
:func:`~gateway.audit.chain_new_entry`, the last entry of every commit sealed with the API's
Ed25519 key, a signed checkpoint with the first commit and then every ``checkpoint_every``
entries (and on close), and the chain resumed at
start-up only from what that key sealed (:func:`~gateway.audit.resume_chain`). Each footprint
in a response is one ``disclosure`` entry (recipient, footprint id, SHA-256 of the canonical JSON
served, the PACT action as ``purpose``, the client and request ids as ``reasons``). Disclosures
arriving together are committed in one transaction (group commit). ``record`` returns only once
the transaction committed; if it fails or takes longer than ``timeout_s``, it raises and the app
answers 503 with nothing disclosed. ``pcfx audit verify`` checks this chain like the gateway's.
When the cluster is unreachable for longer than the timeout, the writer can neither commit nor
abort and counts itself fenced; the next batch opens a new writer and reads the head again
(``_reopen``, as the gateway's runner does), so the API answers 503 during an outage and serves
again after it without a restart (``tests/reliability``: 30 s of every node SIGSTOPped).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from pcf_exchange.contracts import SchemaRegistry
from pcf_exchange.contracts.errors import BrokerError, InfrastructureError, PcfError, TrustError
from pcf_exchange.contracts.topics import TOPICS, ensure_topics
from pcf_exchange.gateway._codec import sealed_from_datum
from pcf_exchange.gateway._errors import CommitFailed
from pcf_exchange.gateway._sealing import GatewayKey, KeyRing, open_message
from pcf_exchange.gateway._topics import Topics
from pcf_exchange.gateway.api._disclosure import DEFAULT_AUDIT_LOG, Disclosure
from pcf_exchange.gateway.api._query import Footprint, FootprintQuery, SortKey
from pcf_exchange.gateway.api._source import InMemoryFootprintSource, Page
from pcf_exchange.gateway.audit import (
    AuditEntry,
    ChainHead,
    EntryKind,
    chain_new_entry,
    format_time,
    make_checkpoint,
    resume_chain,
)
from pcf_exchange.gateway.runtime._avro import GatewaySerde
from pcf_exchange.gateway.runtime._kafka import consumer_config, partition_count
from pcf_exchange.gateway.runtime._sink import KafkaTransferSink, read_audit_logs

__all__ = [
    "API_RELEASES",
    "DEFAULT_AUDIT_LOG",
    "KafkaDisclosureRecorder",
    "KafkaReleaseSource",
    "Refused",
]

log = logging.getLogger("gateway.api")

API_RELEASES: Final = "pcf.api.releases"
_MAX_REFUSED_KEPT: Final = 1000
_OUTAGE_PAUSES_S: Final = (0.2, 0.5, 1.0, 2.0, 5.0)
"""Pauses before each new attempt at a record while the schema registry does not answer (the
last one repeats)."""


@dataclass(frozen=True, slots=True)
class Refused:
    """A release record the API did not serve, and why."""

    where: str
    """``topic[partition]@offset``."""
    reason: str
    message: str


class KafkaReleaseSource:
    """The footprints the gateway released for the API, read continuously from Kafka.

    ``start()`` launches the reader thread; ``wait_ready()`` blocks until the topic was read to
    its end once; ``close()`` stops it. *gateway_keys* are the gateway's Ed25519 public keys
    (the current one and any earlier one after a rotation).
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        topics: Topics,
        registry: SchemaRegistry,
        private_key: X25519PrivateKey,
        gateway_keys: Sequence[Ed25519PublicKey],
        poll_timeout_s: float = 0.2,
    ) -> None:
        if not gateway_keys:
            raise TrustError(
                "at least one gateway public key is needed to verify releases", reason="no_key"
            )
        self.bootstrap = bootstrap
        self.topic = topics.of(API_RELEASES)
        self._serde = GatewaySerde(registry)
        self._private_key = private_key
        self._trusted = KeyRing.of(*gateway_keys)
        self._poll = poll_timeout_s
        self._view = InMemoryFootprintSource()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.served = 0
        """Release records accepted so far."""
        self.refused: list[Refused] = []
        """The latest refused records (at most 1000 kept; all are logged)."""

    # -- FootprintSource ------------------------------------------------------------------------

    async def list_for(self, recipient_id: str, query: FootprintQuery) -> Sequence[Footprint]:
        return await self._view.list_for(recipient_id, query)

    async def page_for(
        self, recipient_id: str, query: FootprintQuery, after: SortKey | None, size: int
    ) -> Page:
        return await self._view.page_for(recipient_id, query, after, size)

    async def get_for(self, recipient_id: str, pf_id: str) -> Footprint | None:
        return await self._view.get_for(recipient_id, pf_id)

    def recipients(self) -> list[str]:
        return self._view.recipients()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> KafkaReleaseSource:
        """Create the topic if it is missing (checked against the table), start reading."""
        ensure_topics(self.bootstrap, [(self.topic, TOPICS[API_RELEASES], 1)])
        self._thread = threading.Thread(target=self._run, name="pcfx-api-releases", daemon=True)
        self._thread.start()
        return self

    def ready(self) -> bool:
        """Whether the releases present at start-up are read and the reader is still running
        (the API's ``/readyz``)."""
        return self._ready.is_set() and self._error is None

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Block until the releases present at start-up are read (:class:`BrokerError` if not)."""
        if not self._ready.wait(timeout_s):
            raise BrokerError(f"could not read {self.topic} to its end within {timeout_s:.0f} s")
        if self._error is not None:
            raise BrokerError(f"reading {self.topic} failed: {self._error}") from self._error

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
            self._thread = None

    def __enter__(self) -> KafkaReleaseSource:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the reader thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._follow()
        except BaseException as exc:  # reported by wait_ready, logged for a running server
            self._error = exc
            log.error("the release reader of %s stopped: %s", self.topic, exc)
            self._ready.set()

    def _follow(self) -> None:
        consumer = Consumer(
            consumer_config(
                self.bootstrap,
                **{
                    "enable.partition.eof": True,
                    "fetch.wait.max.ms": 100,
                    "client.id": "pcfx-api-releases",
                },
            )
        )
        try:
            parts = max(1, partition_count(self.bootstrap, self.topic))
            consumer.assign([TopicPartition(self.topic, p, -2) for p in range(parts)])
            waiting = set(range(parts))
            while not self._stop.is_set():
                for message in consumer.consume(num_messages=500, timeout=self._poll):
                    error = message.error()
                    if error is None:
                        self._deliver(message.key(), message.value(), where=_where(message))
                    elif error.code() == KafkaError._PARTITION_EOF:
                        waiting.discard(message.partition() or 0)
                    else:
                        log.warning("reading %s: %s", self.topic, error.str())
                if not waiting:
                    self._ready.set()
        except KafkaException as exc:
            raise BrokerError(f"reading {self.topic}: {exc}") from exc
        finally:
            consumer.close()

    def _deliver(self, key: bytes | None, value: bytes | None, *, where: str) -> None:
        """:meth:`apply`, tried again after a pause while the schema registry does not answer
        (until it does, or the reader is stopped)."""
        attempt = 0
        while True:
            try:
                self.apply(key, value, where=where)
                return
            except InfrastructureError as exc:
                pause = _OUTAGE_PAUSES_S[min(attempt, len(_OUTAGE_PAUSES_S) - 1)]
                attempt += 1
                log.warning(
                    "release %s waits (attempt %d): %s; trying again in %.1f s",
                    where,
                    attempt,
                    exc.message,
                    pause,
                )
                if self._stop.wait(pause):
                    return

    def apply(self, key: bytes | None, value: bytes | None, *, where: str) -> bool:
        """Steps 1-3 of the module docstring for one record; ``True`` if it is now served,
        ``False`` if it is refused. Raises :class:`~contracts.errors.InfrastructureError` when
        the schema registry does not answer (the record is not at fault)."""
        try:
            recipient_id, pf_id, footprint = self._open(key, value or b"")
        except InfrastructureError:
            raise
        except PcfError as exc:
            reason = getattr(exc, "reason", None) or exc.code
            refused = Refused(where, str(reason), exc.message)
            if len(self.refused) >= _MAX_REFUSED_KEPT:
                del self.refused[0]
            self.refused.append(refused)
            log.warning("release %s not served (%s): %s", where, reason, exc.message)
            return False
        self._view.release(recipient_id, footprint)
        self.served += 1
        log.debug("release %s: %s for %s", where, pf_id, recipient_id)
        return True

    def _open(self, key: bytes | None, value: bytes) -> tuple[str, str, Footprint]:
        # (1) the key names the recipient and the footprint
        text = (key or b"").decode("utf-8", "replace")
        recipient_id, sep, pf_id = text.partition("|")
        if not sep or not recipient_id or not pf_id:
            raise TrustError(
                f"key must be '<recipient id>|<footprint id>' (got {text[:80]!r})",
                reason="malformed",
            )
        # (2) the gateway's signature, decrypted with the API's key, for that recipient
        message = sealed_from_datum(self._serde.decode(value, "SealedMessage"))
        opened = open_message(
            message,
            recipient_id=recipient_id,
            private_key=self._private_key,
            trusted=self._trusted,
        )
        # (3) the signed footprint is the one the key names
        footprint = opened.footprint
        if str(footprint.get("id", "")).lower() != pf_id.lower():
            raise TrustError(
                f"the signed footprint has id {footprint.get('id')!r}, the key names {pf_id!r}",
                reason="envelope_mismatch",
            )
        return recipient_id, pf_id, dict(footprint)


def _where(message: Message) -> str:
    return f"{message.topic()}[{message.partition()}]@{message.offset()}"


# ----------------------------------------------------------------------------------------------
# disclosures


@dataclass
class _Pending:
    disclosure: Disclosure
    digests: tuple[str, ...]
    done: concurrent.futures.Future[None]


class KafkaDisclosureRecorder:
    """The API's audit chain on ``pcf.audit``: one ``disclosure`` entry per footprint served,
    committed before the response is sent (see the module docstring)."""

    def __init__(
        self,
        bootstrap: str,
        *,
        topics: Topics,
        registry: SchemaRegistry,
        signer: GatewayKey,
        log_id: str = DEFAULT_AUDIT_LOG,
        trusted_keys: Sequence[Ed25519PublicKey] = (),
        checkpoint_every: int = 1000,
        timeout_s: float = 10.0,
        max_batch: int = 500,
        registrar: Any = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.log_id = log_id
        self.signer = signer
        self.timeout_s = timeout_s
        self.checkpoint_every = checkpoint_every
        self.max_batch = max_batch
        self._serde = GatewaySerde(registry, registrar=registrar)
        self._keys = KeyRing.of(signer.public_key, *trusted_keys)
        self._sink_args: dict[str, Any] = {
            "topics": topics,
            "serde": self._serde,
            "log_id": log_id,
            "transactional_id": f"pcfx-api.{topics.prefix}{log_id}",
            "timeout_s": timeout_s,
            "signer": signer,
            "overrides": {"client.id": f"pcfx-api-{log_id}", **dict(overrides or {})},
        }
        self._sink = KafkaTransferSink(bootstrap, **self._sink_args)
        self.head: ChainHead | None = None
        self._unsealed = 0
        self._anchored = False
        """Whether the chain has a checkpoint (the first commit writes one, so a verifier never
        finds entries without any)."""
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.recorded = 0
        """Entries committed so far."""
        self._reopening = False
        """A reopen of the writer did not finish (the cluster still unreachable): try again."""

    def start(self) -> KafkaDisclosureRecorder:
        """Fence an older writer of this chain, read the chain back (resumed only from what this
        key sealed), then start the committer thread."""
        t = self.topics
        ensure_topics(
            self.bootstrap,
            [
                (t.audit, TOPICS["pcf.audit"], 1),
                (t.checkpoints, TOPICS["pcf.audit.checkpoints"], 1),
            ],
        )
        self._serde.ensure([(t.audit, "AuditLogEntry"), (t.checkpoints, "AuditLogCheckpoint")])
        self._sink.open()
        self._resume()
        self._thread = threading.Thread(target=self._run, name="pcfx-api-audit", daemon=True)
        self._thread.start()
        return self

    def _resume(self) -> None:
        """Read the chain back and take its head (resumed only from what this key sealed)."""
        t = self.topics
        offsets: dict[str, list[int]] = {}
        entries, checkpoints, problems = read_audit_logs(
            self.bootstrap, t, self._serde, log_ids=[self.log_id], offsets=offsets
        )
        if problems:
            log.warning("audit records not readable (not of this chain's writer): %s", problems)
        check = resume_chain(
            self.log_id,
            entries.get(self.log_id, []),
            checkpoints.get(self.log_id, []),
            self._keys,
            offsets=offsets.get(self.log_id),
            topic=t.audit,
        )
        self.head = check.head
        self._unsealed = check.unsealed
        self._anchored = check.anchor is not None

    def _reopen(self) -> None:
        """A new writer after the old one became unusable, as the gateway's runner does
        (``GatewayRunner._reopen``): a transaction that could neither commit nor abort (the
        cluster unreachable for longer than the timeout) leaves the sink counting itself
        fenced, and without this the API would answer 503 until restarted. The new writer's
        ``init_transactions`` finishes or aborts what the old one left open, and the head is
        read again (a commit that timed out here may still have committed on the broker).
        Raises (each request of the batch then answers 503) while the cluster is unreachable;
        the next batch tries again, until a new writer is open and the head read back."""
        self._reopening = True  # until the new writer is open and the head read back
        self._sink.close()
        self._sink = KafkaTransferSink(self.bootstrap, **self._sink_args)
        self._sink.open()
        self._resume()
        self._reopening = False
        log.warning("disclosure log %s: writer reopened, head at %s", self.log_id, self.head)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(self.timeout_s + 5)
            self._thread = None
        self._sink.close()

    def __enter__(self) -> KafkaDisclosureRecorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def record(self, disclosure: Disclosure) -> None:
        """Commit one entry per footprint of *disclosure*; raise if that did not happen."""
        if self._thread is None:
            raise CommitFailed("the disclosure log is not running")
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._queue.put(_Pending(disclosure, disclosure.digests, done))
        try:
            await asyncio.wait_for(asyncio.wrap_future(done), self.timeout_s)
        except TimeoutError:
            raise CommitFailed(
                f"the disclosure was not committed within {self.timeout_s:.0f} s"
            ) from None

    # -- the committer thread -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                self._seal_on_close()
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # finish this batch, then stop
                    break
                batch.append(more)
            self._commit(batch)

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            if self._sink.fenced or self._reopening:
                self._reopen()
            head = self.head
            assert head is not None
            entries: list[AuditEntry] = []
            now = format_time(datetime.now(UTC))
            for pending in batch:
                made, head = _entries(head, pending, now)
                entries.extend(made)
            checkpoints = []
            if not self._anchored or self._unsealed + len(entries) >= self.checkpoint_every:
                checkpoints.append(
                    make_checkpoint(
                        head, log_id=self.log_id, signer=self.signer, issued_at=datetime.now(UTC)
                    )
                )
            self._sink.commit([], entries, checkpoints)
        except Exception as exc:  # nothing of the batch is disclosed: each caller answers 503
            log.error("disclosure entries of %s not committed: %s", self.log_id, exc)
            for pending in batch:
                if not pending.done.done():
                    pending.done.set_exception(
                        exc if isinstance(exc, PcfError) else CommitFailed(str(exc))
                    )
            return
        self.head = head
        self._unsealed = 0 if checkpoints else self._unsealed + len(entries)
        self._anchored = self._anchored or bool(checkpoints)
        self.recorded += len(entries)
        for pending in batch:
            if not pending.done.done():
                pending.done.set_result(None)

    def _seal_on_close(self) -> None:
        if self.head is None or self._unsealed == 0:
            return
        checkpoint = make_checkpoint(
            self.head, log_id=self.log_id, signer=self.signer, issued_at=datetime.now(UTC)
        )
        try:
            self._sink.commit([], [], [checkpoint])
            self._unsealed = 0
        except Exception as exc:  # the entries are sealed by their batch seal already
            log.warning("closing checkpoint of %s not committed: %s", self.log_id, exc)


def _entries(
    head: ChainHead, pending: _Pending, recorded_at: str
) -> tuple[list[AuditEntry], ChainHead]:
    d = pending.disclosure
    reasons = (f"client={d.client_id}",) + ((f"request={d.request_id}",) if d.request_id else ())
    response = str(uuid.uuid4())  # groups the entries of one response
    made: list[AuditEntry] = []
    digests = pending.digests if len(pending.digests) == len(d.pf_ids) else ("",) * len(d.pf_ids)
    for pf_id, digest in zip(d.pf_ids, digests, strict=True):
        entry, head = chain_new_entry(
            head,
            {
                "kind": EntryKind.DISCLOSURE.value,
                "recorded_at": recorded_at,
                "decision_id": response,
                "record_pf_id": pf_id,
                "record_sha256": digest or None,
                "recipient_id": d.recipient_id,
                "purpose": d.action,
                "outcome": "disclosed",
                "reasons": reasons,
            },
        )
        made.append(entry)
    return made, head
