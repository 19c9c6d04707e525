"""How every Kafka client of pcf-exchange connects: one set of security settings, four renderings.

The standard Kafka client security settings are read once per process, in this order (later
wins):

1. a Java-style client properties file named by ``KAFKA_CLIENT_CONFIG`` (the file Kafka's own
   tools take with ``--command-config``; ``pcfx broker start --secure`` and ``pcfx tenants add``
   write one);
2. the single environment variables ``KAFKA_SECURITY_PROTOCOL`` (PLAINTEXT, SSL, SASL_PLAINTEXT,
   SASL_SSL), ``KAFKA_SASL_MECHANISM`` (SCRAM-SHA-512, SCRAM-SHA-256, PLAIN),
   ``KAFKA_SASL_USERNAME``, ``KAFKA_SASL_PASSWORD``, ``KAFKA_SSL_CA_LOCATION``,
   ``KAFKA_SSL_CERTIFICATE_LOCATION``, ``KAFKA_SSL_KEY_LOCATION``, ``KAFKA_SSL_KEY_PASSWORD``;
3. the ``--kafka-config FILE`` option of ``pcfx`` (:func:`use_config_file`): it replaces the
   environment's settings (and ``KAFKA_BOOTSTRAP_SERVERS``, when the file has
   ``bootstrap.servers``) for this process and the processes it starts.

:func:`client_settings` returns them as a :class:`KafkaClientSettings`, which renders them for
each client library the project uses: :meth:`~KafkaClientSettings.librdkafka` (confluent-kafka),
:meth:`~KafkaClientSettings.kafka_python`, :meth:`~KafkaClientSettings.aiokafka` and
:meth:`~KafkaClientSettings.faust_credentials`. Call sites merge the rendering into the config
they already build (``{**librdkafka_config(), "bootstrap.servers": ...}``), so no call site
needs a new parameter. Secrets never appear in ``repr``, logs or :meth:`~KafkaClientSettings.
redacted`.

:func:`read_to_end` is the one way the project reads a topic (or some partitions) from its start,
or from given offsets, to its current end: the key directory, the factor catalogue, the
certification registry, the gateway's catch-up and audit readers and ``pcfx results`` all use it.
"""

from __future__ import annotations

import logging
import os
import re
import ssl
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from pcf_exchange.contracts.errors import BrokerError

__all__ = [
    "CONFIG_ENV",
    "ENV_VARS",
    "MECHANISMS",
    "PROTOCOLS",
    "KafkaClientSettings",
    "aiokafka_kwargs",
    "client_settings",
    "faust_credentials",
    "kafka_python_kwargs",
    "librdkafka_config",
    "read_properties",
    "read_to_end",
    "reset",
    "topic_exists",
    "use_config_file",
    "write_client_properties",
]

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
CONFIG_ENV = "KAFKA_CLIENT_CONFIG"
ENV_VARS: Mapping[str, str] = {
    "KAFKA_SECURITY_PROTOCOL": "security_protocol",
    "KAFKA_SASL_MECHANISM": "sasl_mechanism",
    "KAFKA_SASL_USERNAME": "username",
    "KAFKA_SASL_PASSWORD": "password",
    "KAFKA_SSL_CA_LOCATION": "ssl_ca_location",
    "KAFKA_SSL_CERTIFICATE_LOCATION": "ssl_certificate_location",
    "KAFKA_SSL_KEY_LOCATION": "ssl_key_location",
    "KAFKA_SSL_KEY_PASSWORD": "ssl_key_password",
}
"""Environment variable -> :class:`KafkaClientSettings` field."""

_SECRET = "********"


@dataclass(frozen=True)
class KafkaClientSettings:
    """The security settings of one Kafka principal (the defaults: plaintext, anonymous)."""

    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: str | None = field(default=None, repr=False)
    ssl_check_hostname: bool = True
    bootstrap_servers: str | None = None
    """``bootstrap.servers`` of the properties file, if it named one (else ``None``)."""
    source: str = "defaults"
    """Where the settings came from, for messages (never a secret)."""

    # -- checks

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in {"SSL", "SASL_SSL"}

    def validated(self) -> KafkaClientSettings:
        """These settings, or a :class:`BrokerError` naming the setting that is wrong."""
        where = f" (from {self.source})"
        if self.security_protocol not in PROTOCOLS:
            raise BrokerError(
                f"'security.protocol' must be one of {', '.join(PROTOCOLS)}"
                f" (got {self.security_protocol!r}){where}",
                hint="Set KAFKA_SECURITY_PROTOCOL or security.protocol in the client config file.",
            )
        if self.uses_sasl:
            if self.sasl_mechanism not in MECHANISMS:
                raise BrokerError(
                    f"'sasl.mechanism' must be one of {', '.join(MECHANISMS)} with"
                    f" {self.security_protocol} (got {self.sasl_mechanism!r}){where}",
                    hint="Set KAFKA_SASL_MECHANISM=SCRAM-SHA-512 (what 'pcfx broker start"
                    " --secure' accepts).",
                )
            for name, value in (("sasl.username", self.username), ("sasl.password", self.password)):
                if not value:
                    raise BrokerError(
                        f"'{name}' is required with {self.security_protocol} (got nothing){where}",
                        hint="Use the client properties file 'pcfx tenants add' wrote"
                        " (--kafka-config FILE or KAFKA_CLIENT_CONFIG=FILE).",
                    )
        for name, path in (
            ("ssl.ca.location", self.ssl_ca_location),
            ("ssl.certificate.location", self.ssl_certificate_location),
            ("ssl.key.location", self.ssl_key_location),
        ):
            if path and not Path(path).is_file():
                raise BrokerError(
                    f"'{name}' must name a readable PEM file (got {path!r}, which does not"
                    f" exist){where}",
                    hint="'pcfx broker status --json' shows the local secure broker's CA file.",
                )
        if bool(self.ssl_certificate_location) != bool(self.ssl_key_location):
            raise BrokerError(
                "'ssl.certificate.location' and 'ssl.key.location' go together (got only"
                f" one){where}",
                hint="Give both the client certificate and its key, or neither.",
            )
        return self

    def redacted(self) -> dict[str, Any]:
        """The settings for display: passwords replaced by asterisks."""
        shown: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in {"password", "ssl_key_password"} and value:
                value = _SECRET
            shown[f.name] = value
        return shown

    # -- renderings

    def librdkafka(self) -> dict[str, Any]:
        """confluent-kafka / librdkafka properties (merge into a Producer/Consumer/Admin config)."""
        config: dict[str, Any] = {"security.protocol": self.security_protocol.lower()}
        if self.uses_sasl:
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = self.username
            config["sasl.password"] = self.password
        if self.uses_tls:
            if self.ssl_ca_location:
                config["ssl.ca.location"] = self.ssl_ca_location
            if self.ssl_certificate_location:
                config["ssl.certificate.location"] = self.ssl_certificate_location
                config["ssl.key.location"] = self.ssl_key_location
            if self.ssl_key_password:
                config["ssl.key.password"] = self.ssl_key_password
            config["ssl.endpoint.identification.algorithm"] = (
                "https" if self.ssl_check_hostname else "none"
            )
        return config

    def kafka_python(self) -> dict[str, Any]:
        """kafka-python keyword arguments (KafkaConsumer, KafkaProducer, KafkaAdminClient)."""
        kwargs: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.uses_sasl:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.username
            kwargs["sasl_plain_password"] = self.password
        if self.uses_tls:
            kwargs["ssl_check_hostname"] = self.ssl_check_hostname
            if self.ssl_ca_location:
                kwargs["ssl_cafile"] = self.ssl_ca_location
            if self.ssl_certificate_location:
                kwargs["ssl_certfile"] = self.ssl_certificate_location
                kwargs["ssl_keyfile"] = self.ssl_key_location
            if self.ssl_key_password:
                kwargs["ssl_password"] = self.ssl_key_password
        return kwargs

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client TLS context (CA, optional client certificate), or ``None`` without TLS."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=self.ssl_ca_location or None
        )
        context.check_hostname = self.ssl_check_hostname
        if self.ssl_certificate_location:
            context.load_cert_chain(
                self.ssl_certificate_location,
                self.ssl_key_location,
                password=self.ssl_key_password,
            )
        return context

    def aiokafka(self) -> dict[str, Any]:
        """aiokafka keyword arguments (AIOKafkaConsumer/Producer/AdminClient)."""
        kwargs: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.uses_sasl:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.username
            kwargs["sasl_plain_password"] = self.password
        context = self.ssl_context()
        if context is not None:
            kwargs["ssl_context"] = context
        return kwargs

    def faust_credentials(self) -> Any:
        """faust's ``broker_credentials`` (``None`` for plaintext, anonymous)."""
        import faust

        context = self.ssl_context()
        if self.uses_sasl:
            return faust.SASLCredentials(
                username=self.username,
                password=self.password,
                ssl_context=context,
                mechanism=self.sasl_mechanism,
            )
        if context is not None:
            return faust.SSLCredentials(context)
        return None

    # -- sources

    @classmethod
    def from_properties(cls, path: Path | str) -> KafkaClientSettings:
        """Settings from a Java client properties file (``--command-config`` style).

        Understands ``security.protocol``, ``sasl.mechanism``, ``sasl.jaas.config`` (the
        ``username="…" password="…"`` of a Scram/Plain login module), librdkafka's
        ``sasl.username``/``sasl.password``, ``ssl.ca.location`` or a PEM
        ``ssl.truststore.location``, ``ssl.certificate.location``/``ssl.key.location``,
        ``ssl.key.password``, ``ssl.endpoint.identification.algorithm`` and ``bootstrap.servers``.
        """
        props = read_properties(path)
        values: dict[str, Any] = {"source": f"client config {path}"}
        if "security.protocol" in props:
            values["security_protocol"] = props["security.protocol"].upper()
        if "sasl.mechanism" in props:
            values["sasl_mechanism"] = props["sasl.mechanism"].upper()
        jaas = props.get("sasl.jaas.config", "")
        for key, name in (("username", "username"), ("password", "password")):
            match = re.search(rf'\b{key}\s*=\s*"((?:[^"\\]|\\.)*)"', jaas)
            if match:
                values[name] = match.group(1).replace('\\"', '"').replace("\\\\", "\\")
        for key, name in (("sasl.username", "username"), ("sasl.password", "password")):
            if key in props:
                values[name] = props[key]
        truststore_pem = props.get("ssl.truststore.type", "").upper() == "PEM"
        if "ssl.ca.location" in props:
            values["ssl_ca_location"] = props["ssl.ca.location"]
        elif truststore_pem and "ssl.truststore.location" in props:
            values["ssl_ca_location"] = props["ssl.truststore.location"]
        for key, name in (
            ("ssl.certificate.location", "ssl_certificate_location"),
            ("ssl.key.location", "ssl_key_location"),
            ("ssl.key.password", "ssl_key_password"),
            ("bootstrap.servers", "bootstrap_servers"),
        ):
            if key in props:
                values[name] = props[key]
        algorithm = props.get("ssl.endpoint.identification.algorithm")
        if algorithm is not None:
            values["ssl_check_hostname"] = algorithm.strip().lower() not in {"", "none"}
        base = Path(path).resolve().parent
        for name in ("ssl_ca_location", "ssl_certificate_location", "ssl_key_location"):
            if name in values and not Path(values[name]).is_absolute():
                values[name] = str(base / values[name])
        return cls(**values)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaClientSettings:
        """Settings from ``KAFKA_CLIENT_CONFIG`` (a file), then the single ``KAFKA_*`` variables."""
        env = os.environ if env is None else env
        settings = cls()
        config_file = env.get(CONFIG_ENV, "").strip()
        if config_file:
            settings = cls.from_properties(config_file)
        overrides: dict[str, Any] = {}
        for var, name in ENV_VARS.items():
            value = env.get(var, "").strip()
            if value:
                overrides[name] = (
                    value.upper() if var.endswith(("PROTOCOL", "MECHANISM")) else value
                )
        if overrides:
            source = "environment" if not config_file else f"{settings.source} and environment"
            settings = replace(settings, **overrides, source=source)
        return settings.validated()


def read_properties(path: Path | str) -> dict[str, str]:
    """A Java ``.properties`` file as a dict (``=``/``:`` separators, ``#``/``!`` comments,
    backslash line continuations); a :class:`BrokerError` naming the file if it cannot be read."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise BrokerError(
            f"the Kafka client config file {str(path)!r} cannot be read ({exc.strerror})",
            hint="Pass the file 'pcfx tenants add' or 'pcfx broker start --secure' wrote.",
        ) from exc
    props: dict[str, str] = {}
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        pending = ""
        if not line or line[0] in "#!":
            continue
        if line.endswith("\\") and not line.endswith("\\\\"):
            pending = line[:-1]
            continue
        match = re.match(r"([^=:\s]+)\s*[=:\s]\s*(.*)$", line)
        if match:
            props[match.group(1)] = match.group(2).strip()
    return props


def write_client_properties(
    path: Path, settings: KafkaClientSettings, *, bootstrap: str | None = None
) -> Path:
    """Write *settings* as a client properties file both Kafka's Java tools (``--command-config``)
    and :meth:`KafkaClientSettings.from_properties` read, with mode 0600 (it holds a password).
    The file is created with that mode: the password is never on disk readable by others."""
    lines = [f"security.protocol={settings.security_protocol}"]
    if bootstrap or settings.bootstrap_servers:
        lines.insert(0, f"bootstrap.servers={bootstrap or settings.bootstrap_servers}")
    if settings.uses_sasl:
        module = (
            "org.apache.kafka.common.security.plain.PlainLoginModule"
            if settings.sasl_mechanism == "PLAIN"
            else "org.apache.kafka.common.security.scram.ScramLoginModule"
        )
        user = (settings.username or "").replace("\\", "\\\\").replace('"', '\\"')
        secret = (settings.password or "").replace("\\", "\\\\").replace('"', '\\"')
        lines += [
            f"sasl.mechanism={settings.sasl_mechanism}",
            f'sasl.jaas.config={module} required username="{user}" password="{secret}";',
        ]
    if settings.uses_tls and settings.ssl_ca_location:
        lines += ["ssl.truststore.type=PEM", f"ssl.truststore.location={settings.ssl_ca_location}"]
    if settings.ssl_certificate_location:
        lines += [
            f"ssl.certificate.location={settings.ssl_certificate_location}",
            f"ssl.key.location={settings.ssl_key_location}",
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("# Kafka client settings (pcf-exchange); holds a password: keep it 0600\n")
        out.write("\n".join(lines) + "\n")
    return path


# --- the process's settings ---------------------------------------------------------------------

_cached: KafkaClientSettings | None = None


def client_settings() -> KafkaClientSettings:
    """This process's settings (read from the environment once; see the module docstring)."""
    global _cached  # noqa: PLW0603 - one read per process, reset by use_config_file()/reset()
    if _cached is None:
        _cached = KafkaClientSettings.from_env()
    return _cached


def reset() -> None:
    """Forget the settings read so far (the next :func:`client_settings` reads them again)."""
    global _cached  # noqa: PLW0603
    _cached = None


def use_config_file(path: Path | str | None) -> KafkaClientSettings:
    """Make *path* this process's client config (``pcfx --kafka-config``): it replaces the
    environment's ``KAFKA_*`` security variables, here and in every process started after, and
    its ``bootstrap.servers`` (if it names one) replaces ``KAFKA_BOOTSTRAP_SERVERS``."""
    if path is not None:
        settings = KafkaClientSettings.from_properties(path).validated()
        for var in ENV_VARS:
            os.environ.pop(var, None)
        os.environ[CONFIG_ENV] = str(Path(path).resolve())
        if settings.bootstrap_servers:  # the file given on the command line names its cluster
            os.environ["KAFKA_BOOTSTRAP_SERVERS"] = settings.bootstrap_servers
    reset()
    return client_settings()


def librdkafka_config(**extra: Any) -> dict[str, Any]:
    """The process's settings for confluent-kafka, with *extra* properties on top; librdkafka's
    own log lines go to the ``librdkafka`` Python logger (so a service's log format applies to
    them, :mod:`contracts.observability`) instead of raw to stderr."""
    return {**client_settings().librdkafka(), "logger": _LIBRDKAFKA_LOG, **extra}


_LIBRDKAFKA_LOG: Final = logging.getLogger("librdkafka")


def kafka_python_kwargs(**extra: Any) -> dict[str, Any]:
    """The process's settings for kafka-python, with *extra* keyword arguments on top."""
    return {**client_settings().kafka_python(), **extra}


def aiokafka_kwargs(**extra: Any) -> dict[str, Any]:
    """The process's settings for aiokafka, with *extra* keyword arguments on top."""
    return {**client_settings().aiokafka(), **extra}


def faust_credentials() -> Any:
    """The process's settings as faust's ``broker_credentials`` (``None``: plaintext)."""
    return client_settings().faust_credentials()


OFFSET_BEGINNING = -2
"""librdkafka's logical offset for a partition's first record."""


def read_to_end(
    bootstrap: str,
    source: str | Sequence[tuple[str, int]],
    *,
    start: Mapping[tuple[str, int], int] | None = None,
    timeout_s: float = 60.0,
    group_prefix: str = "pcfx-reader-",
    batch: int = 2000,
    **extra: Any,
) -> Iterator[Message]:
    """Every committed record of *source* from its start (or the offsets in *start*) to its
    current end, in append order per partition.

    *source* is a topic name (all its partitions; a topic that does not exist reads as empty) or
    a list of ``(topic, partition)``. The end is the end-of-partition event librdkafka reports on
    reaching the last stable offset (readers are ``read_committed``: an aborted transaction's
    records are never seen and an open one is never half-read), so an empty partition ends at
    once and no watermark round trip is needed. Tombstones (``value() is None``) are yielded too:
    the caller decides what they mean. The short-lived consumer's group id is *group_prefix*
    plus a random suffix (the ACLs of :mod:`contracts.acl` grant readers by that prefix); it
    assigns partitions and never commits. *extra* librdkafka properties go on top (e.g. a
    ``logger``).

    Raises :class:`BrokerError` when the metadata cannot be read or a partition is not read to
    its end within *timeout_s* (naming the partitions still open).
    """
    config = librdkafka_config(
        **{
            "bootstrap.servers": bootstrap,
            "group.id": f"{group_prefix}{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 10,
            "fetch.queue.backoff.ms": 10,
        },
        **extra,
    )
    consumer = Consumer(config)
    try:
        if isinstance(source, str):
            partitions = _partitions_of(consumer, bootstrap, source, timeout_s)
        else:
            partitions = list(source)
        if not partitions:
            return
        offsets = start or {}
        consumer.assign(
            [TopicPartition(t, p, offsets.get((t, p), OFFSET_BEGINNING)) for t, p in partitions]
        )
        waiting = set(partitions)
        deadline = time.monotonic() + timeout_s
        while waiting:
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"could not read {sorted(waiting)} to the end within {timeout_s:.0f} s"
                )
            for message in consumer.consume(num_messages=batch, timeout=0.05):
                error = message.error()
                if error is not None:
                    if error.code() in (
                        KafkaError._PARTITION_EOF,
                        KafkaError.UNKNOWN_TOPIC_OR_PART,
                    ):
                        waiting.discard((message.topic() or "", message.partition() or 0))
                        continue
                    raise BrokerError(f"reading {message.topic()}: {error.str()}")
                yield message
    except KafkaException as exc:
        raise BrokerError(f"reading {source!r} at {bootstrap}: {exc}") from exc
    finally:
        consumer.close()


def _partitions_of(
    consumer: Consumer, bootstrap: str, topic: str, timeout_s: float
) -> list[tuple[str, int]]:
    """``(topic, partition)`` for every partition of *topic*; none when it does not exist."""
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s)
    except KafkaException as exc:
        raise BrokerError(f"cannot read '{topic}' at {bootstrap}: {exc.args[0]}") from exc
    described = metadata.topics.get(topic)
    if described is None or described.error is not None:
        return []
    return [(topic, p) for p in sorted(described.partitions)]


def topic_exists(bootstrap: str, topic: str, timeout_s: float = 15.0) -> bool:
    """Whether *topic* exists (has partitions) on the cluster at *bootstrap* (a metadata request
    only: no consumer group is involved)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(librdkafka_config(**{"bootstrap.servers": bootstrap}))
    try:
        metadata = admin.list_topics(topic=topic, timeout=timeout_s)
    except KafkaException as exc:
        raise BrokerError(f"cannot read '{topic}' at {bootstrap}: {exc.args[0]}") from exc
    described = metadata.topics.get(topic)
    return described is not None and described.error is None and bool(described.partitions)
