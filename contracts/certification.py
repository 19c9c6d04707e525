"""Certification bodies and certificates: signed statements, one fold, typed verdicts (pure).

China's carbon-label programme (``regulation.md`` §0-§2) has accredited *certification bodies*
verify a product's footprint against its product category rules and certify it. On the exchange
that is five kinds of signed statement, each a small canonical-JSON body signed with Ed25519
(:func:`contracts.canonical.pae` binds the kind, so one kind's signature never passes as
another's):

============================  ==================  ===========================================
statement (payload type)      signed by           topic, key
============================  ==================  ===========================================
:class:`BodyRegistration`     an operator key     ``pcf.bodies``, body id
:class:`BodyListing`          an operator key     ``pcf.bodies``, body id (blacklist / unlist)
:class:`Certificate`          one of the body's   ``pcf.certificates``, certificate id
                              registered keys
:class:`Revocation`           the body, or an     ``pcf.certificates``, certificate id
                              operator key
:class:`StaleNotice`          an operator key     ``pcf.certificates``, certificate id
============================  ==================  ===========================================

**Why a registry of its own, not a role in ``pcf.keys``.** A body's registration says more than
a key's (name, filing or accreditation number, scopes = pilot catalogue entries, validity, several
keys) and has a state a key does not (blacklisted from a broker time on, unlisted later). Putting
it in :class:`~contracts.SupplierKey` would mean a new Avro enum symbol and fields in a record
every consumer of ``pcf.keys`` reads, for something only certification uses. What *is* reused:
the operator keys as the trust anchor (the same ones :class:`~contracts.keyring.Keyring` trusts),
the one key-id format (:func:`contracts.keyfiles.key_id_of`), the one canonical JSON and PAE,
and the same fold discipline (signature, then a monotonic sequence per subject, then in force).

**Time is the broker's** (decision 11): :meth:`CertRegistry.apply` takes the time the broker
appended each statement (``LogAppendTime``). A blacklisting takes effect at its append time: a
certificate appended from then on is refused (``blacklisted_body``); one appended before stays,
*flagged* (:attr:`CertStatus.FLAGGED`) while the blacklisting is in force. Nothing is deleted.

The fold, for each statement (in append order), in steps marked ``# (n)`` in the code:

1. the body decodes and its kind is known (``malformed``);
2. the signer is who may sign that kind: an operator key for registrations, listings and
   notices; a key of the certificate's body (registered before the certificate was appended)
   for a certificate, under its own id (a certificate appended before its body's registration
   is refused for good: ``pcfx certificates issue`` checks before sending); the body or an
   operator for a revocation (``unknown_key``, ``unknown_body``); and the signature verifies
   (``bad_signature``);
3. a registration or listing needs a sequence above the body's stored one (same bytes again:
   ``DUPLICATE``; else ``replayed``); a certificate id is issued once (``duplicate_id``);
4. a certificate is checked against its body at the append time: registration valid
   (``body_not_yet_valid``, ``expired_body``), not blacklisted (``blacklisted_body``), scope
   among the body's scopes (``out_of_scope``), certificate not expired (``expired_certificate``);
5. the statement is in force.

Whether a certificate is good *now* (:meth:`CertRegistry.status`) adds what happened since:
revoked, expired, flagged, or *stale* — the product's current footprint (latest on
``pcf.declared``/``pcf.products``, fed in with :meth:`CertRegistry.observe_footprint`) no longer
has the content hash the body certified (:func:`footprint_digest`).

A *registry snapshot* (:class:`Snapshot`) is every accepted statement with its append time and
the current footprint digests, signed by an operator key: what ``pcfx label verify`` checks a
label against offline. Verifying it re-folds the statements (each keeps its own signature), so a
snapshot can only vouch for the append times and digests, never invent a body or certificate.

**Wire form.** Both topics carry one Avro record type, ``io.pcfexchange.certification.
SignedStatement`` (:data:`STATEMENT_SCHEMA`: ``payloadType``, ``signedBody``, ``signature``),
Confluent-framed under ``<topic>-value`` (:class:`StatementSerde`). The Avro is only an
envelope: what is signed and checked is the canonical JSON in ``signedBody``, exactly as
received (as ``SignedFootprint`` v2 does), so a new statement field needs no schema change. The
schema lives here, not in ``schemas/``: that folder holds the types generated from the pydantic
models (as the gateway keeps its own record types in ``gateway/runtime/schemas``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import re
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, ClassVar, Final

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from pcf_exchange.contracts._envelope import as_public_key, verify_bytes
from pcf_exchange.contracts._registry import SchemaRegistry
from pcf_exchange.contracts._serde import subject_for, unframe
from pcf_exchange.contracts.canonical import canonical_json, pae
from pcf_exchange.contracts.errors import (
    CertificationError,
    SerdeError,
    TrustError,
    UnknownSchemaError,
    ValidationFailed,
    Violation,
)
from pcf_exchange.contracts.keyfiles import key_id_of, raw_public_key

__all__ = [
    "CATALOGUE",
    "PAYLOAD_BODY",
    "PAYLOAD_CERTIFICATE",
    "PAYLOAD_LISTING",
    "PAYLOAD_REVOCATION",
    "PAYLOAD_SNAPSHOT",
    "PAYLOAD_STALE_NOTICE",
    "STATEMENT_SCHEMA",
    "BodyKey",
    "BodyListing",
    "BodyRegistration",
    "BodyState",
    "CertOutcome",
    "CertRegistry",
    "CertState",
    "CertStatus",
    "CertUpdate",
    "Certificate",
    "CurrentFootprint",
    "ListingAction",
    "Revocation",
    "SignedStatement",
    "Snapshot",
    "StaleNotice",
    "Statement",
    "StatementSerde",
    "StatusReport",
    "fold",
    "footprint_digest",
    "sign_statement",
]

PAYLOAD_BODY: Final = "application/vnd.pcfx.cert-body+json"
PAYLOAD_LISTING: Final = "application/vnd.pcfx.cert-body-listing+json"
PAYLOAD_CERTIFICATE: Final = "application/vnd.pcfx.certificate+json"
PAYLOAD_REVOCATION: Final = "application/vnd.pcfx.certificate-revocation+json"
PAYLOAD_STALE_NOTICE: Final = "application/vnd.pcfx.certificate-stale+json"
PAYLOAD_SNAPSHOT: Final = "application/vnd.pcfx.cert-snapshot+json"
OPERATOR: Final = "operator"
"""What a revocation's ``revokedBy`` says when an operator key signed it."""

CATALOGUE: Final = (
    "LITHIUM_BATTERY",
    "PHOTOVOLTAIC",
    "STEEL",
    "TEXTILES",
    "ELECTRONICS",
    "TYRES",
    "CEMENT",
    "ELECTROLYTIC_ALUMINIUM",
    "UREA",
    "PHOSPHATE_FERTILISER",
    "WOOD_PRODUCTS",
)
"""The pilot catalogue entries a body may be accredited for (the footprints' ``pilotCategory``
values, without ``OTHER``: nothing is certified outside the catalogue)."""

_ID_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$")
_KEY_ID_RE: Final = re.compile(r"^[0-9a-f]{32}$")
_HASH_RE: Final = re.compile(r"^[0-9a-f]{64}$")
_DECIMAL_RE: Final = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$")
_MAX_TEXT: Final = 500


def footprint_digest(pact_json: Mapping[str, Any]) -> str:
    """The content hash a certificate binds: sha256 (hex) of the canonical JSON of the footprint's
    PACT v3 record (:func:`contracts.to_pact_json`). The same for a supplier's footprint on
    ``pcf.declared`` and a rolled-up one on ``pcf.products``, and computable by a body from the
    PACT JSON file it verified; a re-signature of the same content does not change it."""
    return hashlib.sha256(canonical_json(pact_json)).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- reading fields -------------------------------------------------------------------------


class _Fields:
    """Reads one JSON object's fields, collecting every violation (all are reported, not the
    first) with the field path, what was expected and what came in."""

    def __init__(self, data: Any, subject: str) -> None:
        self.subject = subject
        self.problems: list[Violation] = []
        self.data: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
        if not isinstance(data, Mapping):
            self.problems.append(
                Violation.of("", "type", f"a {subject} must be a JSON object", type(data).__name__)
            )

    def text(
        self,
        name: str,
        *,
        pattern: re.Pattern[str] | None = None,
        what: str = "",
        limit: int = _MAX_TEXT,
    ) -> str:
        value = self.data.get(name)
        if value is None:
            self.problems.append(Violation.of(name, "required", "is required"))
            return ""
        if not isinstance(value, str) or not value.strip() or len(value) > limit:
            self.problems.append(
                Violation.of(
                    name,
                    "type",
                    f"must be a non-empty string of at most {limit} characters",
                    value,
                )
            )
            return ""
        if pattern is not None and not pattern.match(value):
            self.problems.append(Violation.of(name, "pattern", f"must be {what}", value))
            return ""
        return value

    def instant(self, name: str, *, required: bool = True) -> datetime | None:
        value = self.data.get(name)
        if value is None:
            if required:
                self.problems.append(Violation.of(name, "required", "is required"))
            return None
        try:
            if not isinstance(value, str):
                raise ValueError
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            self.problems.append(
                Violation.of(
                    name,
                    "datetime",
                    "must be an ISO 8601 date-time with a UTC offset (e.g. 2026-01-01T00:00:00Z)",
                    value,
                )
            )
            return None
        return moment.astimezone(UTC)

    def decimal(self, name: str) -> Decimal:
        value = self.data.get(name)
        if not isinstance(value, str) or not _DECIMAL_RE.match(value):
            self.problems.append(
                Violation.of(
                    name,
                    "decimal",
                    'must be a decimal string such as "63.2" (never a binary float)',
                    ... if value is None else value,
                )
            )
            return Decimal(0)
        try:
            return Decimal(value)
        except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
            self.problems.append(Violation.of(name, "decimal", "must be a decimal", value))
            return Decimal(0)

    def integer(self, name: str) -> int:
        value = self.data.get(name)
        if type(value) is not int or not 0 <= value < 2**53:
            self.problems.append(
                Violation.of(
                    name,
                    "sequence",
                    "must be an integer from 0 to 2^53-1",
                    ... if value is None else value,
                )
            )
            return 0
        return value

    def items(self, name: str) -> list[Any]:
        value = self.data.get(name)
        if not isinstance(value, list) or not value:
            self.problems.append(
                Violation.of(
                    name, "list", "must be a non-empty list", ... if value is None else value
                )
            )
            return []
        return value

    def window(self, start: datetime | None, end: datetime | None, end_name: str) -> None:
        if start is not None and end is not None and not start < end:
            self.problems.append(
                Violation.of(
                    end_name, "period_order", f"must be after validFrom ({_iso(start)})", _iso(end)
                )
            )

    def done(self) -> None:
        if self.problems:
            raise ValidationFailed(self.problems, subject=self.subject)


# --- the statements -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BodyKey:
    """One signing key of a certification body: the one key-id format, and the raw 32 bytes."""

    key_id: str
    public_key: bytes

    @classmethod
    def of(cls, public_key: Ed25519PublicKey) -> BodyKey:
        return cls(key_id_of(public_key), raw_public_key(public_key))


@dataclass(frozen=True, slots=True)
class BodyRegistration:
    """The operator's registration of a certification body (``pcf.bodies``): a newer one with a
    higher sequence replaces it (new keys, scopes, validity)."""

    body_id: str
    name: str
    accreditation_no: str
    """The body's filing or accreditation number (CNCA filing, CNAS accreditation, ...)."""
    scopes: tuple[str, ...]
    """The pilot catalogue entries (:data:`CATALOGUE`) it may certify."""
    valid_from: datetime
    valid_until: datetime
    keys: tuple[BodyKey, ...]
    registered_by: str
    sequence: int
    payload_type: ClassVar[str] = PAYLOAD_BODY

    def to_json(self) -> dict[str, Any]:
        return {
            "bodyId": self.body_id,
            "name": self.name,
            "accreditationNo": self.accreditation_no,
            "scopes": list(self.scopes),
            "validFrom": _iso(self.valid_from),
            "validUntil": _iso(self.valid_until),
            "keys": [{"keyId": k.key_id, "publicKey": _b64(k.public_key)} for k in self.keys],
            "registeredBy": self.registered_by,
            "sequence": self.sequence,
        }

    @classmethod
    def from_json(cls, data: Any) -> BodyRegistration:
        f = _Fields(data, "body registration")
        body_id = f.text("bodyId", pattern=_ID_RE, what="an id (letters, digits, ._:/-)")
        name = f.text("name")
        number = f.text("accreditationNo")
        scopes = tuple(_scopes(f))
        start, end = f.instant("validFrom"), f.instant("validUntil")
        f.window(start, end, "validUntil")
        keys = tuple(_keys(f))
        by, sequence = f.text("registeredBy"), f.integer("sequence")
        f.done()
        assert start is not None and end is not None
        return cls(body_id, name, number, scopes, start, end, keys, by, sequence)

    def key(self, key_id: str) -> BodyKey | None:
        return next((k for k in self.keys if k.key_id == key_id), None)


def _scopes(f: _Fields) -> Iterator[str]:
    seen: set[str] = set()
    for i, scope in enumerate(f.items("scopes")):
        if scope not in CATALOGUE:
            f.problems.append(
                Violation.of(
                    f"scopes[{i}]",
                    "scope",
                    f"must be a pilot catalogue entry ({', '.join(CATALOGUE)})",
                    scope,
                )
            )
        elif scope in seen:
            f.problems.append(Violation.of(f"scopes[{i}]", "unique", "is listed twice", scope))
        else:
            seen.add(scope)
            yield scope


def _keys(f: _Fields) -> Iterator[BodyKey]:
    for i, entry in enumerate(f.items("keys")):
        path = f"keys[{i}]"
        raw = entry.get("publicKey") if isinstance(entry, Mapping) else None
        try:
            public = _unb64(raw) if isinstance(raw, str) else b""
            key = as_public_key(public) if len(public) == 32 else None
        except (ValueError, binascii.Error, TrustError):
            key = None
        if key is None:
            f.problems.append(
                Violation.of(
                    f"{path}.publicKey",
                    "key",
                    "must be a raw Ed25519 public key of 32 bytes, base64url",
                    raw,
                )
            )
            continue
        key_id = entry.get("keyId")
        if key_id != key_id_of(key):
            f.problems.append(
                Violation.of(
                    f"{path}.keyId",
                    "key_id",
                    f"must be the key's id {key_id_of(key)} (sha256 of the raw key, 32 hex digits)",
                    key_id,
                )
            )
            continue
        yield BodyKey(key_id, raw_public_key(key))


class ListingAction(StrEnum):
    BLACKLIST = "blacklist"
    """From the listing's append time on, the body's certificates are refused."""
    UNLIST = "unlist"
    """The blacklisting ends at this listing's append time."""


@dataclass(frozen=True, slots=True)
class BodyListing:
    """The operator blacklists a body, or takes it off the blacklist (``pcf.bodies``). Dated by
    the broker's clock (the statement's append time), never by a time written in it."""

    body_id: str
    action: ListingAction
    reason: str
    decided_by: str
    sequence: int
    payload_type: ClassVar[str] = PAYLOAD_LISTING

    def to_json(self) -> dict[str, Any]:
        return {
            "bodyId": self.body_id,
            "action": self.action.value,
            "reason": self.reason,
            "decidedBy": self.decided_by,
            "sequence": self.sequence,
        }

    @classmethod
    def from_json(cls, data: Any) -> BodyListing:
        f = _Fields(data, "body listing")
        body_id = f.text("bodyId", pattern=_ID_RE, what="an id (letters, digits, ._:/-)")
        action = f.text("action")
        if action and action not in set(ListingAction):
            f.problems.append(
                Violation.of("action", "enum", "must be 'blacklist' or 'unlist'", action)
            )
        reason, by, sequence = f.text("reason"), f.text("decidedBy"), f.integer("sequence")
        f.done()
        return cls(body_id, ListingAction(action), reason, by, sequence)


@dataclass(frozen=True, slots=True)
class Certificate:
    """A body's certificate for one footprint (``pcf.certificates``): bound to the footprint's
    content hash (:func:`footprint_digest`), id and product, and to the product category rules
    (PCR pack id and version) it was verified against, for one catalogue entry (*scope*)."""

    certificate_id: str
    body_id: str
    key_id: str
    """Which of the body's registered keys signed it."""
    holder: str
    """The company whose footprint it certifies (who is told when it turns stale)."""
    product_id: str
    footprint_id: str
    content_hash: str
    scope: str
    pcr_pack_id: str
    pcr_pack_version: str
    figure: Decimal
    """The certified figure (kgCO2e per declared unit, excluding biogenic uptake)."""
    unit: str
    """Its unit as printed on a label, e.g. ``kgCO2e/kWh``."""
    valid_from: datetime
    valid_until: datetime
    payload_type: ClassVar[str] = PAYLOAD_CERTIFICATE

    def to_json(self) -> dict[str, Any]:
        return {
            "certificateId": self.certificate_id,
            "bodyId": self.body_id,
            "keyId": self.key_id,
            "holder": self.holder,
            "productId": self.product_id,
            "footprintId": self.footprint_id,
            "contentHash": self.content_hash,
            "scope": self.scope,
            "pcrPackId": self.pcr_pack_id,
            "pcrPackVersion": self.pcr_pack_version,
            "figure": format(self.figure, "f"),
            "unit": self.unit,
            "validFrom": _iso(self.valid_from),
            "validUntil": _iso(self.valid_until),
        }

    @classmethod
    def from_json(cls, data: Any) -> Certificate:
        f = _Fields(data, "certificate")
        cert_id = f.text("certificateId", pattern=_ID_RE, what="an id (letters, digits, ._:/-)")
        body_id = f.text("bodyId", pattern=_ID_RE, what="an id (letters, digits, ._:/-)")
        key_id = f.text("keyId", pattern=_KEY_ID_RE, what="a key id (32 hex digits)")
        holder, product, footprint = f.text("holder"), f.text("productId"), f.text("footprintId")
        digest = f.text("contentHash", pattern=_HASH_RE, what="a sha256 (64 hex digits)")
        scope = f.text("scope")
        if scope and scope not in CATALOGUE:
            f.problems.append(
                Violation.of("scope", "scope", "must be a pilot catalogue entry", scope)
            )
        pack, version = f.text("pcrPackId"), f.text("pcrPackVersion")
        figure, unit = f.decimal("figure"), f.text("unit")
        start, end = f.instant("validFrom"), f.instant("validUntil")
        f.window(start, end, "validUntil")
        f.done()
        assert start is not None and end is not None
        return cls(
            cert_id,
            body_id,
            key_id,
            holder,
            product,
            footprint,
            digest,
            scope,
            pack,
            version,
            figure,
            unit,
            start,
            end,
        )


@dataclass(frozen=True, slots=True)
class Revocation:
    """The body (or the operator) withdraws a certificate, from the statement's append time."""

    certificate_id: str
    revoked_by: str
    """The body id, or ``operator``."""
    reason: str
    payload_type: ClassVar[str] = PAYLOAD_REVOCATION

    def to_json(self) -> dict[str, Any]:
        return {
            "certificateId": self.certificate_id,
            "revokedBy": self.revoked_by,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, data: Any) -> Revocation:
        f = _Fields(data, "revocation")
        cert_id = f.text("certificateId", pattern=_ID_RE, what="an id (letters, digits, ._:/-)")
        by, reason = f.text("revokedBy"), f.text("reason")
        f.done()
        return cls(cert_id, by, reason)


@dataclass(frozen=True, slots=True)
class StaleNotice:
    """A certificate's footprint was superseded: told to the holder and to the body
    (``pcf.certificates``, keyed by the certificate id; both read it there)."""

    certificate_id: str
    holder: str
    body_id: str
    product_id: str
    certified_hash: str
    current_hash: str
    current_footprint_id: str

    payload_type: ClassVar[str] = PAYLOAD_STALE_NOTICE

    def to_json(self) -> dict[str, Any]:
        return {
            "certificateId": self.certificate_id,
            "holder": self.holder,
            "bodyId": self.body_id,
            "productId": self.product_id,
            "certifiedHash": self.certified_hash,
            "currentHash": self.current_hash,
            "currentFootprintId": self.current_footprint_id,
        }

    @classmethod
    def from_json(cls, data: Any) -> StaleNotice:
        f = _Fields(data, "stale notice")
        values = [
            f.text(n)
            for n in (
                "certificateId",
                "holder",
                "bodyId",
                "productId",
                "certifiedHash",
                "currentHash",
                "currentFootprintId",
            )
        ]
        f.done()
        return cls(*values)


Statement = BodyRegistration | BodyListing | Certificate | Revocation | StaleNotice
_KINDS: Final[Mapping[str, Any]] = {
    PAYLOAD_BODY: BodyRegistration,
    PAYLOAD_LISTING: BodyListing,
    PAYLOAD_CERTIFICATE: Certificate,
    PAYLOAD_REVOCATION: Revocation,
    PAYLOAD_STALE_NOTICE: StaleNotice,
}


@dataclass(frozen=True, slots=True)
class SignedStatement:
    """One signed statement as it travels: the exact signed body bytes (canonical JSON of
    ``{"keyId", "signerId", "statement"}``), the signature over ``pae(payload_type, body)``.

    The signer id and key id are inside the signed body; :meth:`open` reads them from there, so
    an envelope cannot claim another signer than the one who signed."""

    payload_type: str
    body: bytes
    signature: bytes

    def signing_bytes(self) -> bytes:
        return pae(self.payload_type, self.body)

    @property
    def digest(self) -> str:
        """sha256 of the signed bytes: what identifies this statement."""
        return hashlib.sha256(self.signing_bytes()).hexdigest()

    def open(self) -> tuple[str, str, Statement]:
        """(signer id, key id, the statement); :class:`ValidationFailed` if malformed (step 1)."""
        kind = _KINDS.get(self.payload_type)
        if kind is None:
            raise ValidationFailed(
                [
                    Violation.of(
                        "payloadType",
                        "kind",
                        f"must be a certification statement type ({', '.join(_KINDS)})",
                        self.payload_type,
                    )
                ],
                subject="signed statement",
            )
        try:
            parsed = orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise ValidationFailed(
                [Violation.of("body", "json", f"must be canonical JSON ({exc})")],
                subject="signed statement",
            ) from None
        if not isinstance(parsed, dict) or canonical_json(parsed) != self.body:
            raise ValidationFailed(
                [
                    Violation.of(
                        "body",
                        "canonical",
                        "must be a canonical JSON object (sorted keys, no whitespace)",
                    )
                ],
                subject="signed statement",
            )
        f = _Fields(parsed, "signed statement")
        signer = f.text("signerId")
        key_id = f.text("keyId", pattern=_KEY_ID_RE, what="a key id (32 hex digits)")
        f.done()
        return signer, key_id, kind.from_json(parsed.get("statement"))

    def to_json(self) -> dict[str, str]:
        """The statement in files (a snapshot, ``--json``): base64url bytes."""
        return {
            "payloadType": self.payload_type,
            "body": _b64(self.body),
            "signature": _b64(self.signature),
        }

    @classmethod
    def from_json(cls, data: Any) -> SignedStatement:
        f = _Fields(data, "signed statement")
        kind = f.text("payloadType")
        body, signature = f.text("body", limit=200_000), f.text("signature")
        f.done()
        try:
            return cls(kind, _unb64(body), _unb64(signature))
        except (ValueError, binascii.Error):
            raise ValidationFailed(
                [Violation.of("body", "base64", "body and signature must be base64url")],
                subject="signed statement",
            ) from None


def sign_statement(
    private_key: Ed25519PrivateKey, statement: Statement, *, signer_id: str
) -> SignedStatement:
    """Sign *statement* as *signer_id* (an operator id, or a body id) with *private_key*."""
    body = canonical_json(
        {
            "keyId": key_id_of(private_key.public_key()),
            "signerId": signer_id,
            "statement": statement.to_json(),
        }
    )
    return SignedStatement(
        statement.payload_type, body, private_key.sign(pae(statement.payload_type, body))
    )


# --- the fold -------------------------------------------------------------------------------


class CertOutcome(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    """The same statement again (a redelivery): nothing changes."""
    REJECTED = "rejected"


class CertStatus(StrEnum):
    """What a certificate is worth at a given moment (:meth:`CertRegistry.status`)."""

    VALID = "valid"
    STALE = "stale"
    """The product's current footprint is not the one certified (superseded upstream)."""
    REVOKED = "revoked"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    FLAGGED = "flagged"
    """Issued before its body was blacklisted, and the blacklisting is in force."""
    UNKNOWN = "unknown"
    """No such certificate was accepted on ``pcf.certificates``."""


@dataclass(frozen=True, slots=True)
class CertUpdate:
    """What one statement did to the registry."""

    outcome: CertOutcome
    subject: str
    """``body:<id>`` or ``certificate:<id>``."""
    error: CertificationError | None = None


@dataclass(frozen=True, slots=True)
class BodyState:
    """A body's registration in force and its blacklistings (append-time periods)."""

    registration: BodyRegistration
    digest: str
    registered_at: datetime
    blacklistings: tuple[tuple[datetime, datetime | None, str], ...] = ()
    """(from, until or ``None`` while in force, reason), in order."""

    def blacklisted_at(self, moment: datetime) -> tuple[datetime, str] | None:
        """When and why the body was blacklisted, if it is at *moment*."""
        for start, end, reason in self.blacklistings:
            if start <= moment and (end is None or moment < end):
                return start, reason
        return None

    @property
    def blacklisted(self) -> bool:
        return bool(self.blacklistings) and self.blacklistings[-1][1] is None


@dataclass(frozen=True, slots=True)
class CertState:
    """A certificate in force, when the broker appended it, and its revocation if any."""

    certificate: Certificate
    signed: SignedStatement
    issued_at: datetime
    revoked_at: datetime | None = None
    revocation: Revocation | None = None


@dataclass(frozen=True, slots=True)
class CurrentFootprint:
    """The latest footprint of a product (from ``pcf.declared`` or ``pcf.products``)."""

    product_id: str
    footprint_id: str
    content_hash: str
    """:func:`footprint_digest` of its PACT record."""
    source: str
    """The topic it came from."""
    pact: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    """Its PACT v3 record, when read from the exchange (what a body certifies); not in
    snapshots."""


@dataclass(frozen=True, slots=True)
class StatusReport:
    """A certificate's status at one moment, with every reason that applies."""

    certificate_id: str
    status: CertStatus
    findings: tuple[tuple[CertStatus, str], ...]
    """Every status that applies (the worst first) with why."""
    state: CertState | None

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(message for _, message in self.findings)

    def finding(self, status: CertStatus) -> str | None:
        """Why *status* applies, or ``None`` if it does not."""
        return next((m for s, m in self.findings if s is status), None)


def _reject(subject: str, message: str, reason: str, hint: str) -> CertUpdate:
    return CertUpdate(
        CertOutcome.REJECTED, subject, CertificationError(message, reason=reason, hint=hint)
    )


@dataclass
class CertRegistry:
    """Bodies, certificates and current footprints, folded from ``pcf.bodies``,
    ``pcf.certificates`` and the footprint topics (steps in the module docstring)."""

    operator_keys: Mapping[str, Ed25519PublicKey]
    """Key id -> operator public key: the trust anchor, as for :class:`~contracts.Keyring`."""
    bodies: dict[str, BodyState] = field(default_factory=dict)
    certificates: dict[str, CertState] = field(default_factory=dict)
    footprints: dict[str, CurrentFootprint] = field(default_factory=dict)
    notices: dict[tuple[str, str], StaleNotice] = field(default_factory=dict)
    """(certificate id, current hash) -> the stale notice already published for it."""
    accepted: list[tuple[str, datetime, SignedStatement]] = field(default_factory=list)
    """Every accepted statement with its topic and append time, in order (what a
    :class:`Snapshot` carries)."""
    _sequences: dict[str, tuple[int, str]] = field(default_factory=dict)
    """Body id -> (sequence, digest) of its last registration or listing (step 3)."""

    def apply(self, signed: SignedStatement, appended_at: datetime) -> CertUpdate:
        """Fold one statement the broker appended at *appended_at* (steps 1-5)."""
        # (1) decodes
        try:
            signer, key_id, statement = signed.open()
        except ValidationFailed as exc:
            return CertUpdate(
                CertOutcome.REJECTED,
                "statement",
                CertificationError(exc.message, reason="malformed", hint=exc.hint),
            )
        if isinstance(statement, BodyRegistration | BodyListing):
            update = self._body_statement(signed, signer, key_id, statement, appended_at)
            topic = "pcf.bodies"
        elif isinstance(statement, Certificate):
            update = self._certificate(signed, signer, key_id, statement, appended_at)
            topic = "pcf.certificates"
        elif isinstance(statement, Revocation):
            update = self._revocation(signed, signer, key_id, statement, appended_at)
            topic = "pcf.certificates"
        else:
            update = self._notice(signed, signer, key_id, statement)
            topic = "pcf.certificates"
        if update.outcome is CertOutcome.ACCEPTED:
            self.accepted.append((topic, appended_at, signed))
        return update

    def _operator_signed(
        self, signed: SignedStatement, key_id: str, subject: str
    ) -> CertUpdate | None:
        """Step (2) for statements only the operator may sign."""
        key = self.operator_keys.get(key_id)
        if key is None:
            return _reject(
                subject,
                f"{subject}: signed with key {key_id!r}, which is not a configured operator key"
                f" (known: {sorted(self.operator_keys) or 'none'})",
                "unknown_key",
                "Only the platform operator registers, blacklists and unlists bodies: sign with"
                " the operator key (pcfx bodies ... --key OPERATOR_KEY).",
            )
        return self._signature(signed, key, subject)

    @staticmethod
    def _signature(
        signed: SignedStatement, key: Ed25519PublicKey | bytes, subject: str
    ) -> CertUpdate | None:
        try:
            verify_bytes(key, signed.signature, signed.signing_bytes(), what=subject)
        except TrustError as exc:
            return _reject(
                subject,
                str(exc),
                "bad_signature",
                "The statement was altered after signing, or signed with another key.",
            )
        return None

    def _body_statement(
        self,
        signed: SignedStatement,
        signer: str,
        key_id: str,
        statement: BodyRegistration | BodyListing,
        appended_at: datetime,
    ) -> CertUpdate:
        subject = f"body:{statement.body_id}"
        # (2) an operator key
        refused = self._operator_signed(signed, key_id, subject)
        if refused is not None:
            return refused
        stored = self.bodies.get(statement.body_id)
        if isinstance(statement, BodyListing) and stored is None:
            return _reject(
                subject,
                f"{subject} is not registered: it cannot be {statement.action.value}ed",
                "unknown_body",
                "Register the body first (pcfx bodies register).",
            )
        # (3) sequence, over registrations and listings of the body
        if stored is not None:
            last = self._last_sequence(statement.body_id)
            if statement.sequence <= last[0]:
                if statement.sequence == last[0] and last[1] == signed.digest:
                    return CertUpdate(CertOutcome.DUPLICATE, subject)
                return _reject(
                    subject,
                    f"'sequence' must be above {last[0]} for {subject} (got"
                    f" {statement.sequence}): a replayed or out-of-date statement",
                    "replayed",
                    "pcfx bodies register/blacklist/unlist read the topic and number it for you.",
                )
        # (5) in force
        if isinstance(statement, BodyRegistration):
            self.bodies[statement.body_id] = BodyState(
                statement,
                signed.digest,
                appended_at,
                stored.blacklistings if stored is not None else (),
            )
        else:
            assert stored is not None
            periods = list(stored.blacklistings)
            if statement.action is ListingAction.BLACKLIST:
                if not stored.blacklisted:
                    periods.append((appended_at, None, statement.reason))
            elif stored.blacklisted:
                start, _, reason = periods[-1]
                periods[-1] = (start, appended_at, reason)
            self.bodies[statement.body_id] = replace(stored, blacklistings=tuple(periods))
        self._sequences[statement.body_id] = (statement.sequence, signed.digest)
        return CertUpdate(CertOutcome.ACCEPTED, subject)

    def _last_sequence(self, body_id: str) -> tuple[int, str]:
        return self._sequences.get(body_id, (-1, ""))

    def next_sequence(self, body_id: str) -> int:
        """The sequence the body's next registration or listing must carry (step 3)."""
        return self._last_sequence(body_id)[0] + 1

    def _certificate(
        self,
        signed: SignedStatement,
        signer: str,
        key_id: str,
        cert: Certificate,
        appended_at: datetime,
    ) -> CertUpdate:
        subject = f"certificate:{cert.certificate_id}"
        # (2) a key of the certificate's body, registered before the certificate was appended
        body = self.bodies.get(cert.body_id)
        if body is None or signer != cert.body_id:
            return _reject(
                subject,
                f"{subject} names body {cert.body_id!r} and is signed by {signer!r}: no body"
                f" {cert.body_id!r} is registered on pcf.bodies"
                if body is None
                else f"{subject} names body {cert.body_id!r} but is signed by {signer!r}",
                "unknown_body",
                "Only a body the operator registered (pcfx bodies register) issues certificates,"
                " under its own id.",
            )
        registration = body.registration
        key = registration.key(key_id)
        if key is None or cert.key_id != key_id:
            return _reject(
                subject,
                f"{subject} is signed with key {key_id!r}, which is not one of body"
                f" {cert.body_id!r}'s registered keys ({', '.join(k.key_id for k in registration.keys)})",  # noqa: E501
                "unknown_key",
                "Sign with a key the operator registered for the body (pcfx bodies register"
                " --body-key PUB).",
            )
        refused = self._signature(signed, key.public_key, subject)
        if refused is not None:
            return refused
        # (3) once per id
        stored = self.certificates.get(cert.certificate_id)
        if stored is not None:
            if stored.signed.digest == signed.digest:
                return CertUpdate(CertOutcome.DUPLICATE, subject)
            return _reject(
                subject,
                f"{subject} was issued already (at {_iso(stored.issued_at)}) with other content",
                "duplicate_id",
                "Issue a new certificate under a new id.",
            )
        # (4) against the body, at the append time
        problem = _certificate_problem(body, cert, appended_at)
        if problem is not None:
            reason, message, hint = problem
            return _reject(subject, f"{subject}: {message}", reason, hint)
        # (5)
        self.certificates[cert.certificate_id] = CertState(cert, signed, appended_at)
        return CertUpdate(CertOutcome.ACCEPTED, subject)

    def _revocation(
        self,
        signed: SignedStatement,
        signer: str,
        key_id: str,
        revocation: Revocation,
        appended_at: datetime,
    ) -> CertUpdate:
        subject = f"certificate:{revocation.certificate_id}"
        stored = self.certificates.get(revocation.certificate_id)
        if stored is None:
            return _reject(
                subject,
                f"{subject} is not on pcf.certificates: nothing to revoke",
                "unknown_certificate",
                "Check the certificate id (pcfx certificates list).",
            )
        # (2) the certificate's body, or an operator
        body = self.bodies.get(stored.certificate.body_id)
        key: Ed25519PublicKey | bytes | None = None
        if revocation.revoked_by == OPERATOR:
            key = self.operator_keys.get(key_id)
        elif revocation.revoked_by == stored.certificate.body_id == signer and body is not None:
            found = body.registration.key(key_id)
            key = found.public_key if found is not None else None
        if key is None:
            return _reject(
                subject,
                f"{subject} can be revoked by its body {stored.certificate.body_id!r} or the"
                f" operator; this revocation says {revocation.revoked_by!r} and is signed by"
                f" {signer!r} with key {key_id!r}, which is neither's",
                "unknown_key",
                "Revoke with the body's key (pcfx certificates revoke --key BODY_KEY) or the"
                " operator key (--operator).",
            )
        refused = self._signature(signed, key, subject)
        if refused is not None:
            return refused
        if stored.revoked_at is not None:
            return CertUpdate(CertOutcome.DUPLICATE, subject)
        self.certificates[revocation.certificate_id] = replace(
            stored, revoked_at=appended_at, revocation=revocation
        )
        return CertUpdate(CertOutcome.ACCEPTED, subject)

    def _notice(
        self, signed: SignedStatement, signer: str, key_id: str, notice: StaleNotice
    ) -> CertUpdate:
        subject = f"certificate:{notice.certificate_id}"
        refused = self._operator_signed(signed, key_id, subject)
        if refused is not None:
            return refused
        slot = (notice.certificate_id, notice.current_hash)
        if slot in self.notices:
            return CertUpdate(CertOutcome.DUPLICATE, subject)
        self.notices[slot] = notice
        return CertUpdate(CertOutcome.ACCEPTED, subject)

    # --- footprints and status ---------------------------------------------------------------

    def observe_footprint(self, current: CurrentFootprint) -> None:
        """The latest footprint of a product (the caller keeps the highest sequence)."""
        self.footprints[current.product_id] = current

    def status(self, certificate_id: str, at: datetime) -> StatusReport:
        """What a certificate is worth at *at*: every reason that applies, the worst first
        (revoked, flagged, expired or not yet valid, stale)."""
        state = self.certificates.get(certificate_id)
        if state is None:
            return StatusReport(
                certificate_id,
                CertStatus.UNKNOWN,
                (
                    (
                        CertStatus.UNKNOWN,
                        f"certificate {certificate_id!r} is not on pcf.certificates",
                    ),
                ),
                None,
            )
        cert = state.certificate
        found: list[tuple[CertStatus, str]] = []
        if state.revoked_at is not None and at >= state.revoked_at:
            why = state.revocation.reason if state.revocation else ""
            found.append(
                (
                    CertStatus.REVOKED,
                    f"revoked at {_iso(state.revoked_at)} by"
                    f" {state.revocation.revoked_by if state.revocation else '?'}: {why}",
                )
            )
        body = self.bodies.get(cert.body_id)
        listed = body.blacklisted_at(at) if body is not None else None
        if listed is not None:
            found.append(
                (
                    CertStatus.FLAGGED,
                    f"body {cert.body_id!r} was blacklisted at"
                    f" {_iso(listed[0])} ({listed[1]}); this certificate was issued"
                    f" before, at {_iso(state.issued_at)}",
                )
            )
        if at >= cert.valid_until:
            found.append((CertStatus.EXPIRED, f"expired at {_iso(cert.valid_until)}"))
        elif at < cert.valid_from:
            found.append((CertStatus.NOT_YET_VALID, f"valid from {_iso(cert.valid_from)}"))
        current = self.footprints.get(cert.product_id)
        if current is not None and current.content_hash != cert.content_hash:
            found.append(
                (
                    CertStatus.STALE,
                    f"product {cert.product_id!r} now has footprint"
                    f" {current.footprint_id} (content hash {current.content_hash[:16]}…"
                    f" on {current.source}); certified: {cert.footprint_id}"
                    f" ({cert.content_hash[:16]}…)",
                )
            )
        if not found:
            return StatusReport(certificate_id, CertStatus.VALID, (), state)
        return StatusReport(certificate_id, found[0][0], tuple(found), state)

    def stale(self) -> list[StaleNotice]:
        """A notice for every certificate (not revoked) whose product's current footprint is not
        the certified one and that was not noticed yet for that footprint (emit on change)."""
        out: list[StaleNotice] = []
        for cert_id, state in sorted(self.certificates.items()):
            cert = state.certificate
            current = self.footprints.get(cert.product_id)
            if state.revoked_at is not None or current is None:
                continue
            if current.content_hash == cert.content_hash:
                continue
            if (cert_id, current.content_hash) in self.notices:
                continue
            out.append(
                StaleNotice(
                    cert_id,
                    cert.holder,
                    cert.body_id,
                    cert.product_id,
                    cert.content_hash,
                    current.content_hash,
                    current.footprint_id,
                )
            )
        return out


def _certificate_problem(
    body: BodyState, cert: Certificate, at: datetime
) -> tuple[str, str, str] | None:
    """Step (4): why *body* may not issue *cert* at append time *at* (reason, message, hint)."""
    reg = body.registration
    listed = body.blacklisted_at(at)
    if listed is not None:
        return (
            "blacklisted_body",
            f"body {reg.body_id!r} is blacklisted since {_iso(listed[0])} ({listed[1]}), and"
            f" the certificate was appended at {_iso(at)}",
            "A blacklisted body's certificates are refused; have the footprint certified by"
            " another registered body.",
        )
    if at < reg.valid_from:
        return (
            "body_not_yet_valid",
            f"body {reg.body_id!r} is registered from {_iso(reg.valid_from)}, and the"
            f" certificate was appended at {_iso(at)}",
            "Issue it once the body's registration is in force.",
        )
    if at >= reg.valid_until:
        return (
            "expired_body",
            f"body {reg.body_id!r}'s registration expired at {_iso(reg.valid_until)}, and the"
            f" certificate was appended at {_iso(at)}",
            "The operator renews the body's registration (pcfx bodies register with a later"
            " --valid-until).",
        )
    if cert.scope not in reg.scopes:
        return (
            "out_of_scope",
            f"'scope' must be one of body {reg.body_id!r}'s scopes ({', '.join(reg.scopes)})"
            f" (got {cert.scope!r})",
            "A body certifies only the catalogue entries it is accredited for.",
        )
    if at >= cert.valid_until:
        return (
            "expired_certificate",
            f"'validUntil' must be after the append time {_iso(at)} (got"
            f" {_iso(cert.valid_until)}): the certificate expired before it was published",
            "Issue it again with a validity that covers today.",
        )
    return None


# --- the snapshot ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every accepted statement with its topic and append time, the current footprints, signed
    by an operator key: the registry for verifying labels offline.

    File form: ``{"format": "pcfx-cert-snapshot/1", "snapshot": {...}, "keyId": ..,
    "signature": ..}``, the signature over ``pae(PAYLOAD_SNAPSHOT, canonical_json(snapshot))``.
    """

    exported_at: datetime
    exported_by: str
    statements: tuple[tuple[str, datetime, SignedStatement], ...]
    footprints: tuple[CurrentFootprint, ...]

    FORMAT: ClassVar[str] = "pcfx-cert-snapshot/1"

    @classmethod
    def of(cls, registry: CertRegistry, *, exported_by: str, at: datetime) -> Snapshot:
        return cls(
            at,
            exported_by,
            tuple(registry.accepted),
            tuple(v for _, v in sorted(registry.footprints.items())),
        )

    def body(self) -> dict[str, Any]:
        return {
            "exportedAt": _iso(self.exported_at),
            "exportedBy": self.exported_by,
            "statements": [
                {"topic": t, "appendedAt": _iso(at), **s.to_json()} for t, at, s in self.statements
            ],
            "footprints": [
                {
                    "productId": f.product_id,
                    "footprintId": f.footprint_id,
                    "contentHash": f.content_hash,
                    "source": f.source,
                }
                for f in self.footprints
            ],
        }

    def sign(self, private_key: Ed25519PrivateKey) -> dict[str, Any]:
        """The signed file form (see the class docstring)."""
        body = self.body()
        signature = private_key.sign(pae(PAYLOAD_SNAPSHOT, canonical_json(body)))
        return {
            "format": self.FORMAT,
            "snapshot": body,
            "keyId": key_id_of(private_key.public_key()),
            "signature": _b64(signature),
        }

    @classmethod
    def verify(
        cls, data: Any, operator_keys: Mapping[str, Ed25519PublicKey]
    ) -> tuple[Snapshot, CertRegistry]:
        """Check a snapshot file's operator signature, then re-fold its statements into a
        registry. Raises :class:`CertificationError` (``bad_snapshot``, ``unknown_key``,
        ``bad_signature``) and refuses a snapshot any of whose statements does not fold."""
        if not isinstance(data, Mapping) or data.get("format") != cls.FORMAT:
            got = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise CertificationError(
                f"a registry snapshot must be a JSON object with 'format': {cls.FORMAT!r}"
                f" (got {got!r})",
                reason="bad_snapshot",
                hint="Export one with 'pcfx bodies export --out FILE'.",
            )
        key_id = data.get("keyId")
        key = operator_keys.get(key_id) if isinstance(key_id, str) else None
        if key is None:
            raise CertificationError(
                f"the snapshot is signed with key {key_id!r}, which is not a configured operator"
                f" key (known: {sorted(operator_keys) or 'none'})",
                reason="unknown_key",
                hint="Pass the operator's public key (--operator-key PUB).",
            )
        body = data.get("snapshot")
        try:
            signature = _unb64(str(data.get("signature", "")))
            verify_bytes(
                key,
                signature,
                pae(PAYLOAD_SNAPSHOT, canonical_json(body)),
                what="registry snapshot",
            )
        except (ValueError, TypeError, binascii.Error) as exc:
            raise CertificationError(
                f"registry snapshot: unreadable signature ({exc})", reason="bad_signature"
            ) from None
        except TrustError as exc:
            raise CertificationError(
                str(exc),
                reason="bad_signature",
                hint="The snapshot was altered after the operator signed it: export a new one.",
            ) from None
        return cls._fold(body, operator_keys)

    @classmethod
    def _fold(
        cls, body: Any, operator_keys: Mapping[str, Ed25519PublicKey]
    ) -> tuple[Snapshot, CertRegistry]:
        f = _Fields(body, "registry snapshot")
        exported_at, exported_by = f.instant("exportedAt"), f.text("exportedBy")
        f.done()
        assert exported_at is not None
        registry = CertRegistry(operator_keys)
        statements: list[tuple[str, datetime, SignedStatement]] = []
        for i, item in enumerate(body.get("statements") or []):
            g = _Fields(item, f"statements[{i}]")
            topic, at = g.text("topic"), g.instant("appendedAt")
            g.done()
            assert at is not None
            signed = SignedStatement.from_json(item)
            update = registry.apply(signed, at)
            if update.outcome is CertOutcome.REJECTED:
                assert update.error is not None
                raise CertificationError(
                    f"registry snapshot: statements[{i}] does not fold: {update.error.message}",
                    reason="bad_snapshot",
                )
            statements.append((topic, at, signed))
        footprints: list[CurrentFootprint] = []
        for i, item in enumerate(body.get("footprints") or []):
            g = _Fields(item, f"footprints[{i}]")
            current = CurrentFootprint(
                g.text("productId"),
                g.text("footprintId"),
                g.text("contentHash", pattern=_HASH_RE, what="a sha256"),
                g.text("source"),
            )
            g.done()
            registry.observe_footprint(current)
            footprints.append(current)
        return cls(exported_at, exported_by, tuple(statements), tuple(footprints)), registry


def fold(
    operator_keys: Mapping[str, Ed25519PublicKey],
    statements: Iterable[tuple[datetime, SignedStatement]],
) -> tuple[CertRegistry, list[CertUpdate]]:
    """A registry folded from *statements* (append time, statement), in append-time order."""
    registry = CertRegistry(operator_keys)
    updates = [registry.apply(s, at) for at, s in sorted(statements, key=lambda p: p[0])]
    return registry, updates


# --- the wire form --------------------------------------------------------------------------

STATEMENT_SCHEMA: Final = json.dumps(
    {
        "type": "record",
        "name": "SignedStatement",
        "namespace": "io.pcfexchange.certification",
        "doc": "A certification statement (body registration or listing, certificate,"
        " revocation, stale notice): signedBody is the canonical JSON that was signed,"
        " signature the Ed25519 signature over pae(payloadType, signedBody).",
        "fields": [
            {"name": "payloadType", "type": "string"},
            {"name": "signedBody", "type": "bytes"},
            {"name": "signature", "type": "bytes"},
        ],
    },
    sort_keys=True,
)
_PARSED: Final = parse_schema(json.loads(STATEMENT_SCHEMA), named_schemas={})
_HEADER: Final = struct.Struct(">bI")

Registrar = Callable[[list[tuple[str, str]]], None]


class StatementSerde:
    """Framed Avro of :class:`~contracts.certification.SignedStatement` through a schema registry;
    a missing schema is registered through *registrar* (the operator's short-lived writer)."""

    def __init__(self, registry: SchemaRegistry, *, registrar: Registrar | None = None) -> None:
        self.registry = registry
        self._registrar = registrar
        self._ids: dict[str, int] = {}
        self._known: set[int] = set()

    def _schema_id(self, topic: str) -> int:
        found = self._ids.get(topic)
        if found is None:
            subject = subject_for(topic)
            try:
                found = self.registry.lookup(subject, STATEMENT_SCHEMA)
            except UnknownSchemaError:
                if self._registrar is not None:
                    self._registrar([(subject, STATEMENT_SCHEMA)])
                else:
                    self.registry.register(subject, STATEMENT_SCHEMA)
                found = self.registry.lookup(subject, STATEMENT_SCHEMA)
            self._ids[topic] = found
            self._known.add(found)
        return found

    def encode(self, topic: str, signed: SignedStatement) -> bytes:
        buffer = io.BytesIO()
        buffer.write(_HEADER.pack(0, self._schema_id(topic)))
        datum = {
            "payloadType": signed.payload_type,
            "signedBody": signed.body,
            "signature": signed.signature,
        }
        schemaless_writer(buffer, _PARSED, datum)
        return buffer.getvalue()

    def decode(self, data: bytes) -> SignedStatement:
        """The statement in a framed value; :class:`SerdeError` if it is not one."""
        schema_id, payload = unframe(data)
        if schema_id not in self._known:
            text = self.registry.get_schema(schema_id)
            if json.loads(text).get("name") != "SignedStatement":
                raise SerdeError(f"schema id {schema_id} is not a certification SignedStatement")
            self._known.add(schema_id)
        stream = io.BytesIO(payload)
        try:
            datum = schemaless_reader(stream, _PARSED, None)
        except (EOFError, ValueError, TypeError, IndexError, KeyError, struct.error) as exc:
            raise SerdeError(f"malformed SignedStatement (schema id {schema_id}): {exc!r}") from exc
        if stream.tell() != len(payload) or not isinstance(datum, dict):
            raise SerdeError(f"trailing bytes after the SignedStatement (schema id {schema_id})")
        return SignedStatement(datum["payloadType"], datum["signedBody"], datum["signature"])
