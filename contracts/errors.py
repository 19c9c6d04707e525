"""The one error tree of pcf-exchange.

Every error the system raises on purpose is a :class:`PcfError`. The tree is split by *who must
act* (as python-tuf splits repository from download errors)::

    PcfError                      base: .code, .message, diagnostics()
    ├── ContractError             the data is wrong: the sender must fix the record
    │   ├── ValidationFailed      one record broke one or more rules (all listed, with field paths)
    │   │   ├── PcrViolation      a footprint or BOM breaks its product category rule pack
    │   │   ├── PcrOutOfRange     a figure far outside its category's plausible range (held)
    │   │   └── PcrReviewRejected a held record a compliance officer rejected
    │   ├── SerdeError            bytes are not a well-formed framed Avro record
    │   │   └── UnknownSchemaError  the schema id in the frame is not registered
    │   ├── PcrPackError          a rule pack's YAML is malformed (file, key, expected, got)
    │   ├── UnitError             a unit is unknown or cannot be converted to the one wanted
    │   ├── IncompatibleSchemaError  a new schema version would break existing readers
    │   ├── InvalidSchemaError    a schema offered for registration is not valid Avro
    │   └── UnreadableInput       an input file cannot be read at all (missing, not JSON)
    ├── TrustError                the data cannot be trusted: unsigned, forged, revoked, replayed
    │   └── CertificationError    a certificate, body statement, label or registry snapshot refused
    ├── PolicyDenied              the gateway's policy forbids the transfer
    ├── RollupError               a bill of materials cannot be rolled up (cycle, units, missing)
    └── InfrastructureError       something the operator runs is unavailable
        ├── BrokerError           Kafka is unreachable or refused the request
        ├── RegistryError         the schema registry failed
        └── KeyStoreError         a key file is missing, unreadable or has the wrong mode
            ├── PassphraseError   a key's passphrase is wrong, missing or not wanted
            └── KeyFileMissing    a named key file does not exist

Messages follow one shape: *the field path, what was expected, what came in*, e.g.
``'components[3].quantity' must be a decimal > 0 (got '-1')``. The same facts are kept as
attributes so that programs (the DLQ writer, the CLI's ``--json``) never parse messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BrokerError",
    "CertificationError",
    "ContractError",
    "DeclarationInvalid",
    "IncompatibleSchemaError",
    "InfrastructureError",
    "InvalidSchemaError",
    "KeyFileMissing",
    "KeyStoreError",
    "PassphraseError",
    "PcfError",
    "PcrOutOfRange",
    "PcrPackError",
    "PcrReviewRejected",
    "PcrViolation",
    "PolicyDenied",
    "RegistryError",
    "RollupError",
    "SerdeError",
    "TrustError",
    "UnitError",
    "UnknownSchemaError",
    "UnreadableInput",
    "ValidationFailed",
    "Violation",
]


def _short(value: Any, limit: int = 80) -> str:
    """``repr`` of a received value, cut so that a hostile 10 MB string cannot flood a log."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule in one record: where, which rule, what was expected and what came in."""

    path: str
    """Field path in the record as the sender wrote it, e.g. ``pcf.pCfExcludingBiogenicUptake``."""
    code: str
    """Stable machine-readable rule name, e.g. ``decimal_pattern``, ``min_value``."""
    message: str
    """One sentence a supplier can act on."""
    got: str | None = None
    """A short rendering of the value received (``None`` when the field was missing)."""

    def __str__(self) -> str:
        where = f"'{self.path}'" if self.path else "record"
        suffix = f" (got {self.got})" if self.got is not None else ""
        return f"{where}: {self.message}{suffix}"

    @classmethod
    def of(cls, path: str, code: str, message: str, got: Any = ...) -> Violation:
        """Build a violation, rendering *got* briefly (``...`` means "nothing was received")."""
        return cls(path, code, message, None if got is ... else _short(got))


class PcfError(Exception):
    """Base of every deliberate error in pcf-exchange."""

    code: str = "error"
    hint: str = ""
    """What the user should do next; shown by the CLI under the message."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def diagnostics(self) -> str:
        """A human-friendly explanation: the message, then what to do next."""
        return f"{self.message}\n{self.hint}" if self.hint else self.message

    def to_dict(self) -> dict[str, Any]:
        """Machine-readable form for ``--json`` output and DLQ records."""
        return {"code": self.code, "message": self.message, "hint": self.hint or None}


class ContractError(PcfError):
    """The data broke a contract; the sender has to correct the record."""

    code = "contract"
    hint = "Correct the record and publish it again."


class ValidationFailed(ContractError):
    """A record broke one or more semantic rules; *all* violations are listed, not the first."""

    code = "validation"

    def __init__(self, violations: Iterable[Violation], *, subject: str = "record") -> None:
        self.violations: tuple[Violation, ...] = tuple(violations)
        if not self.violations:
            raise ValueError("ValidationFailed needs at least one violation")
        self.subject = subject
        lines = "; ".join(str(v) for v in self.violations)
        count = len(self.violations)
        super().__init__(f"{subject} has {count} problem{'s' * (count != 1)}: {lines}")

    @property
    def first_path(self) -> str:
        return self.violations[0].path

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["violations"] = [
            {"path": v.path, "code": v.code, "message": v.message, "got": v.got}
            for v in self.violations
        ]
        return data


class PcrViolation(ValidationFailed):
    """A footprint or BOM broke rules of the product category rule pack it falls under
    (:mod:`contracts.pcr`); each violation's code is ``pcr.<rule>`` and its message names the
    pack (id and version), the rule, what was expected and what came in."""

    code = "pcr"
    hint = (
        "Correct the record to its category's rule pack (pcfx pcr show PACK), or name the"
        " catalogue entry it belongs to in pcf.productOrSectorSpecificRules, and publish again."
    )


class PcrOutOfRange(ValidationFailed):
    """A figure far outside its category's plausible range: neither accepted nor dropped, but
    held for a compliance officer's review (``pcf.review``); at publish time a warning, and a
    refusal with ``--strict``."""

    code = "pcr_out_of_range"
    hint = (
        "Check the figure and its declared unit; if it is right, a compliance officer can"
        " release the held record (pcfx review release)."
    )


class PcrReviewRejected(ValidationFailed):
    """A record held for review that a compliance officer rejected (named, with the reason)."""

    code = "pcr_review_rejected"
    hint = "Correct the figure the officer rejected and publish the record again."


class DeclarationInvalid(ValidationFailed):
    """A regulatory declaration (EU Battery Regulation Art. 7, CBAM communication, GB/T 24067
    study report; :mod:`gateway.declarations`) cannot be built from its footprint and input file:
    each violation names the field (in the footprint or the input file), what the declaration
    needs and what came in. Nothing is built or released."""

    code = "declaration_invalid"
    hint = (
        "Correct the footprint (publish a new one) or the declaration input file named in the"
        " message, then build the declaration again (--dry-run to check without releasing)."
    )


class PcrPackError(ContractError):
    """A product category rule pack (YAML) is malformed: names the file and the key path."""

    code = "pcr_pack"
    hint = "Fix the pack file; 'pcfx pcr list' loads every pack and reports the first problem."

    def __init__(self, file: str, key: str, expected: str, got: Any) -> None:
        self.file, self.key, self.expected = file, key, expected
        self.got = None if got is None else _short(got)
        received = "nothing" if got is None else self.got
        super().__init__(f"rule pack {file}: '{key}' must be {expected} (got {received})")

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data.update(file=self.file, key=self.key, expected=self.expected, got=self.got)
        return data


class SerdeError(ContractError):
    """Bytes on a topic are not a well-formed, Confluent-framed Avro record."""

    code = "serde"
    hint = "The producer must write Avro with the Confluent framing (magic byte 0 + schema id)."


class UnknownSchemaError(SerdeError):
    """The frame names a schema id that the registry does not know."""

    code = "unknown_schema"
    hint = (
        "Register the schema (the operator: python -m pcf_exchange.infra.compose.register_schemas)"
        " or point at the right registry."
    )


class UnitError(ContractError):
    """A unit is unknown, or cannot be converted to the unit asked for."""

    code = "unit"


class IncompatibleSchemaError(ContractError):
    """A new schema version would break readers of earlier versions."""

    code = "incompatible_schema"
    hint = "Give new fields defaults and never remove or retype a field old readers need."

    def __init__(self, subject: str, incompatibilities: Sequence[str]) -> None:
        self.subject = subject
        self.incompatibilities = tuple(incompatibilities)
        super().__init__(
            f"schema for subject '{subject}' is not backward compatible: "
            + "; ".join(self.incompatibilities)
        )


class InvalidSchemaError(ContractError):
    """A schema offered to the registry is not valid Avro."""

    code = "invalid_schema"
    hint = "Fix the .avsc file; check it with 'python -m pcf_exchange.contracts._avrogen --check'."


class TrustError(PcfError):
    """A record cannot be trusted: unsigned, unknown or revoked key, forged, or replayed."""

    code = "trust"
    hint = "Sign with a key the operator registered for this supplier, with a higher sequence."

    def __init__(self, message: str, *, reason: str = "trust", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason
        """Stable reason code: ``unsigned``, ``unknown_key``, ``revoked_key``,
        ``key_supplier_mismatch``, ``bad_signature``, ``replayed``, ``sequence_reused`` (a
        supplier record: one sequence signed over two contents; an older sequence is not an
        error at all, see :mod:`streams.ingest`)."""

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["reason"] = self.reason
        return data


class CertificationError(TrustError):
    """A certification statement, carbon label or registry snapshot cannot be trusted.

    ``reason`` names the rule: ``unknown_body``, ``unknown_key``, ``bad_signature``,
    ``blacklisted_body``, ``expired_body``, ``body_not_yet_valid``, ``out_of_scope``,
    ``expired_certificate``, ``revoked_certificate``, ``unknown_certificate``, ``stale``,
    ``label_mismatch``, ``malformed``, ``bad_snapshot``, ``replayed``, ``duplicate_id``.
    """

    code = "certification"
    hint = (
        "Check the certificate's status (pcfx certificates status) and its body (pcfx bodies show)."
    )


class PolicyDenied(PcfError):
    """The gateway's policy forbids this transfer (deny by default)."""

    code = "policy_denied"
    hint = "Ask a compliance officer to review the policy or the recipient's legal mechanism."


class RollupError(PcfError):
    """A bill of materials cannot be rolled up as declared."""

    code = "rollup"
    hint = "Fix the bill of materials (units, quantities, references) and publish it again."

    def __init__(self, message: str, *, path: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path


class InfrastructureError(PcfError):
    """Something the operator runs (broker, registry, key store) is unavailable or misconfigured."""

    code = "infrastructure"


class BrokerError(InfrastructureError):
    """Kafka is unreachable, or refused a request."""

    code = "broker"
    hint = "Start a broker with 'pcfx broker start' or set KAFKA_BOOTSTRAP_SERVERS."


class RegistryError(InfrastructureError):
    """The schema registry failed or is unreachable."""

    code = "registry"


class KeyStoreError(InfrastructureError):
    """A key file is missing, unreadable, encrypted with another passphrase, or too open."""

    code = "key_store"


class PassphraseError(KeyStoreError):
    """A private key's passphrase is wrong, missing, or given for a key that has none.

    A credential the user typed, not a store that is down: the CLI exits ``1`` (failed
    verification), not ``3``. A :class:`KeyStoreError` so that callers catching key problems
    keep catching it."""

    code = "passphrase"


class KeyFileMissing(KeyStoreError):
    """A key file named on the command line does not exist: the CLI exits ``4`` (unreadable
    input), like any other missing input file."""

    code = "unreadable_input"


class UnreadableInput(ContractError):
    """An input file or argument cannot be read at all (missing, not JSON, unknown format):
    the CLI exits ``4``."""

    code = "unreadable_input"
    hint = "Check the path and the file's format."
