"""Certification on Kafka: publish and read the signed statements, issue certificates, watch for
stale ones. The decisions are in :mod:`contracts.certification` (pure); this is the I/O edge.

**Wire form**: :class:`contracts.certification.StatementSerde` (one Avro envelope type for
``pcf.bodies`` and ``pcf.certificates``, the signed canonical JSON inside).

**Time.** Both topics are created with ``LogAppendTime`` (``contracts/topics.py``); a record
whose timestamp is not the broker's append time is refused when read
(:class:`~contracts.errors.InfrastructureError` naming the topic), since a body's validity and a
blacklisting are judged on it.

**Current footprints** come from ``pcf.declared`` (a supplier's) and ``pcf.products`` (a
roll-up's): the last appended footprint per product id that is not ``Deprecated`` (a superseded
version is republished as deprecated after its successor), hashed with
:func:`contracts.certification.footprint_digest`. They are decoded, not verified: a record the
streams refused can make a certificate look stale (fail safe: a label then shows *stale*, never
*valid* by mistake).

**The staleness watcher** (:func:`watch_once`, ``pcfx certificates watch``) is a plain consumer
the operator runs, not a faust agent: the decision needs every certificate and every product's
latest footprint at once (a global view, small: one row per certificate), while the streams
partition by product. Each pass reads the topics to their end, folds them
(:meth:`~contracts.certification.CertRegistry.stale` decides), and publishes one operator-signed
:class:`~contracts.certification.StaleNotice` per (certificate, superseding footprint) to
``pcf.certificates``, where the holder and the body read it. The notices already on the topic
are part of the fold, so a restart or a second pass publishes nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from confluent_kafka import (
    TIMESTAMP_LOG_APPEND_TIME,
    KafkaException,
    Producer,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pcf_exchange.contracts import (
    AvroSerde,
    PcfError,
    ProductFootprint,
    RolledUpFootprint,
    SignedFootprint,
    parse_footprint,
    to_pact_json,
)
from pcf_exchange.contracts.certification import (
    CATALOGUE,
    Certificate,
    CertRegistry,
    CertUpdate,
    CurrentFootprint,
    SignedStatement,
    StaleNotice,
    StatementSerde,
    footprint_digest,
    sign_statement,
)
from pcf_exchange.contracts.errors import (
    BrokerError,
    InfrastructureError,
    ValidationFailed,
    Violation,
)
from pcf_exchange.contracts.kafka_client import librdkafka_config, read_to_end
from pcf_exchange.contracts.keyfiles import key_id_of
from pcf_exchange.contracts.pcr import PackSet, PcrOutcome, check_footprint, default_packs
from pcf_exchange.contracts.topics import TOPICS, TopicNames, ensure_topics
from pcf_exchange.producers.delivery import KAFKA_LOGGER

__all__ = [
    "CertTopics",
    "Exchange",
    "WatchPass",
    "certificate_from_footprint",
    "ensure_cert_topics",
    "publish",
    "read_exchange",
    "watch_once",
]


@dataclass(frozen=True)
class CertTopics:
    """The certification topics of one deployment (``prefix`` as ``PCFX_TOPIC_PREFIX``)."""

    prefix: str = ""

    @property
    def bodies(self) -> str:
        return TopicNames(self.prefix).of("pcf.bodies")

    @property
    def certificates(self) -> str:
        return TopicNames(self.prefix).of("pcf.certificates")

    @property
    def declared(self) -> str:
        return TopicNames(self.prefix).declared

    @property
    def products(self) -> str:
        return TopicNames(self.prefix).products


def ensure_cert_topics(bootstrap: str, topics: CertTopics, *, create: bool = True) -> list[str]:
    """Create ``pcf.bodies`` and ``pcf.certificates`` with the table's configs (broker clock,
    kept for ever), or refuse to go on if they exist with others."""
    wanted = [
        (topics.bodies, TOPICS["pcf.bodies"], 1),
        (topics.certificates, TOPICS["pcf.certificates"], 1),
    ]
    return ensure_topics(bootstrap, wanted, create=create)


def publish(
    bootstrap: str,
    serde: StatementSerde,
    records: Iterable[tuple[str, str, SignedStatement]],
    *,
    timeout_s: float = 30.0,
) -> int:
    """Send (topic, key, statement) records, waiting until the broker acknowledged every one
    (acks=all); :class:`BrokerError` naming the first failure. Returns how many were sent."""
    producer = Producer(
        librdkafka_config(
            **{
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "logger": KAFKA_LOGGER,
            }
        )
    )
    failures: list[str] = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            failures.append(f"{message.topic()}: {error}")

    count = 0
    for topic, key, signed in records:
        try:
            producer.produce(
                topic, serde.encode(topic, signed), key.encode(), on_delivery=delivered
            )
        except KafkaException as exc:
            raise BrokerError(f"cannot send to '{topic}': {exc}") from exc
        count += 1
    left = producer.flush(timeout_s)
    if left or failures:
        raise BrokerError(
            f"{len(failures) + left} of {count} statement(s) were not acknowledged: "
            + "; ".join(failures or [f"{left} still queued after {timeout_s:.0f} s"]),
        )
    return count


def _read(
    bootstrap: str, topic: str, timeout_s: float, *, broker_clock: bool = True
) -> Iterator[tuple[datetime, bytes]]:
    """(broker append time, value) of every record of *topic* up to its current end, in
    append order per partition; a topic that does not exist reads as empty. *broker_clock*:
    refuse a record not stamped by the broker (the certification topics, whose times decide);
    the footprint topics' times only order a product's versions."""
    for message in read_to_end(
        bootstrap,
        topic,
        timeout_s=timeout_s,
        group_prefix="pcfx-reader-cert-",  # acl.READERS
        logger=KAFKA_LOGGER,
    ):
        kind, millis = message.timestamp()
        if broker_clock and kind != TIMESTAMP_LOG_APPEND_TIME:
            raise InfrastructureError(
                f"topic '{topic}' does not stamp records with the broker's clock (a record at"
                f" offset {message.offset()} carries its producer's time)",
                hint=f"Recreate it with message.timestamp.type=LogAppendTime (kafka-configs.sh"
                f" --alter --entity-type topics --entity-name {topic} --add-config"
                " message.timestamp.type=LogAppendTime).",
            )
        value = message.value()
        if value is not None:
            yield datetime.fromtimestamp(millis / 1000, UTC), value


@dataclass
class Exchange:
    """The certification registry as read from Kafka at one moment, with what was skipped."""

    registry: CertRegistry
    refused: list[tuple[SignedStatement, CertUpdate]]
    """Statements on the topics the fold refused, each with its reason."""
    undecodable: int
    """Values that were not a decodable statement or footprint."""


def read_exchange(
    bootstrap: str,
    serde: StatementSerde,
    operator_keys: Mapping[str, Ed25519PublicKey],
    *,
    topics: CertTopics,
    footprints: AvroSerde | None = None,
    timeout_s: float = 30.0,
) -> Exchange:
    """Fold ``pcf.bodies`` and ``pcf.certificates`` in append-time order (bodies first at equal
    times) and, given a *footprints* serde, the latest footprint per product."""
    undecodable = 0
    statements: list[tuple[datetime, int, SignedStatement]] = []
    for order, topic in enumerate((topics.bodies, topics.certificates)):
        for at, value in _read(bootstrap, topic, timeout_s):
            try:
                statements.append((at, order, serde.decode(value)))
            except PcfError:
                undecodable += 1
    registry = CertRegistry(operator_keys)
    refused: list[tuple[SignedStatement, CertUpdate]] = []
    for at, _, signed in sorted(statements, key=lambda s: (s[0], s[1])):
        update = registry.apply(signed, at)
        if update.error is not None:
            refused.append((signed, update))
    if footprints is not None:
        currents, skipped = _current_footprints(bootstrap, footprints, topics, timeout_s)
        for current in currents:
            registry.observe_footprint(current)
        undecodable += skipped
    return Exchange(registry, refused, undecodable)


def _current_footprints(
    bootstrap: str, serde: AvroSerde, topics: CertTopics, timeout_s: float
) -> tuple[list[CurrentFootprint], int]:
    """The last appended footprint per product on ``pcf.declared`` and ``pcf.products``, and
    how many values did not decode."""
    latest: dict[str, tuple[datetime, CurrentFootprint]] = {}
    skipped = 0
    for topic in (topics.declared, topics.products):
        for at, value in _read(bootstrap, topic, timeout_s, broker_clock=False):
            footprint: ProductFootprint | None
            try:
                if topic == topics.declared:
                    footprint = serde.decode(value, SignedFootprint).footprint
                else:
                    footprint = serde.decode(value, RolledUpFootprint).footprint
            except PcfError:
                skipped += 1
                continue
            if footprint is None:
                continue
            pact = to_pact_json(footprint)
            if pact.get("status") == "Deprecated":
                continue  # the republished old version a new one superseded, never current
            current = CurrentFootprint("", str(pact["id"]), footprint_digest(pact), topic, pact)
            for product_id in pact.get("productIds", []):
                seen = latest.get(product_id)
                if seen is None or seen[0] <= at:
                    latest[product_id] = (at, _for(current, product_id))
    return [current for _, current in latest.values()], skipped


def _for(current: CurrentFootprint, product_id: str) -> CurrentFootprint:
    return replace(current, product_id=product_id)


# --- issuing --------------------------------------------------------------------------------

_UNIT_SYMBOLS: Final[Mapping[str, str]] = {
    "kilowatt hour": "kWh",
    "kilogram": "kg",
    "ton": "t",
    "square meter": "m²",
    "cubic meter": "m³",
    "liter": "l",
    "megajoule": "MJ",
    "meter": "m",
    "ton kilometer": "t·km",
}


def _pcr_problems(
    pact: Mapping[str, Any], pack_id: str, version: str, scope: str | None
) -> list[Violation]:
    """Why a body cannot certify *pact* against PCR pack *pack_id* at *version*: the pack must be
    one the exchange ships (:func:`contracts.pcr.default_packs`), at that version, for the
    certificate's catalogue entry, and the footprint must meet every rule of it (the plausible
    range included: a held figure is not certified)."""
    packs = default_packs()
    pack = packs.get(pack_id)
    if pack is None:
        known = ", ".join(p.id for p in packs)
        return [Violation.of("pcrPackId", "pcr", f"must be a shipped PCR pack ({known})", pack_id)]
    problems: list[Violation] = []
    if version != pack.version:
        problems.append(
            Violation.of(
                "pcrPackVersion", "pcr", f"must be {pack_id}'s version {pack.version}", version
            )
        )
    if scope is not None and pack.pilot_category.value != scope:
        problems.append(
            Violation.of(
                "pcrPackId", "pcr", f"must be a pack of the catalogue entry {scope}", pack_id
            )
        )
    check = check_footprint(pact, PackSet((pack,)))
    if check.outcome not in (PcrOutcome.PASSED, PcrOutcome.NOT_APPLICABLE):
        problems += [finding.violation() for finding in check.findings]
    return problems


def certificate_from_footprint(
    pact_json: Mapping[str, Any],
    *,
    certificate_id: str,
    body_id: str,
    body_key: Ed25519PrivateKey,
    holder: str,
    pcr_pack_id: str,
    pcr_pack_version: str,
    valid_from: datetime,
    valid_until: datetime,
    scope: str | None = None,
    product_id: str | None = None,
) -> Certificate:
    """The certificate a body issues for the PACT v3 footprint it verified (*pact_json*, checked
    by the PACT rules first): bound to its content hash and id, its figure (excluding biogenic
    uptake) per declared unit, the PCR pack and the catalogue entry (*scope*, by default the
    footprint's ``pilotCategory``). :class:`ValidationFailed` names every field that is wrong."""
    footprint = parse_footprint(dict(pact_json))
    pact = to_pact_json(footprint)
    problems: list[Violation] = []
    category = _pilot_category(pact)
    chosen = scope or category
    if chosen is None:
        problems.append(
            Violation.of(
                "extensions[].data.pilotCategory",
                "scope",
                "must name a pilot catalogue entry (or give the scope explicitly)",
            )
        )
    elif chosen not in CATALOGUE:
        problems.append(
            Violation.of("scope", "scope", f"must be one of {', '.join(CATALOGUE)}", chosen)
        )
    elif category is not None and category != chosen:
        problems.append(
            Violation.of(
                "scope", "scope", f"must be the footprint's pilotCategory {category!r}", chosen
            )
        )
    products = list(pact.get("productIds", []))
    product = product_id or (products[0] if products else None)
    if product is None or product not in products:
        problems.append(
            Violation.of(
                "productIds", "product", "must contain the certified product id", product_id
            )
        )
    problems += _pcr_problems(pact, pcr_pack_id, pcr_pack_version, chosen)
    if problems:
        raise ValidationFailed(problems, subject="certificate request")
    assert chosen is not None and product is not None
    pcf = pact["pcf"]
    amount = Decimal(str(pcf["declaredUnitAmount"]))
    unit = str(pcf["declaredUnitOfMeasurement"])
    symbol = _UNIT_SYMBOLS.get(unit, unit)
    per = symbol if amount == 1 else f"{format(amount, 'f')} {symbol}"
    certificate = Certificate(
        certificate_id,
        body_id,
        key_id_of(body_key.public_key()),
        holder,
        product,
        str(pact["id"]),
        footprint_digest(pact),
        chosen,
        pcr_pack_id,
        pcr_pack_version,
        Decimal(str(pcf["pcfExcludingBiogenicUptake"])),
        f"kgCO2e/{per}",
        valid_from.astimezone(UTC),
        valid_until.astimezone(UTC),
    )
    return Certificate.from_json(certificate.to_json())  # the same checks a reader makes


def _pilot_category(pact: Mapping[str, Any]) -> str | None:
    for extension in pact.get("extensions") or []:
        data = extension.get("data") if isinstance(extension, Mapping) else None
        if isinstance(data, Mapping) and isinstance(data.get("pilotCategory"), str):
            return str(data["pilotCategory"])
    return None


# --- the staleness watcher ------------------------------------------------------------------


@dataclass(frozen=True)
class WatchPass:
    """What one pass of the watcher did."""

    certificates: int
    notices: tuple[StaleNotice, ...]
    refused: int


def watch_once(
    bootstrap: str,
    serde: StatementSerde,
    footprints: AvroSerde,
    operator: Ed25519PrivateKey,
    *,
    operator_id: str,
    topics: CertTopics,
    operator_keys: Mapping[str, Ed25519PublicKey] | None = None,
) -> WatchPass:
    """Read, decide (:meth:`CertRegistry.stale`), publish the new stale notices signed by
    *operator* (see the module docstring)."""
    public = operator.public_key()
    keys = dict(operator_keys or {}) | {key_id_of(public): public}
    exchange = read_exchange(bootstrap, serde, keys, topics=topics, footprints=footprints)
    notices = exchange.registry.stale()
    if notices:
        publish(
            bootstrap,
            serde,
            [
                (
                    topics.certificates,
                    n.certificate_id,
                    sign_statement(operator, n, signer_id=operator_id),
                )
                for n in notices
            ],
        )
    return WatchPass(len(exchange.registry.certificates), tuple(notices), len(exchange.refused))
