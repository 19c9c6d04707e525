"""Every topic of the exchange in one table: name, key, value, configs, and who may use it.

=========================  ==========================  ====================================  ====
topic                      key                         value (Confluent-framed Avro)          time
=========================  ==========================  ====================================  ====
``pcf.declared``           product id                  ``SignedFootprint``                    LAT
``pcf.bom``                product id                  ``SignedBillOfMaterials``              LAT
``pcf.factors``            factor id                   ``SignedEmissionFactor``               LAT
``pcf.keys``               ``owner/keyId``             ``SignedSupplierKey``                  LAT
``pcf.rollup``             (packs per partition)       streams codec JSON (internal)
``pcf.products``           product id                  ``RolledUpFootprint``                  LAT
``pcf.rejected``           the input's key             ``Rejection``
``pcf.approvals``          approval id                 ``gateway.ApprovalEvent``              LAT
``pcf.audit``              log id                      ``gateway.AuditLogEntry``
``pcf.audit.checkpoints``  log id                      ``gateway.AuditLogCheckpoint``
``pcf.gateway.counters``   ``year|metric|individual``  ``gateway.PiCounterEntry``
``pcf.outbound.<id>``      pseudonym of the product    ``gateway.SealedMessage``
``<app>-<table>-changelog``  the table's key            streams codec JSON (compacted)
``pcf._schemas``           subject/version             the schema registry's own records
``pcf.review``             the held record's subject   ``pcr.ReviewEvent`` (held)             LAT
``pcf.review.decisions``   the held record's subject   ``pcr.ReviewEvent`` (decided)          LAT
``pcf.bodies``             body id                     ``certification.SignedStatement``      LAT
``pcf.certificates``       certificate id              ``certification.SignedStatement``      LAT
``pcf.api.releases``       ``recipient|footprint id``  ``gateway.SealedMessage`` (compacted)
=========================  ==========================  ====================================  ====

(LAT: created with ``message.timestamp.type=LogAppendTime``: a record's timestamp is the time
the broker appended it, never one its producer chose; the validity of the key that signed it —
a supplier's, the streams' service key, an officer's — is judged on it.) Every
deployment may put a prefix before every name (``PCFX_TOPIC_PREFIX``; tests use a fresh one),
the schemas topic's included: ``<prefix>pcf._schemas`` holds that deployment's schemas and ids,
and its one transactional writer is ``pcfx-schema-writer:<prefix>pcf._schemas``, so two
deployments (or two test runs) on one cluster never fence each other's writer nor read each
other's registrations. Only a streams table's changelog is named by faust (after the app id,
which the deployment prefixes itself).

What a topic must be is checked where it is used: :func:`ensure_topics` creates the missing ones
with their configs and then refuses to go on (an :class:`~contracts.errors.InfrastructureError`
naming the topic, the config, what it must be and what it is, with the command that fixes it)
when an existing one differs in a config the table fixes, such as the audit log's infinite
retention or the input topics' broker clock. ``access`` says which role may read (R), write (W)
or create (C) the topic: the broker's ACLs are made from it (``pcfx tenants``).

Replication is the same for every row and depends on the cluster, so it is decided when a topic
is created, from the brokers the cluster lists then (:func:`replication_for`): ``min(3,
brokers)`` replicas, with ``min.insync.replicas=2`` when that is 3 (one broker of three may be
lost without losing an acknowledged ``acks=all`` write or refusing new ones). A single test
broker gets 1.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from pcf_exchange.contracts.errors import InfrastructureError
from pcf_exchange.contracts.kafka_client import librdkafka_config

__all__ = [
    "APPEND_TIME",
    "CHANGELOG",
    "FOREVER",
    "ROLES",
    "SCHEMAS",
    "TOPICS",
    "Replication",
    "Topic",
    "TopicNames",
    "ensure_topics",
    "replication_for",
    "topic_problems",
]

APPEND_TIME: Final[Mapping[str, str]] = MappingProxyType(
    {"message.timestamp.type": "LogAppendTime"}
)
"""The broker's clock: a record's timestamp is when the broker appended it."""
FOREVER: Final[Mapping[str, str]] = MappingProxyType(
    {"retention.ms": "-1", "retention.bytes": "-1"}
)
"""Kept for ever: evidence (audit, approvals) and the registrations everything else trusts."""
COMPACTED: Final[Mapping[str, str]] = MappingProxyType({"cleanup.policy": "compact"})

ROLES: Final = (
    "supplier",
    "manufacturer",
    "recipient",
    "streams",
    "gateway",
    "api",
    "operator",
    "officer",
    "certifier",
)
"""Who uses the exchange's Kafka (one principal each, ``pcfx tenants``); a ``certifier`` is a
certification body (it writes its certificates and revocations)."""


@dataclass(frozen=True)
class Topic:
    """One row of the table."""

    name: str
    """Without the deployment prefix; a *family* (``pcf.outbound.``) ends with its separator."""
    key: str
    value: str
    """Full Avro name of the value record (``io.pcfexchange.…``), or what else it holds."""
    doc: str
    configs: Mapping[str, str] = field(default_factory=dict)
    """Set at creation and checked at start-up (:func:`ensure_topics`)."""
    access: Mapping[str, str] = field(default_factory=dict)
    """role -> the operations it is granted: ``R`` read, ``W`` write, ``C`` create, ``D``
    describe the configs (to check them at start-up); :mod:`contracts.acl` makes ACLs of it."""
    prefixed: bool = True
    """False for a name the table does not make (faust names a changelog after the app id)."""

    @property
    def family(self) -> bool:
        return self.name.endswith(".")

    def full_name(self, prefix: str = "", member: str = "") -> str:
        """The topic's name in a deployment (*prefix*), for a *member* of a family."""
        if self.family != bool(member):
            raise ValueError(
                f"topic {self.name!r} {'needs' if self.family else 'takes no'} member name"
            )
        return f"{prefix if self.prefixed else ''}{self.name}{member}"


_ALL_READ: Final = dict.fromkeys(ROLES, "R")
_DOMESTIC_READ: Final = {role: "R" for role in ROLES if role != "recipient"}
"""Everyone but a recipient abroad: what names companies' products and figures leaves the
country only through the gateway (decision 13)."""

_TABLE: Final = (
    Topic(
        "pcf.declared", "product id", "io.pcfexchange.SignedFootprint",
        "suppliers' signed component footprints",
        APPEND_TIME, {"supplier": "W", "manufacturer": "W", "streams": "RD", "operator": "CD"},
    ),
    Topic(
        "pcf.bom", "product id", "io.pcfexchange.SignedBillOfMaterials",
        "manufacturers' signed bills of materials",
        APPEND_TIME, {"supplier": "W", "manufacturer": "W", "streams": "RD", "operator": "CD"},
    ),
    Topic(
        "pcf.factors", "factor id", "io.pcfexchange.SignedEmissionFactor",
        "the operator's signed background emission factors",
        {**APPEND_TIME, **FOREVER}, {"operator": "RWCD", "streams": "RD"},
    ),
    Topic(
        "pcf.keys", "owner/keyId", "io.pcfexchange.SignedSupplierKey",
        "the operator's signed key registrations (role, namespaces, validity, revocation)",
        {**APPEND_TIME, **FOREVER},
        {**_ALL_READ, "operator": "RWCD", "streams": "RD", "gateway": "RD"},
    ),
    Topic(
        "pcf.rollup", "none (a pack of messages per partition)", "streams codec JSON",
        "the roll-up's messages between nodes (internal to the streams)",
        {}, {"streams": "RWC"},
    ),
    Topic(
        "pcf.products", "product id", "io.pcfexchange.RolledUpFootprint",
        "rolled-up PCFs with lineage, signed by the streams' service key",
        APPEND_TIME, {"streams": "RWCD", "gateway": "RD"},
    ),
    Topic(
        "pcf.rejected", "the refused input's key", "io.pcfexchange.Rejection",
        "the dead-letter topic: every refused record with its reason",
        {}, {"streams": "WC", "gateway": "W", "operator": "R"},
    ),
    Topic(
        "pcf.approvals", "approval id", "io.pcfexchange.gateway.ApprovalEvent",
        "held transfers' requests and officers' signed decisions",
        {**APPEND_TIME, **FOREVER}, {"gateway": "RWCD", "officer": "RW"},
    ),
    Topic(
        "pcf.audit", "log id", "io.pcfexchange.gateway.AuditLogEntry",
        "the hash-chained audit log: one chain per gateway input partition, and the PACT"
        " API's disclosure chain (``pcfx-api``)",
        FOREVER, {"gateway": "RWCD", "api": "RWD", "officer": "R"},
    ),
    Topic(
        "pcf.audit.checkpoints", "log id", "io.pcfexchange.gateway.AuditLogCheckpoint",
        "signed RFC 6962 checkpoints of the audit chains",
        FOREVER, {"gateway": "RWCD", "api": "RWD", "officer": "R"},
    ),
    Topic(
        "pcf.gateway.counters", "year|metric|individual", "io.pcfexchange.gateway.PiCounterEntry",
        "personal-information counters per year (cross-border thresholds)",
        COMPACTED, {"gateway": "RWCD"},
    ),
    Topic(
        "pcf.outbound.", "pseudonym of the product id", "io.pcfexchange.gateway.SealedMessage",
        "what the gateway released to one recipient: signed, encrypted to its key",
        {}, {},
    ),
    Topic(
        "<app id>-<table>-changelog", "the table's key", "streams codec JSON",
        "a streams table's changelog (faust names it; created before the workers start)",
        COMPACTED, {}, prefixed=False,
    ),
    Topic(
        "pcf._schemas", "subject/version", "schema registry records",
        "the deployment's schema registry (Confluent-compatible ids; one transactional writer,"
        " contracts._registry)",
        COMPACTED, {**_ALL_READ, "operator": "RWC"},
    ),
    Topic(
        "pcf.review", "the held record's subject", "io.pcfexchange.pcr.ReviewEvent",
        "records held for review: a figure far outside its product category's plausible range"
        " (contracts.pcr), with the record as received; kept for ever as evidence",
        {**APPEND_TIME, **FOREVER}, {"streams": "WCD", "officer": "R", "operator": "R"},
    ),
    Topic(
        "pcf.review.decisions", "the held record's subject", "io.pcfexchange.pcr.ReviewEvent",
        "compliance officers' signed decisions on held records (released or rejected)",
        {**APPEND_TIME, **FOREVER}, {"officer": "RW", "streams": "RCD", "operator": "R"},
    ),
    Topic(
        "pcf.bodies", "body id", "io.pcfexchange.certification.SignedStatement",
        "the operator's signed registrations and blacklistings of certification bodies",
        {**APPEND_TIME, **FOREVER}, {**_ALL_READ, "operator": "RWCD"},
    ),
    Topic(
        "pcf.certificates", "certificate id", "io.pcfexchange.certification.SignedStatement",
        "bodies' signed certificates and revocations, the operator's stale notices",
        {**APPEND_TIME, **FOREVER}, {**_DOMESTIC_READ, "operator": "RWCD", "certifier": "RW"},
    ),
    Topic(
        "pcf.api.releases", "recipient id|footprint id", "io.pcfexchange.gateway.SealedMessage",
        "what the gateway released for delivery through the PACT API: each footprint as its"
        " recipient may see it, signed, encrypted to the API service's key, written in the"
        " transaction of its audit entry; the latest per recipient and footprint is kept",
        COMPACTED, {"gateway": "RWCD", "api": "RD"},
    ),
)  # fmt: skip

TOPICS: Final[Mapping[str, Topic]] = MappingProxyType({t.name: t for t in _TABLE})
"""Every topic by its (unprefixed) name."""
SCHEMAS: Final = TOPICS["pcf._schemas"]
CHANGELOG: Final = TOPICS["<app id>-<table>-changelog"]


@dataclass(frozen=True)
class TopicNames:
    """The table's names in one deployment (``prefix`` before every name)."""

    prefix: str = ""

    def of(self, name: str, member: str = "") -> str:
        return TOPICS[name].full_name(self.prefix, member)

    @property
    def declared(self) -> str:
        return self.of("pcf.declared")

    @property
    def bom(self) -> str:
        return self.of("pcf.bom")

    @property
    def factors(self) -> str:
        return self.of("pcf.factors")

    @property
    def keys(self) -> str:
        return self.of("pcf.keys")

    @property
    def rollup(self) -> str:
        return self.of("pcf.rollup")

    @property
    def products(self) -> str:
        return self.of("pcf.products")

    @property
    def rejected(self) -> str:
        return self.of("pcf.rejected")

    @property
    def approvals(self) -> str:
        return self.of("pcf.approvals")

    @property
    def audit(self) -> str:
        return self.of("pcf.audit")

    @property
    def checkpoints(self) -> str:
        return self.of("pcf.audit.checkpoints")

    @property
    def counters(self) -> str:
        return self.of("pcf.gateway.counters")

    @property
    def schemas(self) -> str:
        """The deployment's schema registry topic (:class:`contracts.KafkaSchemaRegistry`)."""
        return self.of("pcf._schemas")

    @property
    def review(self) -> str:
        return self.of("pcf.review")

    @property
    def review_decisions(self) -> str:
        return self.of("pcf.review.decisions")

    def outbound(self, recipient_id: str) -> str:
        """``pcf.outbound.<recipient id>``; the id must be a legal topic-name fragment."""
        if not _legal_fragment(recipient_id):
            raise ValueError(
                f"recipient id '{recipient_id}' cannot name a Kafka topic"
                " (letters, digits, '.', '_', '-' only)"
            )
        return self.of("pcf.outbound.", recipient_id)


def _legal_fragment(text: str) -> bool:
    return 0 < len(text) <= 200 and all(c.isascii() and (c.isalnum() or c in "._-") for c in text)


# --- creating and checking topics on a cluster ------------------------------------------------

MAX_REPLICATION: Final = 3
"""Every topic is kept on three brokers where the cluster has them."""


@dataclass(frozen=True)
class Replication:
    """How a topic is replicated on a cluster: decided when it is created, from the number of
    brokers the cluster has then (:func:`replication_for`)."""

    factor: int
    min_insync_replicas: int

    @property
    def configs(self) -> dict[str, str]:
        """The topic configs that go with it: ``min.insync.replicas`` when it is above 1 (an
        ``acks=all`` write is then on that many replicas before it is acknowledged)."""
        if self.min_insync_replicas <= 1:
            return {}
        return {"min.insync.replicas": str(self.min_insync_replicas)}


def replication_for(brokers: int) -> Replication:
    """``min(3, brokers)`` replicas, with ``min.insync.replicas=2`` at 3: a cluster of three
    may lose one broker without losing an acknowledged write or refusing new ones. A single
    broker (tests, the demo) gets 1 and 1, what it allows."""
    if brokers < 1:
        raise InfrastructureError(
            f"the cluster lists no broker (got {brokers}); cannot decide the topics' replication",
            hint="Check KAFKA_BOOTSTRAP_SERVERS: the brokers must be up and registered.",
        )
    factor = min(MAX_REPLICATION, brokers)
    return Replication(factor, 2 if factor == MAX_REPLICATION else 1)


def topic_problems(name: str, spec: Topic, found: Mapping[str, str]) -> list[str]:
    """What differs between the configs *spec* fixes and those a topic has (*found*)."""
    return [
        f"topic '{name}' must have {key}={want} (it has {key}={found.get(key, 'unset')})"
        for key, want in spec.configs.items()
        if found.get(key) != want
    ]


def ensure_topics(
    bootstrap: str,
    wanted: Sequence[tuple[str, Topic, int]],
    *,
    create: bool = True,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create the topics of *wanted* — (full name, table row, partitions) — that do not exist,
    with their rows' configs (unless not to *create*: topics managed elsewhere); then check
    every one of them that exists has those configs.

    Replication is decided here from the brokers the cluster lists (:func:`replication_for`):
    ``min(3, brokers)`` replicas, and ``min.insync.replicas=2`` on top of the row's configs
    when that is 3.

    Returns the names created. Raises :class:`~contracts.errors.InfrastructureError` listing
    every topic whose configs differ from the table's (an existing topic made by hand or by an
    older version), with the command that fixes each; and when the cluster cannot be reached.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AdminClient,
        ConfigResource,
        NewTopic,
        ResourceType,
    )

    admin = AdminClient(librdkafka_config(**{"bootstrap.servers": bootstrap}))
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise InfrastructureError(
            f"cannot list the topics at {bootstrap}: {exc}",
            hint="Check KAFKA_BOOTSTRAP_SERVERS and the client's security settings.",
        ) from exc
    existing = set(metadata.topics)
    replication = replication_for(len(metadata.brokers))
    missing = [
        NewTopic(
            name,
            num_partitions=n,
            replication_factor=replication.factor,
            config={**spec.configs, **replication.configs},
        )
        for name, spec, n in wanted
        if name not in existing and create
    ]
    created: list[str] = []
    if missing:
        for name, future in admin.create_topics(missing, operation_timeout=timeout_s).items():
            try:
                future.result(timeout=timeout_s)
                created.append(name)
            except KafkaException as exc:
                if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue  # another process was quicker: checked below like any other
                raise InfrastructureError(f"cannot create topic '{name}': {exc}") from exc
    _await_metadata(admin, created, timeout_s)
    present = existing | set(created)
    checked = [(name, spec) for name, spec, _ in wanted if spec.configs and name in present]
    problems: list[str] = []
    fixes: list[str] = []
    if checked:
        resources = [ConfigResource(ResourceType.TOPIC, name) for name, _ in checked]
        found = _describe(admin, resources, timeout_s)
        for name, spec in checked:
            wrong = topic_problems(name, spec, found.get(name, {}))
            problems.extend(wrong)
            if wrong:
                fixes.append(_fix_command(bootstrap, name, spec))
    if problems:
        raise InfrastructureError(
            "; ".join(problems),
            hint="Fix the topics (or let this create them on a new cluster): " + " && ".join(fixes),
        )
    return created


def _await_metadata(admin: Any, created: list[str], timeout_s: float) -> None:
    """Wait until the cluster lists the topics just *created* (metadata propagates later)."""
    deadline = time.monotonic() + timeout_s
    while created:
        listed = admin.list_topics(timeout=timeout_s).topics
        if all(name in listed and not listed[name].error for name in created):
            return
        if time.monotonic() > deadline:
            raise InfrastructureError(
                f"topics {created} were created but never appeared in the cluster's metadata"
            )
        time.sleep(0.1)


def _describe(admin: Any, resources: list[Any], timeout_s: float) -> dict[str, dict[str, str]]:
    """Each topic's configs; retried while a just-created topic is not described yet."""
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return {
                resource.name: {k: str(v.value) for k, v in future.result(timeout_s).items()}
                for resource, future in admin.describe_configs(resources).items()
            }
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise InfrastructureError(f"cannot read the topics' configs: {exc}") from exc
            time.sleep(0.2)


def _fix_command(bootstrap: str, name: str, spec: Topic) -> str:
    settings = ",".join(f"{k}={v}" for k, v in spec.configs.items())
    return (
        f"kafka-configs.sh --bootstrap-server {bootstrap} --alter --entity-type topics"
        f" --entity-name {name} --add-config {settings}"
    )
