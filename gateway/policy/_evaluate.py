"""``evaluate(policy, record, recipient, purpose, counters, now) -> PolicyDecision``, pure.

Per field, then per record: classify by path, match rules for the recipient's destination group,
most restrictive wins, re-classify combinations, then check legal mechanisms and PI counters.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, NamedTuple

from pcf_exchange.contracts.canonical import canonical_json
from pcf_exchange.gateway.policy._counters import CounterDelta, CounterState
from pcf_exchange.gateway.policy._decision import (
    FieldDecision,
    Layout,
    Outcome,
    PolicyDecision,
    Reason,
    RecordRef,
    Verdict,
)
from pcf_exchange.gateway.policy._model import (
    CHINA_TIME,
    Action,
    ActionSpec,
    CounterMetric,
    DestinationGroup,
    GeneraliseTo,
    Grade,
    Mechanism,
    PersonalInformation,
    Policy,
    Recipient,
    RecipientType,
    Rule,
)
from pcf_exchange.gateway.policy._paths import (
    FLOAT_SHAPE,
    Extractor,
    compile_extractor,
    iter_leaves,
    leaf_paths,
)

__all__ = ["evaluate", "record_sha256"]

_DECISION_NAMESPACE = uuid.UUID("5b0f7c1e-3f5a-4c59-9a55-8f6c2f1d0a11")
_CACHE_LIMIT = 50_000
_LAYOUT_LIMIT = 4096
"""Compiled layouts kept per (recipient, purpose); a schema has a few, so this is generous."""
_EXTRACTORS = 4
"""Layout extractors tried per (recipient, purpose) before the walk (the newest ones)."""
_DENY = "deny-by-default"
_BLOCK = ActionSpec(Action.BLOCK)
_ALLOW = ActionSpec(Action.ALLOW)
_ALL_KINDS = (
    "exemption/international_trade",
    "exemption/pi_de_minimis",
    "exemption/ftz_off_negative_list",
    "exemption/contract_necessity",
    "standard_contract",
    "certification",
    "security_assessment",
)


def record_sha256(record: Mapping[str, Any], *, checked: bool = False) -> str:
    """SHA-256 (hex) of the record's canonical JSON: the reference the audit log keeps.

    A record that has no canonical form (a binary float, a non-string key) is always blocked by
    :func:`evaluate`; its reference is then the SHA-256 of its ``repr``. *checked*: a walk of
    the record already found no float and no non-string key (``canonical_json(checked=True)``).
    """
    try:
        data = canonical_json(record, checked=checked)
    except (TypeError, ValueError):
        data = repr(record).encode("utf-8", "backslashreplace")
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------------------------
# per-shape verdicts, cached on the policy


class _Context(NamedTuple):
    """Everything besides the field's classes that a verdict depends on."""

    recipient_type: RecipientType
    group: DestinationGroup
    purpose: str
    raise_to: Grade | None = None
    raised_by: str | None = None


class _Facts(NamedTuple):
    """What the policy says about a field: its classes and the labels they carry."""

    classes: Sequence[str]
    grade: Grade
    pi: PersonalInformation
    trade_secret: bool
    licence: bool


class _Index:
    """Caches: shape → classes, and (recipient type, group, purpose, raise) → shape → verdict."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.classes: dict[str, tuple[str, ...]] = {}
        self.tables: dict[_Context, dict[str, Verdict]] = {}
        self.verdicts: dict[tuple[Any, ...], Verdict] = {}
        self.compiled: dict[tuple[str, str], dict[tuple[str, ...], Layout]] = {}
        self.extractors: dict[tuple[str, str], list[tuple[Extractor, Layout]]] = {}
        self.extractor_by_paths: dict[tuple[str, ...], Extractor | None] = {}

    def layouts(self, recipient: str, purpose: str) -> dict[tuple[str, ...], Layout]:
        """The compiled layouts for one recipient and purpose, by leaf paths."""
        found = self.compiled.get((recipient, purpose))
        if found is None:
            if len(self.compiled) > 1024:
                self.compiled.clear()
            found = self.compiled[(recipient, purpose)] = {}
        return found

    def extractors_for(self, recipient: str, purpose: str) -> list[tuple[Extractor, Layout]]:
        """The newest compiled layouts' extractors for one recipient and purpose (newest first)."""
        found = self.extractors.get((recipient, purpose))
        if found is None:
            if len(self.extractors) > 1024:
                self.extractors.clear()
            found = self.extractors[(recipient, purpose)] = []
        return found

    def verdict(self, classes: tuple[str, ...], context: _Context) -> Verdict:
        """One shared verdict per (classes, recipient type, group, purpose, raise)."""
        key = (classes, context)
        found = self.verdicts.get(key)
        if found is None:
            if len(self.verdicts) > _CACHE_LIMIT:
                self.verdicts.clear()
            found = self.verdicts[key] = _compute_verdict(self.policy, classes, context)
        return found

    def classes_for(self, shape: str) -> tuple[str, ...]:
        found = self.classes.get(shape)
        if found is None:
            names: list[str] = []
            for entry in self.policy.fields:
                if entry.pattern.matches(shape):
                    names.extend(c for c in entry.classes if c not in names)
            found = tuple(names)
            if len(self.classes) > _CACHE_LIMIT:
                self.classes.clear()
            self.classes[shape] = found
        return found

    def table(self, key: _Context) -> dict[str, Verdict]:
        table = self.tables.get(key)
        if table is None:
            if len(self.tables) > 1024:
                self.tables.clear()
            table = self.tables[key] = {}
        elif len(table) > _CACHE_LIMIT:
            table.clear()
        return table


def _index(policy: Policy) -> _Index:
    index = policy._memo.get("index")
    if index is None:
        index = policy._memo["index"] = _Index(policy)
    assert isinstance(index, _Index)
    return index


def _unknown_field_verdict() -> Verdict:
    return Verdict(
        action=Action.BLOCK,
        spec=_BLOCK,
        rule_id=_DENY,
        basis="the field is not classified by the policy (deny by default)",
        classes=(),
        grade=Grade.GENERAL,
        personal_information=PersonalInformation.NONE,
    )


_UNKNOWN = _unknown_field_verdict()
_FLOAT = Verdict(
    action=Action.BLOCK,
    spec=_BLOCK,
    rule_id="decimal-as-string",
    basis="PACT v3 decimals travel as strings; a binary float cannot be sent exactly",
    classes=(),
    grade=Grade.GENERAL,
    personal_information=PersonalInformation.NONE,
)


def _rule_matches(rule: Rule, facts: _Facts, context: _Context) -> bool:
    w = rule.when
    return (
        (w.classes is None or any(c in w.classes for c in facts.classes))
        and (w.grades is None or facts.grade in w.grades)
        and (w.personal_information is None or facts.pi in w.personal_information)
        and (w.trade_secret is None or w.trade_secret == facts.trade_secret)
        and (w.licence_restricted is None or w.licence_restricted == facts.licence)
        and (w.recipient_types is None or context.recipient_type in w.recipient_types)
        and (w.purposes is None or context.purpose in w.purposes)
    )


def _most_restrictive(specs: Sequence[tuple[str, ActionSpec]]) -> tuple[str, ActionSpec]:
    """Highest rank wins (first in policy order on ties); generalisations merge to the coarsest."""
    rule_id, spec = max(specs, key=lambda item: item[1].action.rank)
    if spec.action is not Action.GENERALISE:
        return rule_id, spec
    generalise = [(r, s) for r, s in specs if s.action is Action.GENERALISE]
    targets = {s.to for _, s in generalise}
    if len(targets) == 1:
        return rule_id, spec
    if targets == {GeneraliseTo.PROVINCE, GeneraliseTo.COUNTRY}:
        return next((r, s) for r, s in generalise if s.to is GeneraliseTo.COUNTRY)
    # Two generalisations that cannot both hold (a region and an intensity): send nothing.
    ids = "+".join(r for r, _ in generalise)
    return f"conflict:{ids}", ActionSpec(Action.REDACT)


def _compute_verdict(policy: Policy, classes: tuple[str, ...], context: _Context) -> Verdict:
    if not classes:
        return _UNKNOWN
    recipient_type, group, purpose, raise_to, raised_by = context
    data_classes = [policy.classes[c] for c in classes]
    grade = max((d.grade for d in data_classes), key=lambda g: g.rank)
    if raise_to is not None and raise_to.rank > grade.rank:
        grade = raise_to
    pi = max((d.personal_information for d in data_classes), key=lambda p: p.rank)
    trade_secret = any(d.trade_secret for d in data_classes)
    licence = any(d.licence_restricted for d in data_classes)
    facts = _Facts(classes, grade, pi, trade_secret, licence)
    matched = [r for r in policy.rules if _rule_matches(r, facts, context)]
    matched_ids = tuple(r.id for r in matched)
    if not any(r.when.grants for r in matched):
        return Verdict(
            action=Action.BLOCK,
            spec=_BLOCK,
            rule_id=_DENY,
            basis=(
                f"no rule grants class {', '.join(classes)} ({grade.value}) to a {group.value}"
                f" {recipient_type.value} for purpose '{purpose}' (deny by default)"
            ),
            classes=classes,
            grade=grade,
            personal_information=pi,
            matched=matched_ids,
            raised_by=raised_by,
        )
    specs = [(r.id, r.actions[group]) for r in matched]
    rule_id, spec = _most_restrictive(specs)
    release: ActionSpec | None = None
    if spec.action is Action.HOLD:
        others = [(r, s) for r, s in specs if s.action is not Action.HOLD]
        others += [(r, s.then) for r, s in specs if s.action is Action.HOLD and s.then is not None]
        release = _most_restrictive(others)[1] if others else _ALLOW
    usage = {s.usage_policy for _, s in specs if s.usage_policy}
    if release is not None and release.usage_policy:
        usage.add(release.usage_policy)
    by_id = {r.id: r for r in matched}
    basis = by_id[rule_id].basis if rule_id in by_id else "conflicting generalisations"
    return Verdict(
        action=spec.action,
        spec=spec,
        rule_id=rule_id,
        basis=basis,
        classes=classes,
        grade=grade,
        personal_information=pi,
        matched=matched_ids,
        release=release,
        usage_policies=tuple(sorted(usage)),
        raised_by=raised_by,
    )


# ----------------------------------------------------------------------------------------------
# the record


class DecisionTime(NamedTuple):
    """What :func:`evaluate` reads off *now*, worked out once: a batch of decisions at one time
    (``gateway._pipeline.prepare_transfers``) passes one of these instead of the datetime."""

    now: datetime
    year: int
    """The PI counting year: *now*'s year in Beijing time (``_counters.counting_year``)."""
    day: date
    """*now*'s date in Beijing time (the mechanisms' memo day)."""
    iso: str
    """``now.isoformat()``, part of the decision id."""

    @classmethod
    def of(cls, now: datetime) -> DecisionTime:
        if now.tzinfo is None:
            raise ValueError("'now' must be timezone-aware (got a naive datetime)")
        beijing = now.astimezone(CHINA_TIME)
        return cls(now, beijing.year, beijing.date(), now.isoformat())


def evaluate(
    policy: Policy,
    record: Mapping[str, Any],
    recipient: str,
    purpose: str,
    counters: CounterState,
    now: datetime | DecisionTime,
    *,
    record_hash: str | None = None,
) -> PolicyDecision:
    """Decide what of *record* may go to *recipient* for *purpose* at *now*. Pure; never raises
    on bad input: an unknown recipient, jurisdiction, field or an expired mechanism is a reason
    in a ``BLOCKED`` decision.

    Steps: (1) recipient, jurisdiction, purpose; (2) per field: classes by path, rules for the
    destination group, most restrictive wins; (3) combinations re-classify; (4) record grade;
    (5) cross-border: PI counters, mechanisms (valid at *now*), usage policies; (6) outcome.
    """
    at = now if type(now) is DecisionTime else DecisionTime.of(now)  # type: ignore[arg-type]
    now = at.now
    pf_id = record.get("id") if isinstance(record.get("id"), str) else None
    reasons: list[Reason] = []
    blocked = Outcome.BLOCKED

    # (1) recipient, jurisdiction, purpose
    target: Recipient | None = policy.recipients.get(recipient)
    group: DestinationGroup | None = None
    if target is None:
        reasons.append(
            Reason(
                "unknown_recipient",
                f"recipient '{recipient}' is not declared in the policy (deny by default)",
                blocked,
            )
        )
    else:
        group = policy.destination_of(target.jurisdiction)
        if group is None:
            reasons.append(
                Reason(
                    "unknown_jurisdiction",
                    f"jurisdiction '{target.jurisdiction}' of recipient"
                    f" '{recipient}' is in no destination group (deny by default)",
                    blocked,
                )
            )
        if purpose not in target.purposes:
            allowed = ", ".join(sorted(target.purposes))
            reasons.append(
                Reason(
                    "purpose_not_allowed",
                    f"purpose '{purpose}' is not allowed for recipient"
                    f" '{recipient}' (allowed: {allowed})",
                    blocked,
                )
            )

    # (2)-(4) and the layout-only parts of (5): compiled once per (recipient, purpose, leaf
    # paths) and cached on the policy, since they depend on nothing but the paths
    layout: Layout | None = None
    if target is None or group is None:
        leaves = iter_leaves(record)
        values = [value for _, _, value in leaves]
        deny = Verdict(
            Action.BLOCK,
            _BLOCK,
            _DENY,
            "no known recipient and destination",
            (),
            Grade.GENERAL,
            PersonalInformation.NONE,
        )
        fields: tuple[FieldDecision, ...] = tuple(FieldDecision(p, deny) for p, _, _ in leaves)
        static = Layout(fields)
        sha = record_hash or record_sha256(record)
    else:
        static, values, plain = _layout(policy, record, target, group, purpose)
        fields = static.fields
        layout = static
        sha = record_hash or record_sha256(record, checked=plain)
    reasons.extend(static.reasons)
    verdicts = static.verdicts
    record_grade = static.record_grade

    # (5) cross-border: counters, mechanisms; usage policies
    year = at.year  # what _counters.counting_year(now) gives
    mechanisms: tuple[Mechanism, ...] = ()
    delta = CounterDelta(year=year)
    usage: dict[str, Any] = {}
    if target is not None and group is not None:
        if static.counts_pi:
            delta = _count_individuals(fields, values, counters.for_year(year), year)
        if group is not DestinationGroup.DOMESTIC:
            mechanisms = _check_mechanisms(
                policy,
                target,
                verdicts=verdicts,
                record_grade=record_grade,
                delta=delta,
                now=now,
                day=at.day,
                reasons=reasons,
            )
        usage = dict(static.usage)
        reasons.extend(static.after_mechanisms)

    # (6) outcome
    effects = {r.effect for r in reasons}
    if Outcome.BLOCKED in effects:
        outcome = Outcome.BLOCKED
    elif Outcome.HELD in effects:
        outcome = Outcome.HELD
    elif static.transformed:
        outcome = Outcome.TRANSFORMED
    else:
        outcome = Outcome.ALLOWED

    decided = at.iso
    decision_id = decision_uuid(f"{sha}|{recipient}|{purpose}|{policy.digest}|{decided}")
    fingerprint = None
    if outcome is Outcome.HELD:
        fingerprint = hold_fingerprint(sha, recipient, purpose, policy.digest, fields)
    return PolicyDecision(
        decision_id=decision_id,
        policy_id=policy.id,
        policy_version=policy.version,
        policy_digest=policy.digest,
        record_ref=RecordRef(pf_id=pf_id, sha256=sha),
        recipient_id=recipient,
        recipient=target,
        destination=group,
        purpose=purpose,
        decided_at=now,
        outcome=outcome,
        fields=tuple(fields),
        reasons=tuple(reasons),
        record_grade=record_grade,
        mechanisms=mechanisms,
        usage_policies=usage,
        counter_delta=delta,
        hold_fingerprint=fingerprint,
        layout=layout,
    )


_NAMESPACE_BYTES = _DECISION_NAMESPACE.bytes


def decision_uuid(name: str) -> str:
    """``str(uuid.uuid5(_DECISION_NAMESPACE, name))`` (RFC 4122 §4.3, a test pins it) without the
    ``UUID`` object: SHA-1 of namespace and name, version 5 and variant bits, hex with dashes."""
    digest = bytearray(
        hashlib.sha1(_NAMESPACE_BYTES + name.encode("utf-8"), usedforsecurity=False).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    x = digest.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


_NO_PI = PersonalInformation.NONE
_AS_IS = (Action.ALLOW, Action.ALLOW_WITH_USAGE_POLICY)


def hold_fingerprint(
    sha: str, recipient: str, purpose: str, policy_digest: str, fields: Iterable[FieldDecision]
) -> str:
    """What an approval binds to: the same record, recipient, purpose, policy and held fields."""
    held = sorted((f.path, f.verdict.rule_id) for f in fields if f.verdict.action is Action.HOLD)
    body = {
        "record": sha,
        "recipient": recipient,
        "purpose": purpose,
        "policy": policy_digest,
        "held": held,
    }
    return hashlib.sha256(canonical_json(body)).hexdigest()


def _count_individuals(
    fields: Sequence[FieldDecision],
    values: Sequence[Any],
    state: CounterState,
    year: int,
) -> CounterDelta:
    """Individuals whose PI this transfer discloses: one per object holding PI fields."""
    people: dict[str, list[tuple[str, Any]]] = {}
    sensitive: set[str] = set()
    for f, value in zip(fields, values, strict=True):
        v = f.verdict
        if v.personal_information is PersonalInformation.NONE or not v.discloses:
            continue
        parent, _, name = f.path.rpartition(".")
        people.setdefault(parent, []).append((name, value))
        if v.personal_information is PersonalInformation.SENSITIVE_PI:
            sensitive.add(parent)
    if not people:
        return CounterDelta(year=year, counts_after={m: state.count(m) for m in CounterMetric})
    added: dict[CounterMetric, set[str]] = {m: set() for m in CounterMetric}
    for parent, found in people.items():
        key = state.individual_key(found)
        metric = (
            CounterMetric.SENSITIVE_PI_INDIVIDUALS
            if parent in sensitive
            else CounterMetric.PI_INDIVIDUALS
        )
        if not state.contains(metric, key):
            added[metric].add(key)
    return CounterDelta(
        year=year,
        added={m: frozenset(k) for m, k in added.items()},
        counts_after={m: state.count(m) + len(added[m]) for m in CounterMetric},
    )


def _check_mechanisms(
    policy: Policy,
    target: Recipient,
    *,
    verdicts: Iterable[Verdict],
    record_grade: Grade,
    delta: CounterDelta,
    now: datetime,
    day: date,
    reasons: list[Reason],
) -> tuple[Mechanism, ...]:
    """Every cross-border requirement needs one mechanism of a listed kind, valid at *now*.

    Without personal information the answer depends only on recipient, grade and (Beijing) day,
    so it is memoised per policy; *day* is *now*'s date in Beijing time (the caller has it).
    """
    flags: dict[Any, tuple[bool, bool]] = policy._memo.setdefault("mechanism_flags", {})
    found = flags.get(verdicts) if isinstance(verdicts, frozenset) else None
    if found is None:
        exports = [v for v in verdicts if v.discloses]
        pi = any(v.personal_information is not PersonalInformation.NONE for v in exports)
        spi = any(v.personal_information is PersonalInformation.SENSITIVE_PI for v in exports)
        if isinstance(verdicts, frozenset):  # a layout's verdicts: (pi, spi) once per layout
            if len(flags) > _CACHE_LIMIT:
                flags.clear()
            flags[verdicts] = (pi, spi)
    else:
        pi, spi = found
    memo: dict[Any, tuple[tuple[Mechanism, ...], tuple[Reason, ...]]] = policy._memo.setdefault(
        "mechanisms", {}
    )
    key = None
    if not pi:
        key = (target.id, record_grade, day)
        hit = memo.get(key)
        if hit is not None:
            reasons.extend(hit[1])
            return hit[0]
    first_reason = len(reasons)
    required: list[tuple[str, tuple[str, ...], str]] = [
        (
            "cross-border",
            _ALL_KINDS,
            "PIPL Art. 38 / DSL Art. 31: every cross-border transfer relies on a legal mechanism",
        ),
    ]
    for req in policy.requirements:
        if (
            (req.exports_personal_information is None or req.exports_personal_information == pi)
            and (
                req.exports_sensitive_personal_information is None
                or req.exports_sensitive_personal_information == spi
            )
            and (req.exports_grade is None or record_grade.rank >= req.exports_grade.rank)
            and (req.exporter_ciio is None or req.exporter_ciio == policy.exporter.ciio)
        ):
            required.append((req.id, req.requires_any, req.basis))
    for threshold in policy.thresholds:
        exporting = spi if threshold.metric is CounterMetric.SENSITIVE_PI_INDIVIDUALS else pi
        count = delta.counts_after.get(threshold.metric, 0)
        if exporting and count >= threshold.at_least:
            required.append(
                (
                    threshold.id,
                    threshold.requires_any,
                    f"{threshold.basis} ({count} {threshold.metric.value} in {delta.year},"
                    f" threshold {threshold.at_least})",
                )
            )
    used: list[Mechanism] = []
    for req_id, kinds, basis in required:
        fitting = [m for m in target.mechanisms if m.kind in kinds]
        valid = [m for m in fitting if m.valid_at(now)]
        if valid:
            used.extend(m for m in valid if m not in used)
            continue
        if fitting:
            expired = "; ".join(f"{m.kind} '{m.reference}' expired on {m.expires}" for m in fitting)
            reasons.append(
                Reason(
                    "mechanism_expired",
                    f"{expired}: requirement '{req_id}' needs a valid one of {', '.join(kinds)}",
                    Outcome.BLOCKED,
                    rule_id=req_id,
                    basis=basis,
                )
            )
        else:
            held = ", ".join(m.kind for m in target.mechanisms) or "none"
            reasons.append(
                Reason(
                    "mechanism_missing",
                    f"requirement '{req_id}' needs one of"
                    f" {', '.join(kinds)}; recipient '{target.id}' has {held}",
                    Outcome.BLOCKED,
                    rule_id=req_id,
                    basis=basis,
                )
            )
    if key is not None:
        if len(memo) > _CACHE_LIMIT:
            memo.clear()
        memo[key] = (tuple(used), tuple(reasons[first_reason:]))
    return tuple(used)


# ----------------------------------------------------------------------------------------------
# the layout: everything decided from the leaf paths alone


def _layout(
    policy: Policy,
    record: Mapping[str, Any],
    target: Recipient,
    group: DestinationGroup,
    purpose: str,
) -> tuple[Layout, list[Any], bool]:
    """The compiled layout of *record* for this recipient and purpose, its leaf values, and
    whether the walk found no binary float and no non-string key.

    Records of one schema from one producer share a handful of layouts, so the field verdicts,
    combinations, field-level reasons, record grade, usage policies and audit field groups are
    worked out once per layout. The key is the exact tuple of leaf paths: equal paths mean equal
    shapes (binary floats and non-string keys, whose shape is not their path's, are never
    cached), hence equal verdicts, so a cached layout is what :func:`_compile` would return.

    Before walking, the newest layouts' extractors
    (:func:`~gateway.policy._paths.compile_extractor`) are tried: one that returns values has
    found a record whose leaf paths are exactly its layout's, so its layout is the one the walk
    would look up, and no path is built.
    """
    extractors = _index(policy).extractors_for(target.id, purpose)
    for extract, known in extractors:
        got = extract(record)
        if got is not None:
            return known, got, True
    walked = leaf_paths(record)
    if walked is None:
        leaves = iter_leaves(record)
        paths = [p for p, _, _ in leaves]
        shapes = [s for _, s, _ in leaves]
        layout = _compile(policy, target, group, purpose, paths, shapes)
        return layout, [v for *_, v in leaves], False
    paths, values = walked
    cache = _index(policy).layouts(target.id, purpose)
    key = tuple(paths)
    found = cache.get(key)
    if found is None:
        shapes = [s for _, s, _ in iter_leaves(record)]
        found = _compile(policy, target, group, purpose, paths, shapes)
        if len(cache) >= _LAYOUT_LIMIT:
            cache.clear()
        cache[key] = found
    # this layout's extractor (compiled once per layout) becomes the first one tried
    compiled = _index(policy).extractor_by_paths
    if key not in compiled:
        if len(compiled) >= _LAYOUT_LIMIT:
            compiled.clear()
        compiled[key] = compile_extractor(record)
    own = compiled[key]
    if own is not None:
        extractors[:] = [(own, found), *(e for e in extractors if e[0] is not own)]
        del extractors[_EXTRACTORS:]
    return found, values, True


def _compile(
    policy: Policy,
    target: Recipient,
    group: DestinationGroup,
    purpose: str,
    paths: Sequence[str],
    shapes: Sequence[str],
) -> Layout:
    """Steps (2)-(4) and the value-independent parts of (5) for one layout."""
    index = _index(policy)
    blocked = Outcome.BLOCKED
    reasons: list[Reason] = []
    # (2) per field: classes by path, rules for the group, most restrictive wins (cached by shape)
    context = _Context(target.type, group, purpose)
    table = index.table(context)
    fields: list[FieldDecision] = []
    for path, shape in zip(paths, shapes, strict=True):
        verdict = table.get(shape)
        if verdict is None:
            if shape == FLOAT_SHAPE:
                verdict = _FLOAT
            else:
                verdict = table[shape] = index.verdict(index.classes_for(shape), context)
        fields.append(FieldDecision(path, verdict))

    # (3) combinations: classes disclosed precisely together raise the grade
    if policy.combinations:
        distinct = {f[1] for f in fields}
        for combo in policy.combinations:
            if not all(
                any(v.precise and not slot.isdisjoint(v.classes) for v in distinct)
                for slot in combo.all_of
            ):
                continue
            members = frozenset().union(*combo.all_of)
            raise_context = _Context(target.type, group, purpose, combo.raise_to, combo.id)
            raised = index.table(raise_context)
            for i, (path, shape) in enumerate(zip(paths, shapes, strict=True)):
                current = fields[i].verdict
                if members.isdisjoint(current.classes) or current.grade.rank >= combo.raise_to.rank:
                    continue
                verdict = raised.get(shape)
                if verdict is None:
                    verdict = raised[shape] = index.verdict(current.classes, raise_context)
                fields[i] = FieldDecision(path, verdict)
            reasons.append(
                Reason(
                    "reclassified",
                    f"{combo.description or combo.id}: disclosed together"
                    f" they raise the record to {combo.raise_to.value}",
                    Outcome.ALLOWED,
                    rule_id=combo.id,
                    basis=combo.basis,
                )
            )

    verdicts = list(dict.fromkeys(f[1] for f in fields))
    # distinct verdicts in document order (a set would iterate in memory-address order)

    # field-level reasons: every blocked and held field
    if any(v.action is Action.BLOCK or v.action is Action.HOLD for v in verdicts):
        for f in fields:
            v = f.verdict
            if v.action is Action.BLOCK:
                code = "unknown_field" if not v.classes and v.rule_id == _DENY else "field_blocked"
                reasons.append(Reason(code, v.basis, blocked, f.path, v.rule_id, v.basis))
            elif v.action is Action.HOLD:
                then = v.release.describe() if v.release else "allow"
                reasons.append(
                    Reason(
                        "field_held",
                        f"held for approval, then {then}",
                        Outcome.HELD,
                        f.path,
                        v.rule_id,
                        v.basis,
                    )
                )

    # (4) record grade: the highest grade of anything that goes out
    record_grade = Grade.GENERAL
    for v in verdicts:
        if v.discloses and v.grade.rank > record_grade.rank:
            record_grade = v.grade

    # (5) what does not depend on values: is PI counted, usage policies, anything to send
    counts_pi = group is not DestinationGroup.DOMESTIC and any(
        v.discloses and v.personal_information is not _NO_PI for v in verdicts
    )
    after: list[Reason] = []
    usage: dict[str, Any] = {}
    for v in verdicts:
        if not v.discloses:
            continue
        for name in v.usage_policies:
            if name in usage:
                continue
            usage[name] = policy.usage_policies.get(name, {})
            if name not in target.usage_policies_accepted:
                after.append(
                    Reason(
                        "usage_policy_not_accepted",
                        f"fields need usage policy '{name}',"
                        f" which recipient '{target.id}' has not accepted",
                        blocked,
                        rule_id=v.rule_id,
                    )
                )
    if not any(v.discloses for v in verdicts):
        after.append(Reason("nothing_to_send", "no field of the record may be disclosed", blocked))
    return Layout(
        tuple(fields),
        reasons=tuple(reasons),
        after_mechanisms=tuple(after),
        record_grade=record_grade,
        counts_pi=counts_pi,
        usage=usage,
        transformed=any(v.action not in _AS_IS for v in verdicts),
    )
