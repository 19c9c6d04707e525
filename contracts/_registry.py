"""Schema registries behind one :class:`SchemaRegistry` protocol, and compatibility checks.

Three implementations: :class:`InMemorySchemaRegistry` (tests, batch mode),
:class:`KafkaSchemaRegistry` (a compacted topic ``<prefix>pcf._schemas``; one transactional
writer assigns ids, every client reads the topic on start: no extra server), and
:class:`HttpSchemaRegistry` (a Confluent-compatible REST registry). Compatibility uses
``avro.compatibility`` and defaults to BACKWARD_TRANSITIVE: a new reader against every writer.

The Kafka topic belongs to one deployment: it is the topic table's ``pcf._schemas`` under the
deployment's prefix (``PCFX_TOPIC_PREFIX``, :class:`contracts.topics.TopicNames`), and its
writer's transactional id names that topic (``pcfx-schema-writer:<prefix>pcf._schemas``). So
every service, command and test of a deployment passes its prefix (``prefix=``), and two
deployments on one cluster keep their own ids and never fence each other's writer. Records carry
only a schema id: a deployment reads its topics with its own registry, never another's.

**Upgrading a prefixed deployment.** Before the registry followed the prefix, a deployment with
``PCFX_TOPIC_PREFIX`` registered its subjects (``<prefix><topic>-value``) in the shared
``pcf._schemas``, and its records carry those ids. :func:`migrate_schemas` (``pcfx schemas
migrate``) copies that prefix's subjects into ``<prefix>pcf._schemas`` *with their ids and
versions*, in one transaction, planned first by the pure :func:`plan_migration` (what to copy,
what is there already, and every conflict: an id or a version the target holds for another
schema, which refuses the whole copy). A long-running service checks at start-up
(:func:`require_migrated`) and refuses to start on an empty prefixed registry while the shared
one holds its prefix's subjects: registering fresh ids there first would make the old records
undecodable and the copy conflict.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Protocol, runtime_checkable
from urllib.parse import quote

import avro.errors
import avro.schema
import httpx
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from pcf_exchange.contracts._schemas import normalized
from pcf_exchange.contracts.errors import (
    IncompatibleSchemaError,
    InvalidSchemaError,
    RegistryError,
    UnknownSchemaError,
)
from pcf_exchange.contracts.topics import SCHEMAS, TopicNames

log = logging.getLogger(__name__)

SERVICE_STARTUP_S: Final = 120.0
"""How long a long-running service (streams worker, gateway, API) retries opening the registry
topic at start-up before it gives up (``startup_s``): a cluster restarting or under a fault
answers late, and a service that exits on the first timeout stays down (issue #22's nemesis)."""

__all__ = [
    "DEFAULT_COMPATIBILITY",
    "LEGACY_SCHEMAS_TOPIC",
    "SCHEMAS_TOPIC",
    "SERVICE_STARTUP_S",
    "CompatibilityLevel",
    "HttpSchemaRegistry",
    "InMemorySchemaRegistry",
    "KafkaSchemaRegistry",
    "MigrationPlan",
    "RegisteredSchema",
    "SchemaRegistry",
    "check_compatibility",
    "migrate_schemas",
    "plan_migration",
    "register_missing",
    "register_schemas",
    "require_migrated",
    "require_prefix",
    "schemas_topic",
    "stranded_subjects",
]

SCHEMAS_TOPIC: Final = SCHEMAS.name
"""The registry topic's name without a deployment prefix (``TopicNames(prefix).schemas``)."""


def schemas_topic(prefix: str = "", topic: str | None = None) -> str:
    """The registry topic of the deployment *prefix*, or *topic* itself when one is named
    (tests give their own); both at once is a mistake, refused."""
    if topic is None:
        return TopicNames(prefix).schemas
    if prefix:
        raise ValueError(
            f"give the deployment prefix or the registry topic, not both"
            f" (prefix {prefix!r}, topic {topic!r})"
        )
    return topic


class CompatibilityLevel(StrEnum):
    """Confluent compatibility levels."""

    NONE = "NONE"
    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"


DEFAULT_COMPATIBILITY: Final = CompatibilityLevel.BACKWARD_TRANSITIVE


@dataclass(frozen=True, slots=True)
class RegisteredSchema:
    subject: str
    version: int
    schema_id: int
    schema: str


@runtime_checkable
class SchemaRegistry(Protocol):
    """What serde and tools need from a schema registry."""

    def register(self, subject: str, schema: str) -> int:
        """Register *schema* under *subject* (idempotent); return its id.

        Raises :class:`IncompatibleSchemaError` when the subject's compatibility level refuses it.
        """
        ...

    def lookup(self, subject: str, schema: str) -> int:
        """Id of *schema* already registered under *subject*, else :class:`UnknownSchemaError`."""
        ...

    def get_schema(self, schema_id: int) -> str:
        """Schema text for *schema_id*, else :class:`UnknownSchemaError`."""
        ...

    def latest(self, subject: str) -> RegisteredSchema:
        """Newest version under *subject*, else :class:`UnknownSchemaError`."""
        ...

    def versions(self, subject: str) -> list[int]: ...

    def subjects(self) -> list[str]: ...

    def compatibility(self, subject: str | None = None) -> CompatibilityLevel:
        """The subject's level (falling back to the global one) or the global level."""
        ...

    def set_compatibility(self, level: CompatibilityLevel, subject: str | None = None) -> None: ...

    def test_compatibility(self, subject: str, schema: str) -> list[str]:
        """Why *schema* may not be registered under *subject* (empty when it may)."""
        ...


# --------------------------------------------------------------------------------------------
# Compatibility


def _parse(schema: str, what: str) -> avro.schema.Schema:
    try:
        return avro.schema.parse(schema)
    except (avro.errors.AvroException, json.JSONDecodeError, TypeError, ValueError) as exc:
        raise InvalidSchemaError(f"{what} is not a valid Avro schema: {exc}") from exc


def _pair(reader: avro.schema.Schema, writer: avro.schema.Schema, label: str) -> list[str]:
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(reader, writer)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    kinds = sorted({i.value for i in result.incompatibilities})
    where = ", ".join(sorted(result.locations))
    what = "; ".join(sorted(result.messages))
    return [f"{label}: {', '.join(kinds)} at {where}: {what}"]


def check_compatibility(
    new: str, previous: Sequence[str], level: CompatibilityLevel = DEFAULT_COMPATIBILITY
) -> list[str]:
    """Incompatibilities of schema *new* with the *previous* versions (oldest first) under *level*.

    BACKWARD: the new schema can read data written with the latest previous one; ``_TRANSITIVE``
    with every previous one. FORWARD: the previous can read the new. FULL: both.
    """
    if level is CompatibilityLevel.NONE or not previous:
        return []
    reader = _parse(new, "new schema")
    transitive = level.endswith("_TRANSITIVE")
    olds = list(enumerate(previous, start=1))
    if not transitive:
        olds = olds[-1:]
    problems: list[str] = []
    for version, text in olds:
        old = _parse(text, f"version {version}")
        if level.startswith(("BACKWARD", "FULL")):
            problems += _pair(
                reader, old, f"new schema cannot read data written with version {version}"
            )
        if level.startswith(("FORWARD", "FULL")):
            problems += _pair(
                old, reader, f"version {version} readers cannot read data of the new schema"
            )
    return problems


# --------------------------------------------------------------------------------------------
# In-memory core (also the state of the Kafka-backed registry)


class _State:
    """Subjects, versions, ids and config; no I/O. Callers hold the lock."""

    def __init__(self) -> None:
        self.by_subject: dict[str, list[RegisteredSchema]] = {}
        self.by_id: dict[int, str] = {}
        self.id_by_key: dict[str, int] = {}
        self.config: dict[str | None, CompatibilityLevel] = {None: DEFAULT_COMPATIBILITY}

    def find(self, subject: str, key: str) -> RegisteredSchema | None:
        for entry in self.by_subject.get(subject, ()):
            if normalized(entry.schema) == key:
                return entry
        return None

    def level(self, subject: str | None) -> CompatibilityLevel:
        return self.config.get(subject) or self.config[None]

    def plan(self, subject: str, schema: str) -> RegisteredSchema | None:
        """The entry registering *schema* would add (``None`` if present); raises if refused."""
        _parse(schema, "schema")
        key = normalized(schema)
        if self.find(subject, key) is not None:
            return None
        history = self.by_subject.get(subject, [])
        problems = check_compatibility(schema, [e.schema for e in history], self.level(subject))
        if problems:
            raise IncompatibleSchemaError(subject, problems)
        schema_id = self.id_by_key.get(key, max(self.by_id, default=0) + 1)
        version = history[-1].version + 1 if history else 1
        return RegisteredSchema(subject, version, schema_id, schema)

    def apply(self, entry: RegisteredSchema) -> None:
        versions = self.by_subject.setdefault(entry.subject, [])
        if any(e.version == entry.version for e in versions):
            return
        versions.append(entry)
        versions.sort(key=lambda e: e.version)
        self.by_id.setdefault(entry.schema_id, entry.schema)
        self.id_by_key.setdefault(normalized(entry.schema), entry.schema_id)

    def lookup(self, subject: str, schema: str) -> int:
        entry = self.find(subject, normalized(schema))
        if entry is None:
            raise UnknownSchemaError(
                f"schema is not registered under subject '{subject}'",
                hint="Register it first: the operator runs 'python -m"
                " pcf_exchange.infra.compose.register_schemas' (what is missing), or 'pcfx schemas"
                " migrate --from pcf._schemas' while this deployment's schemas are still in the"
                " shared topic.",
            )
        return entry.schema_id

    def get(self, schema_id: int) -> str:
        try:
            return self.by_id[schema_id]
        except KeyError:
            raise UnknownSchemaError(f"schema id {schema_id} is not registered") from None

    def latest(self, subject: str) -> RegisteredSchema:
        versions = self.by_subject.get(subject)
        if not versions:
            raise UnknownSchemaError(f"subject '{subject}' has no registered schema")
        return versions[-1]


class InMemorySchemaRegistry:
    """A registry in a dict: for unit tests, dry runs and batch mode."""

    def __init__(self) -> None:
        self._state = _State()
        self._lock = threading.Lock()

    def register(self, subject: str, schema: str) -> int:
        with self._lock:
            entry = self._state.plan(subject, schema)
            if entry is None:
                return self._state.lookup(subject, schema)
            self._state.apply(entry)
            return entry.schema_id

    def lookup(self, subject: str, schema: str) -> int:
        with self._lock:
            return self._state.lookup(subject, schema)

    def get_schema(self, schema_id: int) -> str:
        with self._lock:
            return self._state.get(schema_id)

    def latest(self, subject: str) -> RegisteredSchema:
        with self._lock:
            return self._state.latest(subject)

    def versions(self, subject: str) -> list[int]:
        with self._lock:
            return [e.version for e in self._state.by_subject.get(subject, [])]

    def subjects(self) -> list[str]:
        with self._lock:
            return sorted(self._state.by_subject)

    def compatibility(self, subject: str | None = None) -> CompatibilityLevel:
        with self._lock:
            return self._state.level(subject)

    def set_compatibility(self, level: CompatibilityLevel, subject: str | None = None) -> None:
        with self._lock:
            self._state.config[subject] = CompatibilityLevel(level)

    def test_compatibility(self, subject: str, schema: str) -> list[str]:
        with self._lock:
            try:
                self._state.plan(subject, schema)
            except IncompatibleSchemaError as exc:
                return list(exc.incompatibilities)
            return []


# --------------------------------------------------------------------------------------------
# Kafka-topic-backed registry


_MISS_PAUSES_S: Final = (0.0, 0.05, 0.2, 0.5)
"""Pauses before each catch-up that follows a miss (see :meth:`KafkaSchemaRegistry._read`)."""


class KafkaSchemaRegistry:
    """Schemas in a compacted, single-partition Kafka topic (the ``_schemas`` design).

    Every client reads the whole topic on start and catches up before answering a miss. Only a
    client made with ``writer=True`` registers: it is a transactional producer, so starting a
    second writer fences the first (its next registration fails with :class:`RegistryError`)
    and ids are never assigned twice. The topic is the deployment's (*prefix*, see the module
    docstring), or *topic* when given; the writer's transactional id is
    ``pcfx-schema-writer:<topic>``, one per deployment. Record layout (JSON, Confluent-like)::

        key   {"keytype": "SCHEMA", "subject": s, "version": v, "magic": 1}
        value {"subject": s, "version": v, "id": n, "schema": "...", "deleted": false}
        key   {"keytype": "CONFIG", "subject": s|null, "magic": 0}
        value {"compatibilityLevel": "BACKWARD_TRANSITIVE"}
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        prefix: str = "",
        topic: str | None = None,
        writer: bool = False,
        timeout_s: float = 15.0,
        create_topic: bool = True,
        client_id: str = "pcfx-schema-registry",
        startup_s: float = 0.0,
    ) -> None:
        """*startup_s* > 0 (the long-running services): opening is retried for that long when
        the cluster does not answer in time (a broker restarting, a cluster under a fault),
        each failure logged, before :class:`RegistryError`; a command gives up at once."""
        from kafka import TopicPartition

        topic = schemas_topic(prefix, topic)
        self._topic = topic
        self._timeout_ms = int(timeout_s * 1000)
        self._state = _State()
        self._lock = threading.RLock()
        self._tp = TopicPartition(topic, 0)
        self._producer: Any = None
        self._consumer: Any = None
        deadline = time.monotonic() + startup_s
        while True:
            try:
                self._open(bootstrap_servers, writer, create_topic, client_id)
                return
            except RegistryError as exc:
                self.close()
                self._state = _State()
                if time.monotonic() >= deadline:
                    raise
                log.warning("%s; retrying for up to %.0f s more", exc, deadline - time.monotonic())
                time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))

    def _open(
        self, bootstrap_servers: str, writer: bool, create_topic: bool, client_id: str
    ) -> None:
        from kafka import KafkaConsumer, KafkaProducer
        from kafka.errors import KafkaError

        from pcf_exchange.contracts.kafka_client import kafka_python_kwargs

        topic = self._topic
        try:
            if create_topic:
                self._create_topic(bootstrap_servers, client_id)
            self._consumer = KafkaConsumer(
                **kafka_python_kwargs(),
                bootstrap_servers=bootstrap_servers,
                client_id=f"{client_id}-reader",
                group_id=None,
                enable_auto_commit=False,
                isolation_level="read_committed",
                request_timeout_ms=max(self._timeout_ms, 1000) + 5000,
            )
            self._consumer.assign([self._tp])
            self._consumer.seek_to_beginning(self._tp)
            if writer:
                self._producer = KafkaProducer(
                    **kafka_python_kwargs(),
                    bootstrap_servers=bootstrap_servers,
                    client_id=f"{client_id}-writer",
                    acks="all",
                    enable_idempotence=True,
                    transactional_id=f"pcfx-schema-writer:{topic}",
                )
                self._producer.init_transactions()
        except KafkaError as exc:
            raise RegistryError(
                f"cannot open schema topic '{topic}' at {bootstrap_servers}: {exc}"
            ) from exc
        self._catch_up()

    def _create_topic(self, bootstrap_servers: str, client_id: str) -> None:
        from kafka.admin import KafkaAdminClient, NewTopic
        from kafka.errors import TopicAlreadyExistsError, TopicAuthorizationFailedError

        from pcf_exchange.contracts.kafka_client import kafka_python_kwargs
        from pcf_exchange.contracts.topics import replication_for

        admin = KafkaAdminClient(
            **kafka_python_kwargs(),
            bootstrap_servers=bootstrap_servers,
            client_id=f"{client_id}-admin",
        )
        try:
            # replicated like every topic of the table (3 where the cluster has 3 brokers)
            replication = replication_for(len(admin.describe_cluster()["brokers"]))
            admin.create_topics(
                [
                    NewTopic(
                        self._topic,
                        num_partitions=1,
                        replication_factor=replication.factor,
                        topic_configs={**SCHEMAS.configs, **replication.configs},
                    )
                ]
            )
        except (TopicAlreadyExistsError, TopicAuthorizationFailedError):
            pass  # exists, or this principal may not create it (the operator does, under ACLs)
        finally:
            admin.close()

    def close(self) -> None:
        for client in (self._consumer, self._producer):
            if client is not None:
                client.close()
        self._consumer = self._producer = None

    def __enter__(self) -> KafkaSchemaRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading

    def _catch_up(self) -> None:
        """Read the topic up to its current end (the last stable offset)."""
        from kafka.errors import KafkaError

        with self._lock:
            deadline = time.monotonic() + self._timeout_ms / 1000
            try:
                end = self._consumer.end_offsets([self._tp], timeout_ms=self._timeout_ms)[self._tp]
                while self._consumer.position(self._tp, timeout_ms=self._timeout_ms) < end:
                    if time.monotonic() > deadline:
                        raise RegistryError(
                            f"schema topic '{self._topic}' was not read to its end (offset {end}) "
                            f"within {self._timeout_ms} ms"
                        )
                    batches = self._consumer.poll(
                        timeout_ms=min(self._timeout_ms, 1000), max_records=1000
                    )
                    for records in batches.values():
                        for record in records:
                            self._apply(record.key, record.value)
            except KafkaError as exc:
                raise RegistryError(f"cannot read schema topic '{self._topic}': {exc}") from exc

    def _apply(self, raw_key: bytes | None, raw_value: bytes | None) -> None:
        try:
            key = json.loads(raw_key or b"{}")
            value = json.loads(raw_value) if raw_value is not None else None
        except ValueError:
            return  # not ours (a foreign writer); ignore rather than stop every reader
        if not isinstance(key, dict):
            return
        if key.get("keytype") == "SCHEMA" and isinstance(value, dict) and not value.get("deleted"):
            self._state.apply(
                RegisteredSchema(
                    str(value["subject"]),
                    int(value["version"]),
                    int(value["id"]),
                    str(value["schema"]),
                )
            )
        elif key.get("keytype") == "CONFIG" and isinstance(value, dict):
            try:
                self._state.config[key.get("subject")] = CompatibilityLevel(
                    value["compatibilityLevel"]
                )
            except (KeyError, ValueError):
                return

    def _read(self, attempt: Any) -> Any:
        """*attempt*, and on a miss again after catching up with the topic.

        A registration another writer has just committed becomes readable once the broker has
        written its transaction's markers, which can trail the writer's commit by a moment. So a
        miss catches up a few times, pausing in between (:data:`_MISS_PAUSES_S`, under a
        second in all), before it is an :class:`UnknownSchemaError`.
        """
        for pause in _MISS_PAUSES_S:
            try:
                return attempt()
            except UnknownSchemaError:
                time.sleep(pause)
                self._catch_up()
        return attempt()

    def lookup(self, subject: str, schema: str) -> int:
        with self._lock:
            result: int = self._read(lambda: self._state.lookup(subject, schema))
            return result

    def lookup_many(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """The ids of the (subject, schema) *pairs* registered; one not registered is left out.
        As in :meth:`lookup`, misses are looked up again after catching up with the topic,
        pausing in between (:data:`_MISS_PAUSES_S`), but once for all of them, not once per
        subject (a new deployment misses every subject)."""
        found: dict[tuple[str, str], int] = {}

        def held(pair: tuple[str, str]) -> bool:
            try:
                found[pair] = self._state.lookup(*pair)
            except UnknownSchemaError:
                return False
            return True

        with self._lock:
            missing = [pair for pair in pairs if not held(pair)]
            for pause in _MISS_PAUSES_S:
                if not missing:
                    break
                time.sleep(pause)
                self._catch_up()
                missing = [pair for pair in missing if not held(pair)]
        return found

    def get_schema(self, schema_id: int) -> str:
        with self._lock:
            result: str = self._read(lambda: self._state.get(schema_id))
            return result

    def latest(self, subject: str) -> RegisteredSchema:
        with self._lock:
            result: RegisteredSchema = self._read(lambda: self._state.latest(subject))
            return result

    def versions(self, subject: str) -> list[int]:
        self._catch_up()
        with self._lock:
            return [e.version for e in self._state.by_subject.get(subject, [])]

    def subjects(self) -> list[str]:
        self._catch_up()
        with self._lock:
            return sorted(self._state.by_subject)

    def compatibility(self, subject: str | None = None) -> CompatibilityLevel:
        self._catch_up()
        with self._lock:
            return self._state.level(subject)

    def entries(self) -> list[RegisteredSchema]:
        """Every registered (subject, version, id, schema), by subject then version."""
        self._catch_up()
        with self._lock:
            return [
                e
                for subject in sorted(self._state.by_subject)
                for e in self._state.by_subject[subject]
            ]

    def configs(self) -> dict[str | None, CompatibilityLevel]:
        """The compatibility levels set: ``None`` is the global one, else per subject."""
        self._catch_up()
        with self._lock:
            return dict(self._state.config)

    def test_compatibility(self, subject: str, schema: str) -> list[str]:
        self._catch_up()
        with self._lock:
            try:
                self._state.plan(subject, schema)
            except IncompatibleSchemaError as exc:
                return list(exc.incompatibilities)
            return []

    # -- writing (single writer)

    def _write(self, key: dict[str, Any], value: dict[str, Any]) -> None:
        self._write_all([(key, value)])

    def _write_all(self, records: Sequence[tuple[dict[str, Any], dict[str, Any]]]) -> None:
        """Write *records* (key, value) in one transaction: all of them or none."""
        from kafka.errors import KafkaError

        if self._producer is None:
            raise RegistryError(
                "this schema-registry client is read-only",
                hint="Only the operator's registry writer (writer=True) registers schemas.",
            )
        try:
            self._producer.begin_transaction()
            for key, value in records:
                self._producer.send(self._topic, key=_json(key), value=_json(value), partition=0)
            self._producer.commit_transaction()
        except KafkaError as exc:
            with contextlib.suppress(KafkaError):
                self._producer.abort_transaction()
            raise RegistryError(
                f"schema topic write failed ({type(exc).__name__}: {exc}); "
                "if another writer started, this one was fenced"
            ) from exc

    def register(self, subject: str, schema: str) -> int:
        self._catch_up()
        with self._lock:
            entry = self._state.plan(subject, schema)
            if entry is None:
                return self._state.lookup(subject, schema)
            self._write(*_schema_record(entry))
            self._state.apply(entry)
            return entry.schema_id

    def import_plan(self, plan: MigrationPlan) -> None:
        """Write *plan*'s copies (ids and versions kept) and subject levels in one transaction,
        after planning again against this registry as it is now (another writer may have
        registered since): any conflict refuses the whole plan, nothing written."""
        self._catch_up()
        with self._lock:
            again = plan_migration(
                plan.copies + plan.present,
                self.entries(),
                levels=dict(plan.levels),
                target_levels=self.configs(),
                source=plan.source,
                target=self._topic,
            )
            again.raise_for_conflicts()
            records = [_schema_record(e) for e in again.copies]
            records += [_config_record(s, level) for s, level in again.levels]
            if records:
                self._write_all(records)
            for entry in again.copies:
                self._state.apply(entry)
            for subject, level in again.levels:
                self._state.config[subject] = level

    def set_compatibility(self, level: CompatibilityLevel, subject: str | None = None) -> None:
        level = CompatibilityLevel(level)
        with self._lock:
            self._write(*_config_record(subject, level))
            self._state.config[subject] = level


def _schema_record(entry: RegisteredSchema) -> tuple[dict[str, Any], dict[str, Any]]:
    key = {"keytype": "SCHEMA", "subject": entry.subject, "version": entry.version, "magic": 1}
    value = {
        "subject": entry.subject,
        "version": entry.version,
        "id": entry.schema_id,
        "schema": entry.schema,
        "deleted": False,
    }
    return key, value


def _config_record(
    subject: str | None, level: CompatibilityLevel
) -> tuple[dict[str, Any], dict[str, Any]]:
    return {"keytype": "CONFIG", "subject": subject, "magic": 0}, {
        "compatibilityLevel": level.value
    }


# --------------------------------------------------------------------------------------------
# Confluent-compatible HTTP registry


_CONTENT_TYPE: Final = "application/vnd.schemaregistry.v1+json"


class HttpSchemaRegistry:
    """Client of a Confluent-compatible registry (Confluent, Karapace, Apicurio's ccompat API)."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 10.0,
        auth: tuple[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._url = url.rstrip("/")
        self._client = httpx.Client(
            base_url=self._url,
            timeout=timeout_s,
            auth=auth,
            transport=transport,
            headers={"Accept": _CONTENT_TYPE, "Content-Type": _CONTENT_TYPE},
        )
        self._ids: dict[int, str] = {}

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpSchemaRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        try:
            response = self._client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise RegistryError(
                f"schema registry {self._url} unreachable ({type(exc).__name__}: {exc})"
            ) from exc
        try:
            data = response.json() if response.content else None
        except ValueError:
            data = None
        if response.status_code >= 500:
            raise RegistryError(
                f"schema registry {method} {path} failed: "
                f"HTTP {response.status_code} {_message(data)}"
            )
        return response.status_code, data

    @staticmethod
    def _s(subject: str) -> str:
        return quote(subject, safe="")

    def register(self, subject: str, schema: str) -> int:
        status, data = self._call(
            "POST", f"/subjects/{self._s(subject)}/versions", {"schema": schema}
        )
        if status == 409:
            details = self.test_compatibility(subject, schema) or [_message(data)]
            raise IncompatibleSchemaError(subject, details)
        if status == 422:
            raise InvalidSchemaError(
                f"registry refused the schema for '{subject}': {_message(data)}"
            )
        return self._id(status, data, f"register under '{subject}'")

    def lookup(self, subject: str, schema: str) -> int:
        status, data = self._call("POST", f"/subjects/{self._s(subject)}", {"schema": schema})
        if status == 404:
            raise UnknownSchemaError(
                f"schema is not registered under subject '{subject}': {_message(data)}"
            )
        return self._id(status, data, f"look up under '{subject}'")

    def get_schema(self, schema_id: int) -> str:
        if schema_id in self._ids:
            return self._ids[schema_id]
        status, data = self._call("GET", f"/schemas/ids/{schema_id}")
        if status == 404:
            raise UnknownSchemaError(f"schema id {schema_id} is not registered")
        if status != 200 or not isinstance(data, dict) or not isinstance(data.get("schema"), str):
            raise RegistryError(f"unexpected answer to GET /schemas/ids/{schema_id}: HTTP {status}")
        self._ids[schema_id] = data["schema"]
        return self._ids[schema_id]

    def latest(self, subject: str) -> RegisteredSchema:
        status, data = self._call("GET", f"/subjects/{self._s(subject)}/versions/latest")
        if status == 404:
            raise UnknownSchemaError(f"subject '{subject}' has no registered schema")
        if status != 200 or not isinstance(data, dict):
            raise RegistryError(f"unexpected answer for latest of '{subject}': HTTP {status}")
        try:
            return RegisteredSchema(
                str(data["subject"]), int(data["version"]), int(data["id"]), str(data["schema"])
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RegistryError(f"malformed answer for latest of '{subject}': {exc}") from exc

    def versions(self, subject: str) -> list[int]:
        status, data = self._call("GET", f"/subjects/{self._s(subject)}/versions")
        if status == 404:
            return []
        if status != 200 or not isinstance(data, list):
            raise RegistryError(f"unexpected answer for versions of '{subject}': HTTP {status}")
        return [int(v) for v in data]

    def subjects(self) -> list[str]:
        status, data = self._call("GET", "/subjects")
        if status != 200 or not isinstance(data, list):
            raise RegistryError(f"unexpected answer for GET /subjects: HTTP {status}")
        return sorted(str(s) for s in data)

    def compatibility(self, subject: str | None = None) -> CompatibilityLevel:
        path = f"/config/{self._s(subject)}?defaultToGlobal=true" if subject else "/config"
        status, data = self._call("GET", path)
        if status == 404 and subject:
            return self.compatibility(None)
        level = data.get("compatibilityLevel") if isinstance(data, dict) else None
        try:
            return CompatibilityLevel(str(level))
        except ValueError:
            raise RegistryError(
                f"unexpected compatibility answer: HTTP {status} {data!r:.200}"
            ) from None

    def set_compatibility(self, level: CompatibilityLevel, subject: str | None = None) -> None:
        path = f"/config/{self._s(subject)}" if subject else "/config"
        status, data = self._call("PUT", path, {"compatibility": CompatibilityLevel(level).value})
        if status != 200:
            raise RegistryError(f"cannot set compatibility: HTTP {status} {_message(data)}")

    def test_compatibility(self, subject: str, schema: str) -> list[str]:
        status, data = self._call(
            "POST",
            f"/compatibility/subjects/{self._s(subject)}/versions?verbose=true",
            {"schema": schema},
        )
        if status == 404:
            return []
        if status == 422:
            raise InvalidSchemaError(
                f"registry refused the schema for '{subject}': {_message(data)}"
            )
        if status != 200 or not isinstance(data, dict):
            raise RegistryError(f"unexpected compatibility answer for '{subject}': HTTP {status}")
        if data.get("is_compatible", False):
            return []
        messages = data.get("messages") or ["incompatible (the registry gave no details)"]
        return [str(m) for m in messages]

    def _id(self, status: int, data: Any, what: str) -> int:
        if status != 200 or not isinstance(data, dict) or not isinstance(data.get("id"), int):
            raise RegistryError(f"schema registry could not {what}: HTTP {status} {_message(data)}")
        schema_id: int = data["id"]
        return schema_id


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True).encode()


def _message(data: Any) -> str:
    if isinstance(data, dict):
        return str(data.get("message", data))[:500]
    return str(data)[:500]


def register_missing(
    bootstrap_servers: str,
    pairs: Sequence[tuple[str, str]],
    *,
    prefix: str = "",
    topic: str | None = None,
    attempts: int = 8,
) -> list[str]:
    """Register the (subject, schema text) *pairs* the Kafka-topic registry of the deployment
    *prefix* does not hold yet (:func:`register_schemas`); returns the subjects registered.

    Only the operator may write the schemas topic (its ACLs): a service whose schemas are all
    registered therefore never opens a writer.
    """
    topic = schemas_topic(prefix, topic)
    with KafkaSchemaRegistry(bootstrap_servers, topic=topic) as reader:
        missing = _missing(reader, pairs)
    if missing:
        register_schemas(bootstrap_servers, missing, topic=topic, attempts=attempts)
    return [subject for subject, _ in missing]


def register_schemas(
    bootstrap_servers: str,
    pairs: Sequence[tuple[str, str]],
    *,
    prefix: str = "",
    topic: str | None = None,
    attempts: int = 8,
) -> None:
    """Register (subject, schema text) *pairs* through a short-lived writer on the registry of
    the deployment *prefix*.

    The registry has one writer at a time (a transactional id), so a writer opened elsewhere
    in the same deployment at the same moment fences this one: retry with jitter, then give up
    with :class:`RegistryError`."""
    topic = schemas_topic(prefix, topic)
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            with KafkaSchemaRegistry(bootstrap_servers, topic=topic, writer=True) as writer:
                for subject, text in pairs:
                    writer.register(subject, text)
            return
        except RegistryError as exc:
            last = exc
            time.sleep(min(2.0, 0.2 * 2**attempt) * (0.5 + random.random()))
    raise RegistryError(
        f"could not register {len(pairs)} schema(s) after {attempts} attempts: {last}",
        hint="Only the operator's principal may write the schemas topic: have the operator"
        " register them first (a service under its own principal only reads them).",
    ) from last


def lookup_ids(
    registry: SchemaRegistry, pairs: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """The ids of the (subject, schema) *pairs* *registry* holds (those it does not hold are
    left out): :meth:`KafkaSchemaRegistry.lookup_many`, else :meth:`SchemaRegistry.lookup` of
    each."""
    if isinstance(registry, KafkaSchemaRegistry):
        return registry.lookup_many(pairs)
    found: dict[tuple[str, str], int] = {}
    for subject, text in pairs:
        with contextlib.suppress(UnknownSchemaError):
            found[(subject, text)] = registry.lookup(subject, text)
    return found


def _missing(
    registry: KafkaSchemaRegistry, pairs: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The *pairs* *registry* does not hold (:meth:`KafkaSchemaRegistry.lookup_many`)."""
    found = registry.lookup_many(pairs)
    return [pair for pair in pairs if pair not in found]


# --------------------------------------------------------------------------------------------
# Upgrading a prefixed deployment from the shared registry topic (module docstring)

LEGACY_SCHEMAS_TOPIC: Final = SCHEMAS_TOPIC
"""Where every deployment registered its schemas before the registry followed the prefix."""


@dataclass(frozen=True, slots=True)
class MigrationPlan:
    """What copying one prefix's subjects from *source* to *target* does (pure, see
    :func:`plan_migration`); ``conflicts`` non-empty means nothing may be written."""

    source: str
    target: str
    copies: tuple[RegisteredSchema, ...]
    """Entries the target lacks, to write with their ids and versions."""
    present: tuple[RegisteredSchema, ...]
    """Entries the target already holds alike (same subject, version, id and schema)."""
    levels: tuple[tuple[str, CompatibilityLevel], ...]
    """Subject compatibility levels to set in the target (the source's, where they differ)."""
    conflicts: tuple[str, ...]

    @property
    def subjects(self) -> list[str]:
        return sorted({e.subject for e in (*self.copies, *self.present)})

    def raise_for_conflicts(self) -> None:
        if self.conflicts:
            shown = "; ".join(self.conflicts[:10])
            more = f" (and {len(self.conflicts) - 10} more)" if len(self.conflicts) > 10 else ""
            raise RegistryError(
                f"cannot copy the schemas of '{self.source}' into '{self.target}' keeping their"
                f" ids: {shown}{more}; nothing was copied",
                hint=f"'{self.target}' already holds other schemas under those ids or versions"
                " (a service registered there before the upgrade). Records written with the new"
                " ids must be kept readable: ask for help before deleting anything; if nothing"
                f" was written with them, delete '{self.target}' and run the copy again.",
            )


def plan_migration(
    source_entries: Sequence[RegisteredSchema],
    target_entries: Sequence[RegisteredSchema],
    *,
    levels: dict[str | None, CompatibilityLevel] | None = None,
    target_levels: dict[str | None, CompatibilityLevel] | None = None,
    source: str = LEGACY_SCHEMAS_TOPIC,
    target: str = "",
) -> MigrationPlan:
    """Plan copying *source_entries* (already chosen: one prefix's subjects) into a registry
    holding *target_entries*, keeping each entry's id and version.

    An entry the target holds alike is ``present`` (so running the copy again does nothing). A
    conflict is (1) the target's same subject and version with another id or schema, or (2) the
    entry's id taken in the target by another schema; each names the subject, version and id.
    Subject-level compatibility *levels* of the source are copied where the target differs."""
    by_version = {(e.subject, e.version): e for e in target_entries}
    by_id: dict[int, RegisteredSchema] = {}
    for entry in target_entries:
        by_id.setdefault(entry.schema_id, entry)
    copies: list[RegisteredSchema] = []
    present: list[RegisteredSchema] = []
    conflicts: list[str] = []
    for entry in sorted(source_entries, key=lambda e: (e.subject, e.version)):
        where = f"subject '{entry.subject}' version {entry.version} (id {entry.schema_id})"
        held = by_version.get((entry.subject, entry.version))
        same_text = normalized(entry.schema)
        if held is not None:
            if held.schema_id == entry.schema_id and normalized(held.schema) == same_text:
                present.append(entry)
            else:
                conflicts.append(
                    f"{where}: the target holds this version with id {held.schema_id}"
                    + ("" if normalized(held.schema) == same_text else " and another schema")
                )
            continue
        taken = by_id.get(entry.schema_id)
        if taken is not None and normalized(taken.schema) != same_text:
            conflicts.append(
                f"{where}: id {entry.schema_id} is taken in the target by another schema"
                f" (subject '{taken.subject}' version {taken.version})"
            )
            continue
        copies.append(entry)
        by_version[(entry.subject, entry.version)] = entry
        by_id.setdefault(entry.schema_id, entry)
    subjects = {e.subject for e in source_entries}
    wanted = {s: level for s, level in (levels or {}).items() if s is not None and s in subjects}
    have = target_levels or {}
    to_set = tuple(sorted((s, lv) for s, lv in wanted.items() if have.get(s) != lv))
    return MigrationPlan(source, target, tuple(copies), tuple(present), to_set, tuple(conflicts))


def _topic_exists(bootstrap_servers: str, topic: str) -> bool:
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    from pcf_exchange.contracts.kafka_client import kafka_python_kwargs

    try:
        consumer = KafkaConsumer(
            **kafka_python_kwargs(), bootstrap_servers=bootstrap_servers, client_id="pcfx-topics"
        )
    except KafkaError as exc:
        raise RegistryError(f"cannot reach the cluster at {bootstrap_servers}: {exc}") from exc
    try:
        return topic in consumer.topics()
    except KafkaError as exc:
        raise RegistryError(f"cannot list the topics at {bootstrap_servers}: {exc}") from exc
    finally:
        consumer.close()


def require_prefix(prefix: str) -> None:
    """A migration needs the deployment's prefix (:class:`RegistryError` without one)."""
    if not prefix:
        raise RegistryError(
            "no topic prefix: a deployment without one already uses 'pcf._schemas'",
            hint="Set PCFX_TOPIC_PREFIX (or --topic-prefix) to the deployment's prefix.",
        )


def migrate_schemas(
    bootstrap_servers: str,
    prefix: str,
    *,
    source_topic: str = LEGACY_SCHEMAS_TOPIC,
    dry_run: bool = False,
) -> MigrationPlan:
    """Copy the subjects of the deployment *prefix* (those named ``<prefix>…``) from
    *source_topic* into the deployment's registry topic, ids and versions kept; the plan.

    Idempotent (what is there alike is left); ``dry_run`` plans without writing. Refuses
    (:class:`RegistryError`, nothing written) on any conflict, an empty prefix, the source being
    the target, or a source topic that does not exist. Only reads the source topic."""
    require_prefix(prefix)
    target_topic = schemas_topic(prefix)
    if source_topic == target_topic:
        raise RegistryError(f"the source '{source_topic}' is the deployment's own registry topic")
    if not _topic_exists(bootstrap_servers, source_topic):
        raise RegistryError(
            f"the source registry topic '{source_topic}' does not exist at {bootstrap_servers}",
            hint="Name the topic the deployment used before the upgrade with --from.",
        )
    with KafkaSchemaRegistry(bootstrap_servers, topic=source_topic, create_topic=False) as old:
        chosen = [e for e in old.entries() if e.subject.startswith(prefix)]
        levels = old.configs()
    with KafkaSchemaRegistry(bootstrap_servers, topic=target_topic, writer=not dry_run) as new:
        plan = plan_migration(
            chosen,
            new.entries(),
            levels=levels,
            target_levels=new.configs(),
            source=source_topic,
            target=target_topic,
        )
        plan.raise_for_conflicts()
        if not dry_run and (plan.copies or plan.levels):
            new.import_plan(plan)
    return plan


def stranded_subjects(
    bootstrap_servers: str,
    prefix: str,
    *,
    registry: KafkaSchemaRegistry | None = None,
    source_topic: str = LEGACY_SCHEMAS_TOPIC,
) -> list[str]:
    """The subjects of deployment *prefix* left in *source_topic* while its own registry topic
    (*registry*, or read here) holds none: the deployment has not been migrated. Empty when
    there is no prefix, the prefixed registry holds subjects, or the old topic does not exist."""
    if not prefix or schemas_topic(prefix) == source_topic:
        return []
    if registry is not None:
        if registry.subjects():
            return []
    elif _topic_exists(bootstrap_servers, schemas_topic(prefix)):
        with KafkaSchemaRegistry(bootstrap_servers, prefix=prefix, create_topic=False) as own:
            if own.subjects():
                return []
    if not _topic_exists(bootstrap_servers, source_topic):
        return []
    with KafkaSchemaRegistry(bootstrap_servers, topic=source_topic, create_topic=False) as old:
        return [s for s in old.subjects() if s.startswith(prefix)]


def require_migrated(
    bootstrap_servers: str,
    prefix: str,
    *,
    registry: KafkaSchemaRegistry | None = None,
    source_topic: str = LEGACY_SCHEMAS_TOPIC,
) -> None:
    """Refuse to start a service of deployment *prefix* that was not migrated
    (:func:`stranded_subjects`): :class:`RegistryError` with the command to run. A cluster that
    cannot be asked is no reason to refuse (the service's own start-up retry deals with it):
    the check is skipped with a warning."""
    try:
        stranded = stranded_subjects(
            bootstrap_servers, prefix, registry=registry, source_topic=source_topic
        )
    except RegistryError as exc:
        log.warning("could not check for schemas left in '%s': %s", source_topic, exc)
        return
    if stranded:
        raise RegistryError(
            f"the registry topic '{schemas_topic(prefix)}' is empty, but '{source_topic}'"
            f" holds {len(stranded)} subject(s) of prefix '{prefix}' (e.g. '{stranded[0]}'): this"
            " deployment's records carry those schema ids",
            hint=f"Copy them first, ids kept: PCFX_TOPIC_PREFIX={prefix} pcfx schemas migrate"
            f" --from {source_topic} (--dry-run shows what it copies).",
        )
