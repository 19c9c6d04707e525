"""What :func:`evaluate` returns: a :class:`PolicyDecision` with one verdict per field.

Every field carries its action, the winning rule id and its legal basis; the record carries the
outcome and *every* reason for it (no "0 of N rules matched": each cause is kept).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, NamedTuple

from pcf_exchange.gateway.policy._counters import CounterDelta
from pcf_exchange.gateway.policy._model import (
    Action,
    ActionSpec,
    DestinationGroup,
    Grade,
    Mechanism,
    PersonalInformation,
    Recipient,
)

__all__ = [
    "FieldDecision",
    "Outcome",
    "PolicyDecision",
    "Reason",
    "RecordRef",
    "Verdict",
]


class Outcome(enum.Enum):
    """What happens to the record as a whole."""

    ALLOWED = "allowed"
    """Every field goes as it is (possibly under a usage policy)."""
    TRANSFORMED = "transformed"
    """It goes, with some fields generalised, pseudonymised, encrypted or redacted."""
    HELD = "held"
    """It waits for a human approval; nothing goes until then."""
    BLOCKED = "blocked"
    """It does not go."""


@dataclass(frozen=True, slots=True)
class Reason:
    """One cause of the outcome: a stable code, a sentence, and where it came from."""

    code: str
    message: str
    effect: Outcome
    path: str | None = None
    rule_id: str | None = None
    basis: str | None = None

    def __str__(self) -> str:
        where = f"'{self.path}': " if self.path else ""
        rule = f" [{self.rule_id}]" if self.rule_id else ""
        return f"{where}{self.message}{rule}"


@dataclass(frozen=True, slots=True)
class RecordRef:
    """Which record: its PACT id and the SHA-256 of its canonical JSON."""

    pf_id: str | None
    sha256: str


@dataclass(frozen=True, slots=True, eq=False)
class Verdict:
    """The policy's answer for one field shape (shared by every field of that shape).

    Compared by identity: verdicts are cached per shape, so equal answers are the same object.
    """

    action: Action
    spec: ActionSpec
    rule_id: str
    basis: str
    classes: tuple[str, ...]
    grade: Grade
    personal_information: PersonalInformation
    matched: tuple[str, ...] = ()
    """Every rule that matched, in policy order (the winner is ``rule_id``)."""
    release: ActionSpec | None = None
    """For ``hold``: the action applied once an approver releases the field."""
    usage_policies: tuple[str, ...] = ()
    raised_by: str | None = None
    """The combination that raised this field's grade, if any."""
    effective_action: Action = field(init=False)
    """The action once approved (``hold`` becomes its release action)."""
    discloses: bool = field(init=False)
    """Does the recipient get the value or something derived from it (once approved)?"""
    precise: bool = field(init=False)
    """Does the recipient get the exact value (once approved)?"""
    audit_key: tuple[str, str] = field(init=False)
    """``(action, rule id)``: how the audit log groups fields."""

    def __post_init__(self) -> None:
        effective = self.action
        if self.action is Action.HOLD:
            effective = self.release.action if self.release is not None else Action.ALLOW
        object.__setattr__(self, "effective_action", effective)
        object.__setattr__(self, "discloses", effective.discloses)
        object.__setattr__(self, "precise", effective.precise)
        object.__setattr__(self, "audit_key", (self.action.value, self.rule_id))


FieldActions = tuple[tuple[str, str, tuple[str, ...]], ...]


def group_field_actions(fields: Iterable[FieldDecision]) -> FieldActions:
    """Every field's action for the audit log: ``(action, rule id, paths)``, sorted."""
    groups: dict[tuple[str, str], list[str]] = {}
    for path, verdict in fields:
        paths = groups.get(verdict.audit_key)
        if paths is None:
            groups[verdict.audit_key] = [path]
        else:
            paths.append(path)
    return tuple((a, r, tuple(p)) for (a, r), p in sorted(groups.items()))


class FieldDecision(NamedTuple):
    """One field of the record (its concrete path) and the verdict for it."""

    path: str
    verdict: Verdict

    @property
    def action(self) -> Action:
        return self.verdict.action

    @property
    def rule_id(self) -> str:
        return self.verdict.rule_id

    @property
    def basis(self) -> str:
        return self.verdict.basis


class Layout:
    """What a policy decides from a record's *layout* (its leaf paths) for one recipient and
    purpose: compiled once per layout and shared by every record with the same leaf paths.

    Built by :func:`~gateway.policy.evaluate` (which keys its cache on the exact tuple of leaf
    paths, for records with no binary float and no non-string key); everything that depends on
    values, counters or time is still decided per record. ``plan`` is the transform plan that
    :func:`~gateway.policy.apply` compiles on first use, ``audit_fields`` the audit entry's
    per-layout fields the pipeline fills on first use.
    """

    __slots__ = (
        "after_mechanisms",
        "audit_fields",
        "by_path",
        "counts_pi",
        "field_actions",
        "fields",
        "plan",
        "reasons",
        "record_grade",
        "transformed",
        "usage",
        "verdicts",
    )

    def __init__(
        self,
        fields: tuple[FieldDecision, ...],
        *,
        reasons: tuple[Reason, ...] = (),
        after_mechanisms: tuple[Reason, ...] = (),
        record_grade: Grade = Grade.GENERAL,
        counts_pi: bool = False,
        usage: Mapping[str, Any] | None = None,
        transformed: bool = False,
    ) -> None:
        self.fields = fields
        self.verdicts = frozenset(f[1] for f in fields)
        self.reasons = reasons
        """Combinations and field-level reasons (they come before the mechanisms' reasons)."""
        self.after_mechanisms = after_mechanisms
        """Usage-policy and nothing-to-send reasons (after the mechanisms' reasons)."""
        self.record_grade = record_grade
        self.counts_pi = counts_pi
        """Does the transfer disclose personal information across the border?"""
        self.usage: Mapping[str, Any] = usage or {}
        self.transformed = transformed
        self.field_actions = group_field_actions(fields)
        self.by_path: Mapping[str, FieldDecision] = {f.path: f for f in fields}
        self.plan: Any = None
        self.audit_fields: Mapping[str, Any] | None = None
        """The audit entry's fields that are the same for every decision of this layout
        (recipient, destination, purpose, grade, policy, field actions): filled by the pipeline
        on first use."""


@dataclass(frozen=True)
class PolicyDecision:
    """The policy's decision for one record, one recipient and one purpose at one time."""

    decision_id: str
    policy_id: str
    policy_version: str
    policy_digest: str
    record_ref: RecordRef
    recipient_id: str
    recipient: Recipient | None
    destination: DestinationGroup | None
    purpose: str
    decided_at: datetime
    outcome: Outcome
    fields: tuple[FieldDecision, ...]
    reasons: tuple[Reason, ...]
    record_grade: Grade
    mechanisms: tuple[Mechanism, ...] = ()
    """The valid mechanisms the transfer relies on (empty for domestic transfers)."""
    usage_policies: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    """ODRL usage policies that must travel with the payload, by id."""
    counter_delta: CounterDelta | None = None
    hold_fingerprint: str | None = None
    """Held decisions: what an approval binds to (record, recipient, purpose, policy, fields)."""
    layout: Layout | None = field(default=None, compare=False, repr=False)
    """The compiled layout ``fields`` came from (a cache; ``None`` when decided the long way)."""

    @cached_property
    def by_path(self) -> Mapping[str, FieldDecision]:
        if self.layout is not None and self.layout.fields is self.fields:
            return self.layout.by_path
        return {f.path: f for f in self.fields}

    def field(self, path: str) -> FieldDecision:
        """The decision for the field at *path* (``KeyError`` if the record had no such field)."""
        return self.by_path[path]

    @property
    def jurisdiction(self) -> str | None:
        return self.recipient.jurisdiction if self.recipient is not None else None

    @property
    def held_fields(self) -> tuple[FieldDecision, ...]:
        return tuple(f for f in self.fields if f.action is Action.HOLD)

    def field_actions(self) -> FieldActions:
        """Every field's action for the audit log: ``(action, rule id, paths)``, sorted."""
        if self.layout is not None and self.layout.fields is self.fields:
            return self.layout.field_actions
        return group_field_actions(self.fields)

    def explain(self) -> str:
        """A compliance officer's summary: outcome, then every reason."""
        head = (
            f"{self.outcome.value}: record {self.record_ref.pf_id} → {self.recipient_id}"
            f" ({self.destination.value if self.destination else 'unknown destination'},"
            f" purpose '{self.purpose}') under policy {self.policy_id} {self.policy_version}"
        )
        return "\n".join([head, *(f"  - {r}" for r in self.reasons)])
