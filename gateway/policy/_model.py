"""The policy model: classifications, recipients, legal mechanisms, rules, counters.

Frozen dataclasses built by the loader from a schema-checked YAML file; nothing here does I/O.
Enum order matters where it says so: ``Action.rank`` and ``Grade.rank`` define "most restrictive".
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from pcf_exchange.gateway.policy._paths import Pattern

__all__ = [
    "CHINA_TIME",
    "Action",
    "ActionSpec",
    "Combination",
    "CounterMetric",
    "CounterThreshold",
    "DataClass",
    "DestinationGroup",
    "ExemptionBasis",
    "Exporter",
    "FieldClassification",
    "GeneraliseTo",
    "Grade",
    "Mechanism",
    "MechanismRequirement",
    "MechanismType",
    "PersonalInformation",
    "Policy",
    "Recipient",
    "RecipientType",
    "Rule",
    "RuleWhen",
]

CHINA_TIME = timezone(timedelta(hours=8), "CST")
"""Calendar years for the PI counters and mechanism expiry dates are read in Beijing time."""


class Action(enum.Enum):
    """What happens to one field. Declared from least to most restrictive (see :attr:`rank`)."""

    ALLOW = "allow"
    ALLOW_WITH_USAGE_POLICY = "allow_with_usage_policy"
    ENCRYPT = "encrypt"
    GENERALISE = "generalise"
    PSEUDONYMISE = "pseudonymise"
    HOLD = "hold"
    REDACT = "redact"
    BLOCK = "block"

    rank: int
    """Most-restrictive-wins order: the recipient learns less as the rank rises.

    ``encrypt`` sends the exact value (to the recipient's need-to-know key), so it ranks below
    ``generalise``; ``hold`` withholds until approved; ``redact`` never sends the field;
    ``block`` stops the whole record.
    """
    discloses: bool
    """Does the recipient receive the value or something derived from it?"""
    precise: bool
    """Does the recipient receive the exact value (the "accuracy and scale" test)?"""


for _rank, _action in enumerate(Action):
    _action.rank = _rank
    _action.discloses = _action not in (Action.REDACT, Action.BLOCK)
    _action.precise = _action in (Action.ALLOW, Action.ALLOW_WITH_USAGE_POLICY, Action.ENCRYPT)


class Grade(enum.Enum):
    """DSL Art. 21 grades, ascending."""

    GENERAL = "general"
    IMPORTANT = "important"
    CORE = "core"

    rank: int


for _rank, _grade in enumerate(Grade):
    _grade.rank = _rank


class PersonalInformation(enum.Enum):
    """PIPL categories, ascending."""

    NONE = "none"
    PI = "pi"
    SENSITIVE_PI = "sensitive_pi"

    rank: int


for _rank, _pi in enumerate(PersonalInformation):
    _pi.rank = _rank


class DestinationGroup(enum.Enum):
    """Where a recipient sits (regulation.md §6): mainland China, EU/EEA, anywhere else."""

    DOMESTIC = "domestic"
    EU = "eu"
    OTHER = "other"


class RecipientType(enum.Enum):
    CUSTOMER = "customer"
    CERTIFICATION_BODY = "certification_body"
    AUTHORITY = "authority"
    JUDICIAL_AUTHORITY = "judicial_authority"
    """Judicial or law-enforcement body: DSL Art. 36 needs PRC approval for foreign ones."""


class MechanismType(enum.Enum):
    """PIPL Art. 38 mechanisms, plus the exemptions of the 2024 Provisions."""

    EXEMPTION = "exemption"
    STANDARD_CONTRACT = "standard_contract"
    CERTIFICATION = "certification"
    SECURITY_ASSESSMENT = "security_assessment"


class ExemptionBasis(enum.Enum):
    """Which exemption of the Provisions on Cross-border Data Flows (2024) is relied on."""

    INTERNATIONAL_TRADE = "international_trade"
    PI_DE_MINIMIS = "pi_de_minimis"
    FTZ_OFF_NEGATIVE_LIST = "ftz_off_negative_list"
    CONTRACT_NECESSITY = "contract_necessity"


class GeneraliseTo(enum.Enum):
    PROVINCE = "province"
    COUNTRY = "country"
    INTENSITY = "intensity"


class CounterMetric(enum.Enum):
    """Distinct individuals whose PI left the country since 1 January (Beijing time)."""

    PI_INDIVIDUALS = "pi_individuals"
    SENSITIVE_PI_INDIVIDUALS = "sensitive_pi_individuals"


@dataclass(frozen=True, slots=True)
class DataClass:
    """A named class of data (a row of regulation.md §6.1) and what the law says it is."""

    name: str
    grade: Grade
    personal_information: PersonalInformation = PersonalInformation.NONE
    trade_secret: bool = False
    licence_restricted: bool = False
    description: str = ""
    basis: str = ""


@dataclass(frozen=True, slots=True)
class FieldClassification:
    """``path`` pattern → classes. A field matched by several entries gets every class."""

    pattern: Pattern
    classes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """An action with its parameters, as a rule states it for one destination group."""

    action: Action
    usage_policy: str | None = None
    to: GeneraliseTo | None = None
    source: str | None = None
    """generalise to province/country: pattern of the field to read the region from."""
    denominator: str | None = None
    """generalise to intensity: pattern of the quantity to divide by (e.g. production volume)."""
    denominator_unit: str | None = None
    significant_digits: int = 4
    then: ActionSpec | None = None
    """hold only: what to do with the field once an approver releases it."""

    def describe(self) -> str:
        if self.action is Action.GENERALISE and self.to is not None:
            return f"generalise to {self.to.value}"
        if self.action is Action.ALLOW_WITH_USAGE_POLICY and self.usage_policy:
            return f"allow with usage policy '{self.usage_policy}'"
        if self.action is Action.HOLD and self.then is not None:
            return f"hold, then {self.then.describe()}"
        return str(self.action.value)


@dataclass(frozen=True, slots=True)
class RuleWhen:
    """A rule's conditions; all given ones must hold. ``None`` means "any"."""

    classes: frozenset[str] | None = None
    grades: frozenset[Grade] | None = None
    personal_information: frozenset[PersonalInformation] | None = None
    trade_secret: bool | None = None
    licence_restricted: bool | None = None
    recipient_types: frozenset[RecipientType] | None = None
    purposes: frozenset[str] | None = None

    @property
    def grants(self) -> bool:
        """A rule with no field condition only restricts; it can never let an unruled field out."""
        return any(
            c is not None
            for c in (
                self.classes,
                self.grades,
                self.personal_information,
                self.trade_secret,
                self.licence_restricted,
            )
        )


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    when: RuleWhen
    actions: Mapping[DestinationGroup, ActionSpec]
    basis: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class Combination:
    """Record-level re-classification: these classes disclosed *precisely together* raise the grade.

    ``all_of`` holds alternatives per slot: ``[[address, coordinates], volume, energy]`` fires when
    some address-or-coordinates field, some volume field and some energy field all go out exactly.
    """

    id: str
    all_of: tuple[frozenset[str], ...]
    raise_to: Grade
    basis: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class Mechanism:
    """A legal mechanism a recipient's transfers rely on, with its reference and expiry."""

    type: MechanismType
    reference: str
    expires: date
    basis: ExemptionBasis | None = None

    @property
    def kind(self) -> str:
        """``security_assessment`` or ``exemption/international_trade``: what requirements name."""
        if self.type is MechanismType.EXEMPTION and self.basis is not None:
            return f"exemption/{self.basis.value}"
        return self.type.value

    def valid_at(self, now: datetime) -> bool:
        """Valid through the whole of its expiry day, Beijing time."""
        return now.astimezone(CHINA_TIME).date() <= self.expires

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "reference": self.reference, "expires": self.expires.isoformat()}


@dataclass(frozen=True, slots=True)
class Recipient:
    id: str
    name: str
    jurisdiction: str
    type: RecipientType
    encryption_key: bytes
    """Raw X25519 public key the outbound message is encrypted to."""
    verify_key: str
    """Reference to the recipient's Ed25519 verify key (for its requests and receipts)."""
    purposes: frozenset[str]
    mechanisms: tuple[Mechanism, ...]
    field_encryption_key: bytes | None = None
    """Need-to-know X25519 key for field-level encryption; the message key when absent."""
    usage_policies_accepted: frozenset[str] = frozenset()

    @property
    def field_key(self) -> bytes:
        return self.field_encryption_key or self.encryption_key


@dataclass(frozen=True, slots=True)
class MechanismRequirement:
    """Cross-border transfers matching ``when`` need one valid mechanism of these kinds."""

    id: str
    requires_any: tuple[str, ...]
    basis: str
    exports_personal_information: bool | None = None
    exports_sensitive_personal_information: bool | None = None
    exports_grade: Grade | None = None
    exporter_ciio: bool | None = None


@dataclass(frozen=True, slots=True)
class CounterThreshold:
    """When the yearly count reaches ``at_least``, one valid mechanism of these kinds is needed."""

    id: str
    metric: CounterMetric
    at_least: int
    requires_any: tuple[str, ...]
    basis: str


@dataclass(frozen=True, slots=True)
class Exporter:
    """Facts about the exporting company that change what the law requires."""

    name: str
    ciio: bool = False


@dataclass(frozen=True)
class Policy:
    """A loaded, validated policy. Build it with :func:`gateway.load_policy`."""

    id: str
    version: str
    digest: str
    """SHA-256 of the canonical JSON of the policy document: what the audit log records."""
    exporter: Exporter
    destinations: Mapping[str, DestinationGroup]
    classes: Mapping[str, DataClass]
    fields: tuple[FieldClassification, ...]
    rules: tuple[Rule, ...]
    combinations: tuple[Combination, ...]
    recipients: Mapping[str, Recipient]
    usage_policies: Mapping[str, Mapping[str, Any]]
    requirements: tuple[MechanismRequirement, ...]
    thresholds: tuple[CounterThreshold, ...]
    source: str = "<policy>"
    _memo: dict[Any, Any] = field(default_factory=dict, init=False, compare=False, repr=False)
    """Evaluation caches; ``init=False`` so ``dataclasses.replace`` gives a copy its own."""

    def destination_of(self, jurisdiction: str) -> DestinationGroup | None:
        """``CN`` is domestic; other countries only if the policy lists them (deny by default)."""
        if jurisdiction == "CN":
            return DestinationGroup.DOMESTIC
        return self.destinations.get(jurisdiction)


def utc_now() -> datetime:
    return datetime.now(UTC)
