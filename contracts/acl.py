"""Who may read and write what on the exchange's Kafka: the role -> ACL table, as data.

The broker enforces it (``pcfx broker start --secure``: the KRaft ``StandardAuthorizer``, deny
unless an ACL allows); ``pcfx tenants add`` turns a role into these grants for one principal.
Two tables: :data:`TOPIC_ACCESS`, keyed by topic and role (``R`` read, ``W`` write, ``C`` create,
``D`` describe its configs, e.g. to check LogAppendTime or retention at start-up),
and :data:`ROLE_EXTRAS` for what is not a shared topic (a tenant's own topics, consumer groups,
transactional ids, the cluster). Names are templates: ``{prefix}`` is the deployment's topic
prefix (``PCFX_TOPIC_PREFIX``), ``{tenant}`` the principal's name, ``{app_id}`` the streams
application id, ``{group}`` the gateway's consumer group.

The rules the tables keep (each proved by a test on a secure broker, tests/infra):

- nobody but the operator writes ``pcf.keys``, ``pcf.factors`` or the schemas topic;
- a supplier or manufacturer writes its declarations (``pcf.declared``, ``pcf.bom``) and reads
  nothing of other companies' (no read of ``pcf.declared``, ``pcf.bom``, ``pcf.products``);
- a manufacturer reads its results only from the topic named after it, ``pcf.outbound.<tenant>``:
  the gateway delivers it its products' rolled-up footprints as a domestic recipient (signed,
  encrypted to its key, audited like every release); the shared ``pcf.products`` is never
  readable by a company;
- a recipient reads only ``pcf.outbound.<tenant>``;
- the streams, gateway, API and officer principals get what their stage needs and no more.

Keys (``pcf.keys``: public keys and their namespaces) and the schemas topic are readable by every
role: every client needs them to encode or check records, and they hold no company's data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from pcf_exchange.contracts.topics import ROLES, SCHEMAS, TOPICS

__all__ = [
    "COMMON",
    "PATTERNS",
    "READERS",
    "RESOURCES",
    "ROLES",
    "ROLE_EXTRAS",
    "SCHEMAS_TOPIC_NAME",
    "TOPIC_ACCESS",
    "Grant",
    "grants_for",
]

Resource = Literal["topic", "group", "transactional_id", "cluster"]
Pattern = Literal["literal", "prefixed"]
RESOURCES: Final = ("topic", "group", "transactional_id", "cluster")
PATTERNS: Final = ("literal", "prefixed")

SCHEMAS_TOPIC_NAME: Final = SCHEMAS.name
"""The schema registry's topic, before the deployment prefix (see ``contracts._registry``)."""

TOPIC_ACCESS: Final[Mapping[str, Mapping[str, str]]] = {
    topic.name: topic.access for topic in TOPICS.values() if topic.access
}
"""Shared topics: who reads (R), writes (W), may create (C) and describe the configs (D) of each
(the ``access`` column of the one table of topics, :mod:`contracts.topics`)."""

OPERATIONS: Final[Mapping[str, tuple[str, ...]]] = {
    "R": ("READ",),
    "W": ("WRITE",),
    "C": ("CREATE",),
    "D": ("DESCRIBE_CONFIGS",),
}


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL: *operation* on a resource (*resource*, *name*, *pattern*)."""

    resource: Resource
    name: str
    pattern: Pattern
    operation: str
    """Kafka's operation name: READ, WRITE, CREATE, DESCRIBE, DESCRIBE_CONFIGS, IDEMPOTENT_WRITE."""

    def __str__(self) -> str:
        star = "*" if self.pattern == "prefixed" else ""
        return f"{self.operation} {self.resource}:{self.name}{star}"


def _g(resource: Resource, name: str, pattern: Pattern, *operations: str) -> tuple[Grant, ...]:
    return tuple(Grant(resource, name, pattern, op) for op in operations)


COMMON: Final[tuple[Grant, ...]] = (
    # every tenant's own consumer groups: <tenant>.<anything>
    *_g("group", "{tenant}.", "prefixed", "READ"),
    # the key directory's short-lived readers (producers/_keydir.py: pcfx-keys-<random>); a
    # librdkafka consumer finds its group's coordinator even when it only assigns partitions
    *_g("group", "pcfx-keys-", "prefixed", "READ"),
)
"""Grants every role has: its own group namespace, and the key directory readers' groups."""

READERS: Final[tuple[Grant, ...]] = (
    # gateway/runtime/_kafka.read_to_end's short-lived readers (pcfx-reader-<random>)
    *_g("group", "pcfx-reader-", "prefixed", "READ"),
)

ROLE_EXTRAS: Final[Mapping[str, tuple[Grant, ...]]] = {
    "supplier": COMMON,
    "manufacturer": (
        *COMMON,
        *READERS,
        *_g("topic", "{prefix}pcf.outbound.{tenant}", "literal", "READ"),
    ),
    "recipient": (
        *COMMON,
        *READERS,
        *_g("topic", "{prefix}pcf.outbound.{tenant}", "literal", "READ"),
    ),
    "streams": (
        *COMMON,
        # the app's own topics: changelogs, faust's leader/repartition topics (<app id>-...)
        *_g("topic", "{app_id}-", "prefixed", "READ", "WRITE", "CREATE", "DESCRIBE_CONFIGS"),
        *_g("group", "{app_id}", "prefixed", "READ"),
        *_g("cluster", "kafka-cluster", "literal", "IDEMPOTENT_WRITE"),
    ),
    "gateway": (
        *COMMON,
        *READERS,
        *_g("topic", "{prefix}pcf.outbound.", "prefixed", "READ", "WRITE", "CREATE"),
        *_g("group", "{group}", "prefixed", "READ"),
        # gateway/runtime/_runner.py: pcfx-gateway.<group>.<products topic>.<partition>
        *_g("transactional_id", "pcfx-gateway.{group}.", "prefixed", "WRITE", "DESCRIBE"),
        *_g("cluster", "kafka-cluster", "literal", "IDEMPOTENT_WRITE"),
    ),
    "api": (
        *COMMON,
        *READERS,
        *_g("topic", "{prefix}pcf.outbound.", "prefixed", "READ"),
        *_g("group", "pcfx-api", "prefixed", "READ"),
        *_g("transactional_id", "pcfx-api", "prefixed", "WRITE", "DESCRIBE"),
        *_g("cluster", "kafka-cluster", "literal", "IDEMPOTENT_WRITE"),
    ),
    "operator": (
        *COMMON,
        *READERS,
        # the deployment's registry writer: pcfx-schema-writer:<prefix>pcf._schemas
        *_g("transactional_id", "pcfx-schema-writer:{prefix}", "prefixed", "WRITE", "DESCRIBE"),
        *_g("cluster", "kafka-cluster", "literal", "CREATE", "IDEMPOTENT_WRITE"),
    ),
    "officer": (*COMMON, *READERS),
    "certifier": (
        *COMMON,
        *READERS,
        *_g("cluster", "kafka-cluster", "literal", "IDEMPOTENT_WRITE"),
    ),
}
"""Per role: grants on the tenant's own topics, groups, transactional ids and the cluster."""


def grants_for(
    role: str,
    tenant: str,
    *,
    prefix: str = "",
    app_id: str = "pcfx-streams",
    group: str = "pcfx-gateway",
) -> tuple[Grant, ...]:
    """Every ACL *role* gives the principal *tenant* (sorted, no duplicates); a ``KeyError``
    names an unknown role."""
    if role not in ROLE_EXTRAS:
        raise KeyError(f"unknown role {role!r} (expected one of {', '.join(ROLES)})")
    out: set[Grant] = set()
    for topic, roles in TOPIC_ACCESS.items():
        access = roles.get(role, "")
        name = TOPICS[topic].full_name(prefix)
        for letter in access:
            out.update(_g("topic", name, "literal", *OPERATIONS[letter]))
    values = {"prefix": prefix, "tenant": tenant, "app_id": app_id, "group": group}
    for grant in ROLE_EXTRAS[role]:
        out.add(Grant(grant.resource, grant.name.format(**values), grant.pattern, grant.operation))
    return tuple(sorted(out))
