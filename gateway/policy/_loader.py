"""Load a policy file: YAML → JSON Schema → cross-reference checks → a frozen :class:`Policy`.

Every problem is reported at once, with its path and YAML line (``rules[3].actions.eu``, line 88).
YAML 1.1 surprises are switched off: ``NO`` stays Norway and ``2027-01-31`` stays a string.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from pcf_exchange.contracts.canonical import canonical_json
from pcf_exchange.contracts.errors import Violation
from pcf_exchange.gateway._errors import PolicyFileInvalid
from pcf_exchange.gateway.policy._model import (
    Action,
    ActionSpec,
    Combination,
    CounterMetric,
    CounterThreshold,
    DataClass,
    DestinationGroup,
    ExemptionBasis,
    Exporter,
    FieldClassification,
    GeneraliseTo,
    Grade,
    Mechanism,
    MechanismRequirement,
    MechanismType,
    PersonalInformation,
    Policy,
    Recipient,
    RecipientType,
    Rule,
    RuleWhen,
)
from pcf_exchange.gateway.policy._paths import Pattern

__all__ = ["load_policy", "parse_policy", "policy_schema"]

_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_STRICT_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


class _PolicyLoader(yaml.SafeLoader):
    """SafeLoader without timestamps, and with only true/false as booleans (``NO`` is Norway)."""


_PolicyLoader.yaml_implicit_resolvers = {
    first: [
        (tag, _STRICT_BOOL if tag == _BOOL_TAG else regexp)
        for tag, regexp in resolvers
        if tag != _TIMESTAMP_TAG
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_FastPolicyLoader: type[Any] | None = None
"""The same loader on libyaml's parser (same resolvers and constructor; ~10x faster to
compose), when PyYAML was built with it."""
if yaml.__with_libyaml__:
    _FastPolicyLoader = type("_FastPolicyLoader", (yaml.CSafeLoader,), {})
    _FastPolicyLoader.yaml_implicit_resolvers = _PolicyLoader.yaml_implicit_resolvers


def _compose_and_construct(text: str, loader_class: type[Any]) -> tuple[yaml.Node | None, Any]:
    """The node tree of *text* (for line numbers) and the document built from that same tree:
    one parse (``yaml.compose`` then ``yaml.load`` parsed the text twice)."""
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    finally:
        loader.dispose()


@cache
def policy_schema() -> dict[str, Any]:
    """The JSON Schema every policy file must satisfy (shipped as ``policy.schema.json``)."""
    text = (
        resources.files("pcf_exchange.gateway.policy")
        .joinpath("policy.schema.json")
        .read_text("utf-8")
    )
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(policy_schema())


def load_policy(path: str | Path) -> Policy:
    """Read and validate the policy file at *path* (raises :class:`PolicyFileInvalid`)."""
    path = Path(path)
    return parse_policy(path.read_text("utf-8"), source=str(path))


def parse_policy(text: str, *, source: str = "<string>") -> Policy:
    """Validate policy YAML *text* and build the model; every problem is reported at once."""
    # (1) YAML syntax, with line numbers.
    try:
        try:
            node, document = _compose_and_construct(text, _FastPolicyLoader or _PolicyLoader)
        except yaml.YAMLError:
            if _FastPolicyLoader is None:
                raise
            # reported as PyYAML's own parser words it (problem and line)
            node, document = _compose_and_construct(text, _PolicyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        problem = getattr(exc, "problem", None) or str(exc)
        raise PolicyFileInvalid(
            [Violation.of("", "yaml", f"is not valid YAML: {problem} [line {line}]")],
            source=source,
            lines={"": line},
        ) from exc
    lines = _LineIndex(node)
    violations = list(_duplicate_keys(node))
    if not isinstance(document, dict):
        violations.append(Violation.of("", "type", "must be a mapping at the top level", document))
        raise PolicyFileInvalid(violations, source=source, lines=lines.found)

    # (2) JSON Schema: structure, types, enums, required keys.
    for error in sorted(_validator().iter_errors(document), key=lambda e: list(map(str, e.path))):
        violations.extend(_schema_violation(error, lines))
    if violations:
        raise PolicyFileInvalid(violations, source=source, lines=lines.found)

    # (3) Cross-references and values a schema cannot check.
    violations.extend(_semantic_violations(document, lines))
    if violations:
        raise PolicyFileInvalid(violations, source=source, lines=lines.found)

    # (4) The frozen model.
    return _build(document, source)


# ----------------------------------------------------------------------------------------------
# error reporting


def _render_path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _LineIndex:
    """Finds the YAML line of a path in the composed node tree."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.root = root
        self.found: dict[str, int] = {}

    def line(self, parts: Sequence[Any]) -> int | None:
        node = self.root
        line = node.start_mark.line + 1 if node is not None else None
        for part in parts:
            if isinstance(node, yaml.MappingNode):
                match = [v for k, v in node.value if getattr(k, "value", None) == part]
                if not match:
                    break
                node = match[-1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if not 0 <= part < len(node.value):
                    break
                node = node.value[part]
            else:
                break
            line = node.start_mark.line + 1
        if line is not None:
            self.found[_render_path(parts)] = line
        return line

    def violation(self, parts: Sequence[Any], code: str, message: str, got: Any = ...) -> Violation:
        line = self.line(parts)
        where = f" [line {line}]" if line else ""
        return Violation.of(_render_path(parts), code, message + where, got)


def _duplicate_keys(node: yaml.Node | None, parts: tuple[Any, ...] = ()) -> Iterable[Violation]:
    """PyYAML keeps the last of two equal keys silently; in a policy that hides a rule."""
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key, value in node.value:
            name = getattr(key, "value", None)
            if name in seen:
                path = _render_path((*parts, name))
                yield Violation.of(
                    path, "duplicate_key", f"appears twice [line {key.start_mark.line + 1}]"
                )
            seen.add(name)
            yield from _duplicate_keys(value, (*parts, name))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*parts, index))


_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "boolean": "true or false",
    "number": "a number",
}


def _schema_violation(error: jsonschema.ValidationError, lines: _LineIndex) -> Iterable[Violation]:
    parts = list(error.absolute_path)
    kind = error.validator
    expected = error.schema.get("x-expected") if isinstance(error.schema, dict) else None
    if kind == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        for key in missing:
            what = "legal mechanism" if key == "mechanisms" else "key"
            yield lines.violation(
                [*parts, key], "required", f"is required (missing {what} '{key}')"
            )
        return
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in error.schema.get("properties", {})]
        for key in extra:
            hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
            yield lines.violation([*parts, key], "unknown_key", f"is not a known key{hint}")
        return
    if kind == "enum":
        options = ", ".join(str(v) for v in error.validator_value)
        message = f"must be one of {options}"
        if _is_action_slot(parts):
            message = f"is not a known action; must be one of {', '.join(a.value for a in Action)}"
            if error.instance in (Action.GENERALISE.value, Action.ALLOW_WITH_USAGE_POLICY.value):
                message = "needs parameters: write it as a mapping with 'action' and its parameters"
        yield lines.violation(
            parts, "unknown_action" if _is_action_slot(parts) else "enum", message, error.instance
        )
        return
    if kind == "type":
        types = (
            error.validator_value
            if isinstance(error.validator_value, list)
            else [error.validator_value]
        )
        names = " or ".join(_TYPE_NAMES.get(str(t), str(t)) for t in types)
        yield lines.violation(parts, "type", expected or f"must be {names}", error.instance)
        return
    if kind == "const":
        yield lines.violation(parts, "const", f"must be {error.validator_value!r}", error.instance)
        return
    if kind == "pattern":
        yield lines.violation(
            parts,
            "pattern",
            f"must be {expected}" if expected else f"must match {error.validator_value}",
            error.instance,
        )
        return
    if kind in ("minItems", "minProperties"):
        yield lines.violation(parts, kind, f"must have at least {error.validator_value} item(s)")
        return
    if kind == "uniqueItems":
        yield lines.violation(parts, kind, "must not repeat an item", error.instance)
        return
    if kind in ("minimum", "maximum", "minLength"):
        yield lines.violation(parts, kind, f"{kind} is {error.validator_value}", error.instance)
        return
    if kind == "propertyNames":
        yield lines.violation(
            parts, kind, f"has a key that is not {expected or 'an identifier'}", error.instance
        )
        return
    yield lines.violation(parts, str(kind), error.message)


def _is_action_slot(parts: Sequence[Any]) -> bool:
    return bool(parts) and (
        parts[-1] in ("action", "then") or (len(parts) >= 2 and parts[-2] == "actions")
    )


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _semantic_violations(doc: Mapping[str, Any], lines: _LineIndex) -> Iterable[Violation]:
    classes = set(doc["classes"])
    usage_policies = set(doc.get("usage_policies", {}))

    for i, entry in enumerate(doc["fields"]):
        for name in _as_list(entry["class"]):
            if name not in classes:
                yield lines.violation(
                    ["fields", i, "class"],
                    "unknown_class",
                    f"names class '{name}', which is not declared",
                )

    for section in ("rules", "combinations", "recipients", "mechanism_requirements", "counters"):
        seen: dict[str, int] = {}
        for i, item in enumerate(doc.get(section, [])):
            if item["id"] in seen:
                yield lines.violation(
                    [section, i, "id"],
                    "duplicate_id",
                    f"repeats the id of {section}[{seen[item['id']]}]",
                    item["id"],
                )
            seen.setdefault(item["id"], i)

    for i, rule in enumerate(doc["rules"]):
        for name in _as_list(rule["when"].get("class", [])):
            if name not in classes:
                yield lines.violation(
                    ["rules", i, "when", "class"],
                    "unknown_class",
                    f"names class '{name}', which is not declared",
                )
        for group, spec in rule["actions"].items():
            yield from _spec_violations(spec, ["rules", i, "actions", group], usage_policies, lines)

    for i, combo in enumerate(doc.get("combinations", [])):
        for j, slot in enumerate(combo["all_of"]):
            for name in _as_list(slot):
                if name not in classes:
                    yield lines.violation(
                        ["combinations", i, "all_of", j],
                        "unknown_class",
                        f"names class '{name}', which is not declared",
                    )

    eu, other = set(doc["destinations"]["eu"]), set(doc["destinations"]["other"])
    for country in sorted(eu & other):
        yield lines.violation(
            ["destinations", "other"],
            "ambiguous_destination",
            f"lists {country}, which is also in destinations.eu",
        )
    if "CN" in eu | other:
        yield lines.violation(
            ["destinations"], "domestic_listed", "must not list CN: CN is always domestic"
        )

    for i, recipient in enumerate(doc["recipients"]):
        for key in ("encryption_key", "field_encryption_key"):
            if key in recipient:
                raw = base64.b64decode(recipient[key].split(":", 1)[1])
                if len(raw) != 32:
                    yield lines.violation(
                        ["recipients", i, key], "key_length", "must decode to 32 bytes"
                    )
        for j, mech in enumerate(recipient.get("mechanisms", [])):
            try:
                date.fromisoformat(mech["expires"])
            except ValueError:
                yield lines.violation(
                    ["recipients", i, "mechanisms", j, "expires"],
                    "date",
                    "is not a calendar date",
                    mech["expires"],
                )
            if mech["type"] != "exemption" and "basis" in mech:
                yield lines.violation(
                    ["recipients", i, "mechanisms", j, "basis"],
                    "basis",
                    "is only meaningful for an exemption",
                )
        for j, name in enumerate(recipient.get("usage_policies_accepted", [])):
            if name not in usage_policies:
                yield lines.violation(
                    ["recipients", i, "usage_policies_accepted", j],
                    "unknown_usage_policy",
                    f"names usage policy '{name}', which is not declared",
                )

    try:
        canonical_json(doc)
    except (TypeError, ValueError) as exc:
        yield Violation.of("", "canonical", f"cannot be hashed canonically: {exc}")


def _spec_violations(
    spec: Any, parts: list[Any], usage_policies: set[str], lines: _LineIndex
) -> Iterable[Violation]:
    if not isinstance(spec, dict):
        return
    if spec.get("usage_policy") is not None and spec["usage_policy"] not in usage_policies:
        yield lines.violation(
            [*parts, "usage_policy"],
            "unknown_usage_policy",
            f"names usage policy '{spec['usage_policy']}', which is not declared",
        )
    then = spec.get("then")
    if then is not None:
        if spec["action"] != "hold":
            yield lines.violation([*parts, "then"], "then", "is only allowed on a hold action")
        then_action = then if isinstance(then, str) else then.get("action")
        if then_action in ("hold", "block"):
            yield lines.violation(
                [*parts, "then"],
                "then",
                "must release the field (not hold or block it again)",
                then_action,
            )
        yield from _spec_violations(then, [*parts, "then"], usage_policies, lines)


# ----------------------------------------------------------------------------------------------
# building the model


def _spec(value: Any) -> ActionSpec:
    if isinstance(value, str):
        return ActionSpec(Action(value))
    return ActionSpec(
        action=Action(value["action"]),
        usage_policy=value.get("usage_policy"),
        to=GeneraliseTo(value["to"]) if "to" in value else None,
        source=value.get("source"),
        denominator=value.get("denominator"),
        denominator_unit=value.get("denominator_unit"),
        significant_digits=value.get("significant_digits", 4),
        then=_spec(value["then"]) if "then" in value else None,
    )


def _opt_set(value: Any, convert: Any = str) -> frozenset[Any] | None:
    return None if value is None else frozenset(convert(v) for v in _as_list(value))


def _key(text: str) -> bytes:
    return base64.b64decode(text.split(":", 1)[1])


def _build(doc: Mapping[str, Any], source: str) -> Policy:
    destinations = {c: DestinationGroup.EU for c in doc["destinations"]["eu"]}
    destinations.update({c: DestinationGroup.OTHER for c in doc["destinations"]["other"]})
    classes = {
        name: DataClass(
            name=name,
            grade=Grade(spec["grade"]),
            personal_information=PersonalInformation(spec.get("personal_information", "none")),
            trade_secret=spec.get("trade_secret", False),
            licence_restricted=spec.get("licence_restricted", False),
            description=spec.get("description", ""),
            basis=spec["basis"],
        )
        for name, spec in doc["classes"].items()
    }
    fields = tuple(
        FieldClassification(Pattern(f["path"]), tuple(_as_list(f["class"]))) for f in doc["fields"]
    )
    rules = tuple(
        Rule(
            id=r["id"],
            when=RuleWhen(
                classes=_opt_set(r["when"].get("class")),
                grades=_opt_set(r["when"].get("grade"), Grade),
                personal_information=_opt_set(
                    r["when"].get("personal_information"), PersonalInformation
                ),
                trade_secret=r["when"].get("trade_secret"),
                licence_restricted=r["when"].get("licence_restricted"),
                recipient_types=_opt_set(r["when"].get("recipient_type"), RecipientType),
                purposes=_opt_set(r["when"].get("purpose")),
            ),
            actions={DestinationGroup(g): _spec(s) for g, s in r["actions"].items()},
            basis=r["basis"],
            description=r.get("description", ""),
        )
        for r in doc["rules"]
    )
    combinations = tuple(
        Combination(
            id=c["id"],
            all_of=tuple(frozenset(_as_list(slot)) for slot in c["all_of"]),
            raise_to=Grade(c["raise_to"]),
            basis=c["basis"],
            description=c.get("description", ""),
        )
        for c in doc.get("combinations", [])
    )
    recipients = {
        r["id"]: Recipient(
            id=r["id"],
            name=r["name"],
            jurisdiction=r["jurisdiction"],
            type=RecipientType(r["type"]),
            encryption_key=_key(r["encryption_key"]),
            field_encryption_key=_key(r["field_encryption_key"])
            if "field_encryption_key" in r
            else None,
            verify_key=r["verify_key"],
            purposes=frozenset(r["purposes"]),
            mechanisms=tuple(
                Mechanism(
                    type=MechanismType(m["type"]),
                    reference=m["reference"],
                    expires=date.fromisoformat(m["expires"]),
                    basis=ExemptionBasis(m["basis"]) if "basis" in m else None,
                )
                for m in r.get("mechanisms", [])
            ),
            usage_policies_accepted=frozenset(r.get("usage_policies_accepted", [])),
        )
        for r in doc["recipients"]
    }
    requirements = tuple(
        MechanismRequirement(
            id=m["id"],
            requires_any=tuple(m["requires_any"]),
            basis=m["basis"],
            exports_personal_information=m["when"].get("exports_personal_information"),
            exports_sensitive_personal_information=m["when"].get(
                "exports_sensitive_personal_information"
            ),
            exports_grade=Grade(m["when"]["exports_grade"])
            if "exports_grade" in m["when"]
            else None,
            exporter_ciio=m["when"].get("exporter_ciio"),
        )
        for m in doc.get("mechanism_requirements", [])
    )
    thresholds = tuple(
        CounterThreshold(
            id=t["id"],
            metric=CounterMetric(t["metric"]),
            at_least=t["at_least"],
            requires_any=tuple(t["requires_any"]),
            basis=t["basis"],
        )
        for t in doc.get("counters", [])
    )
    return Policy(
        id=doc["policy"]["id"],
        version=doc["policy"]["version"],
        digest=hashlib.sha256(canonical_json(doc)).hexdigest(),
        exporter=Exporter(name=doc["exporter"]["name"], ciio=doc["exporter"].get("ciio", False)),
        destinations=destinations,
        classes=classes,
        fields=fields,
        rules=rules,
        combinations=combinations,
        recipients=recipients,
        usage_policies={k: dict(v) for k, v in doc.get("usage_policies", {}).items()},
        requirements=requirements,
        thresholds=thresholds,
        source=source,
    )


def default_policy_path() -> str:
    """Path of the shipped example policy (EU battery / CBAM customers, a domestic body):
    ``gateway/policies/default.yaml`` beside this package, found from this file rather than by
    package name, so a ``gateway`` folder in the working directory cannot stand in for it."""
    return str(Path(__file__).resolve().parents[1] / "policies" / "default.yaml")
