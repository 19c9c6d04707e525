"""``apply(decision, record) -> Outbound``: build the payload a recipient may receive.

The footprint is *built* from decided fields, never copied and pruned, so an undecided field cannot
leak. Transforms: generalise, pseudonymise (per-recipient HMAC), encrypt (HPKE field vault), redact.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Context, Decimal, InvalidOperation
from functools import lru_cache
from json.encoder import encode_basestring as _escape
from typing import TYPE_CHECKING, Any

from pcf_exchange.contracts.canonical import canonical_json, pae
from pcf_exchange.gateway._errors import TransferBlocked, TransferHeld
from pcf_exchange.gateway._sealing import OUTBOUND_CONTENT_TYPE, hpke_seal
from pcf_exchange.gateway.policy._decision import FieldDecision, Outcome, PolicyDecision, Verdict
from pcf_exchange.gateway.policy._model import Action, ActionSpec, GeneraliseTo
from pcf_exchange.gateway.policy._paths import (
    _KEYS,
    _render_key,
    bind_indices,
    get_path,
    parse_path,
)

if TYPE_CHECKING:
    from pcf_exchange.gateway._approvals import Approval

__all__ = [
    "ENCRYPTED_MARKER",
    "FIELD_VAULT_CONTENT_TYPE",
    "PSEUDONYM_PREFIX",
    "Outbound",
    "apply",
    "pseudonym",
    "vault_context",
]

PSEUDONYM_PREFIX = "urn:pcfx:pseudonym:"
ENCRYPTED_MARKER = "pcfxEncrypted"
FIELD_VAULT_CONTENT_TYPE = "application/vnd.pcfx.field-vault+json;v=1"
_SUBDIVISION = re.compile(r"^[A-Z]{2}-[A-Z0-9]{1,3}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_PROVINCE_KEYS = ("subdivision", "geographyCountrySubdivision", "province")
_COUNTRY_KEYS = ("country", "geographyCountry", "countryCode")


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT = _Absent()


@dataclass(frozen=True)
class Outbound:
    """The transformed footprint for one recipient, before signing and encryption."""

    decision_id: str
    recipient_id: str
    purpose: str
    policy: Mapping[str, str]
    footprint: Mapping[str, Any]
    usage_policies: Mapping[str, Any] = field(default_factory=dict)
    field_vault: bytes | None = None
    """HPKE-sealed ``{path: value}`` of the fields the policy encrypts (need-to-know key)."""
    approval_id: str | None = None

    def envelope(self, *, message_id: str, issued_at: str) -> dict[str, Any]:
        """The signed body: header fields, policy reference, usage policies, footprint."""
        env: dict[str, Any] = {
            "contentType": OUTBOUND_CONTENT_TYPE,
            "messageId": message_id,
            "recipientId": self.recipient_id,
            "decisionId": self.decision_id,
            "purpose": self.purpose,
            "issuedAt": issued_at,
            "policy": dict(self.policy),
            "usagePolicies": dict(self.usage_policies),
            "footprint": self.footprint,
        }
        if self.field_vault is not None:
            env["fieldVault"] = base64.b64encode(self.field_vault).decode()
        if self.approval_id is not None:
            env["approvalId"] = self.approval_id
        return env


@lru_cache(maxsize=4096)
def _recipient_key(secret: bytes, recipient_id: str) -> bytes:
    """Per-recipient pseudonymisation key: HMAC-SHA256(secret, label || recipient id)."""
    return hmac.new(
        secret, b"pcfx/pseudonym/v1\x00" + recipient_id.encode(), hashlib.sha256
    ).digest()


def pseudonym(secret: bytes, recipient_id: str, value: Any) -> str:
    """Stable per recipient, different across recipients, not reversible without the secret.

    ``HMAC-SHA256(k_r, canonical JSON of the value)`` where ``k_r`` is the recipient's key; so
    ``"5"`` and ``5`` differ, and the same supplier id maps to the same pseudonym every time.
    """
    if type(value) is str:
        return _string_pseudonym(secret, recipient_id, value)
    digest = hmac.digest(_recipient_key(secret, recipient_id), canonical_json(value), "sha256")
    return PSEUDONYM_PREFIX + digest[:16].hex()


@lru_cache(maxsize=65536)
def _string_pseudonym(secret: bytes, recipient_id: str, value: str) -> str:
    """:func:`pseudonym` of a string, memoised: supplier ids and contacts recur in every
    roll-up that names them. The cache holds what the records held, keyed by the same secret."""
    digest = hmac.digest(_recipient_key(secret, recipient_id), _escape(value).encode(), "sha256")
    return PSEUDONYM_PREFIX + digest[:16].hex()


def vault_context(recipient_id: str, decision_id: str) -> bytes:
    """HPKE ``info`` for a field vault: bound to the recipient and the decision."""
    return pae(
        FIELD_VAULT_CONTENT_TYPE,
        canonical_json({"decisionId": decision_id, "recipientId": recipient_id}),
    )


def apply(
    decision: PolicyDecision,
    record: Mapping[str, Any],
    *,
    pseudonym_secret: bytes,
    approval: Approval | None = None,
) -> Outbound:
    """Run the decision's transforms over *record*.

    Raises :class:`TransferBlocked` for a blocked decision and :class:`TransferHeld` for a held
    one unless *approval* is an approved approval for exactly this hold; held fields then get
    their release action.
    """
    if len(pseudonym_secret) < 32:
        raise ValueError("pseudonym_secret must be at least 32 bytes")
    if decision.outcome is Outcome.BLOCKED:
        raise TransferBlocked(decision.explain(), reasons=decision.reasons)
    release = False
    if decision.outcome is Outcome.HELD:
        problem = "no approval was given" if approval is None else approval.problem_for(decision)
        if problem is not None:
            raise TransferHeld(f"{decision.explain()}\n  ({problem})", reasons=decision.reasons)
        release = True
    recipient = decision.recipient
    assert recipient is not None  # a decision that is not blocked has a known recipient
    builder = _Builder(decision, record, pseudonym_secret, release)
    layout = decision.layout
    if layout is not None and layout.fields is decision.fields:
        if layout.plan is None:
            layout.plan = _compile_plan(decision.fields)
        footprint = builder.replay(layout.plan, record)
    else:
        footprint = builder.build_root(record)
    vault = None
    if builder.vault:
        vault = hpke_seal(
            recipient.field_key,
            canonical_json(builder.vault),
            vault_context(recipient.id, decision.decision_id),
        )
    return Outbound(
        decision_id=decision.decision_id,
        recipient_id=decision.recipient_id,
        purpose=decision.purpose,
        policy={
            "id": decision.policy_id,
            "version": decision.policy_version,
            "digest": decision.policy_digest,
        },
        footprint=footprint,
        usage_policies=decision.usage_policies,
        field_vault=vault,
        approval_id=approval.approval_id if release and approval is not None else None,
    )


_Plan = tuple[bool, tuple[tuple[Any, Any, Any, str], ...]]
"""``(is_list, ((key or index, sub-plan or None, leaf verdict, leaf path), ...))``."""


def _compile_plan(fields: Sequence[FieldDecision]) -> _Plan:
    """The decided leaves as a tree mirroring the record (in document order), so a transform
    walks the record without building a path string or looking a verdict up per node."""
    root: dict[Any, Any] = {}
    kinds: dict[int, bool] = {id(root): False}
    for path, verdict in fields:
        tokens = parse_path(path)
        node = root
        for i, token in enumerate(tokens):
            key = token[1]
            if i == len(tokens) - 1:
                node[key] = (verdict, path)
                break
            child = node.get(key)
            if child is None:
                child = node[key] = {}
                kinds[id(child)] = tokens[i + 1][0] == "i"
            node = child

    def freeze(node: dict[Any, Any]) -> _Plan:
        entries = tuple(
            (key, None, item[0], item[1])
            if isinstance(item, tuple)
            else (key, freeze(item), None, "")
            for key, item in node.items()
        )
        return kinds[id(node)], entries

    return freeze(root)


_Factory = Callable[..., Any]
_GENERATED: dict[int, tuple[_Plan, _Factory | None]] = {}
_GENERATED_LIMIT = 4096
_GENERATED_DEPTH = 24
"""Plans nested deeper than this are not generated (they run through ``replay``'s ``run``)."""


def _generated(plan: _Plan) -> _Factory | None:
    """The plan as generated Python, once per plan (see :func:`_generate`)."""
    found = _GENERATED.get(id(plan))
    if found is not None and found[0] is plan:
        return found[1]
    if len(_GENERATED) >= _GENERATED_LIMIT:
        _GENERATED.clear()
    make = _generate(plan)
    _GENERATED[id(plan)] = (plan, make)
    return make


def _generate(plan: _Plan) -> _Factory | None:
    """``build(record, transform, leaf, generic, pseudonymise)``: ``replay``'s ``run`` for
    one plan, unrolled into straight-line code (one function per container of the plan): each
    decided key or index is looked up directly and each leaf's action is known when the code is
    written (allowed: copied; redacted or blocked: dropped; pseudonymised: ``pseudonymise(value)``;
    other transforms: ``transform(spec, value, path)``; held: ``leaf`` decides with the
    approval). Same output as ``run`` for any record (a property test pins it): the same type
    checks, ``None`` skipped, emptied containers dropped, and anything but a
    ``str``/``int``/``bool`` at a leaf handed to ``generic``.
    """
    consts: dict[str, Any] = {"A": _ABSENT, "Mapping": Mapping}
    defs: list[str] = []
    allow = (Action.ALLOW, Action.ALLOW_WITH_USAGE_POLICY)
    drop = (Action.REDACT, Action.BLOCK)

    def const(value: Any) -> str:
        name = f"c{len(consts)}"
        consts[name] = value
        return name

    def value_code(
        lines: list[str], sub: Any, verdict: Any, path: str, emit: str, ind: str, depth: int
    ) -> bool:
        if sub is not None:
            child = generate_container(sub, depth + 1)
            if child is None:
                return False
            lines.extend((f"{ind}b = {child}(v, T, L, G, P)", f"{ind}if b is not A: {emit}"))
            return True
        p = const(path)
        lines.extend((f"{ind}t = type(v)", f"{ind}if t is str or t is int or t is bool:"))
        action = verdict.action
        if action in allow:
            lines.append(f"{ind}    b = v; {emit}")
        elif action in drop:
            lines.append(f"{ind}    pass")
        elif action is Action.PSEUDONYMISE and verdict.spec.action is Action.PSEUDONYMISE:
            lines.append(f"{ind}    b = P(v); {emit}")
        elif action is Action.HOLD:
            lines.append(f"{ind}    b = L(v, {const(verdict)}, {p})")
            lines.append(f"{ind}    if b is not A: {emit}")
        else:
            lines.append(f"{ind}    b = T({const(verdict.spec)}, v, {p})")
            lines.append(f"{ind}    if b is not A: {emit}")
        lines.extend((f"{ind}else:", f"{ind}    b = G(v, {p})", f"{ind}    if b is not A: {emit}"))
        return True

    def generate_container(node: _Plan, depth: int) -> str | None:
        if depth > _GENERATED_DEPTH:
            return None
        is_list, entries = node
        name = f"f{len(defs)}_{depth}"
        lines = [f"    def {name}(n, T, L, G, P):"]
        if is_list:
            lines.append("        if type(n) is not list and type(n) is not tuple: return A")
            lines.extend(("        o = []", "        s = len(n)"))
            for index, sub, verdict, path in entries:
                if type(index) is not int:
                    return None
                lines.extend((f"        if {index} < s:", f"            v = n[{index}]"))
                lines.append("            if v is not None:")
                if not value_code(lines, sub, verdict, path, "o.append(b)", " " * 16, depth):
                    return None
        else:
            lines.append("        k = type(n)")
            lines.append(
                "        if k is not dict and (k is list or k is tuple"
                " or not isinstance(n, Mapping)): return A"
            )
            lines.extend(("        o = {}", "        g = n.get"))
            for key, sub, verdict, path in entries:
                if type(key) is not str:
                    return None
                lines.extend((f"        v = g({key!r})", "        if v is not None:"))
                if not value_code(lines, sub, verdict, path, f"o[{key!r}] = b", " " * 12, depth):
                    return None
        lines.append("        return o if o else A")
        defs.extend(lines)
        return name

    root = generate_container(plan, 0)
    if root is None:
        return None
    source = "\n".join(("if True:", *defs, ""))  # (the functions are module-level)
    namespace: dict[str, Any] = dict(consts)
    exec(compile(source, "<gateway transform plan>", "exec"), namespace)
    factory: _Factory = namespace[root]
    return factory


class _Builder:
    def __init__(
        self, decision: PolicyDecision, record: Mapping[str, Any], secret: bytes, release: bool
    ) -> None:
        self.fields = decision.fields
        self._verdicts: dict[str, Verdict] | None = None
        self.record = record
        self.secret = secret
        self.release = release
        self.recipient_id = decision.recipient_id
        self.vault: dict[str, Any] = {}

    @property
    def verdicts(self) -> dict[str, Verdict]:
        if self._verdicts is None:
            self._verdicts = {f.path: f.verdict for f in self.fields}
        return self._verdicts

    def replay(self, plan: _Plan, record: Mapping[str, Any]) -> dict[str, Any]:
        """:meth:`build_root` driven by the compiled plan of the decided leaves.

        Same output as :meth:`build_root` for any *record*: it visits only decided paths (a key
        the plan lacks has no decided leaf, so the walk would drop it), skips ``None`` and
        missing keys, drops emptied containers, and hands anything but a ``str``/``int``/``bool``
        at a leaf (a container where the plan expects a value) to the generic walk.

        Leaves no reference cycle behind: the walk's helpers are methods, not closures that
        call themselves. (They were: every call left a cycle holding this builder, and through
        it the input record, for the cyclic collector to find, ~43 objects per record; on Kafka
        the collector then walked every live record of the batch again and again, 20 % of the
        gateway's CPU; see ``GatewayRunner._process``.)
        """
        build = _generated(plan)
        if build is not None:
            secret, recipient_id = self.secret, self.recipient_id

            def pseudonymise(value: Any) -> str:
                return pseudonym(secret, recipient_id, value)

            built = build(record, self.transform, self._leaf, self._generic, pseudonymise)
        else:
            built = self._run(plan, record)
        return built if built is not _ABSENT else {}

    def _generic(self, value: Any, path: str) -> Any:
        """The decided part of *value* at *path*, walked without the plan."""
        return self._walker()(value, path)

    def _leaf(self, value: Any, verdict: Verdict, path: str) -> Any:
        """*value* as the leaf's *verdict* sends it (:data:`_ABSENT`: not sent)."""
        action = verdict.action
        if action is Action.ALLOW or action is Action.ALLOW_WITH_USAGE_POLICY:
            return value
        if action is Action.REDACT or action is Action.BLOCK:
            return _ABSENT
        spec = verdict.spec
        if action is Action.HOLD:
            if not self.release or verdict.release is None:
                return _ABSENT
            spec = verdict.release
        return self.transform(spec, value, path)

    def _run(self, plan: _Plan, node: Any) -> Any:
        """The plan interpreted (a plan too deep to be generated, see :func:`_generate`)."""
        is_list, entries = plan
        kind = type(node)
        absent = _ABSENT
        if is_list:
            if kind is not list and kind is not tuple:
                return absent
            items: list[Any] = []
            size = len(node)
            for index, sub, verdict, path in entries:
                if index >= size:
                    continue
                value = node[index]
                if value is None:
                    continue
                built = self._one(sub, value, verdict, path)
                if built is not absent:
                    items.append(built)
            return items if items else absent
        if kind is not dict and (kind is list or kind is tuple or not isinstance(node, Mapping)):
            return absent
        out: dict[str, Any] = {}
        for key, sub, verdict, path in entries:
            value = node.get(key)
            if value is None:
                continue
            built = self._one(sub, value, verdict, path)
            if built is not absent:
                out[key] = built
        return out if out else absent

    def _one(self, sub: _Plan | None, value: Any, verdict: Verdict, path: str) -> Any:
        """One present child of a node: its sub-plan run, or a leaf decided, or a value the
        plan did not foresee taken the generic way."""
        vkind = type(value)
        if sub is not None:
            return self._run(sub, value)
        if vkind is str or vkind is int or vkind is bool:
            return self._leaf(value, verdict, path)
        return self._generic(value, path)

    def build_root(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Rebuild *record* from its decided leaves."""
        build = self._walker()
        out: dict[str, Any] = {}
        for key, value in record.items():
            if type(key) is not str or value is None:
                continue
            part = _render_key(key)
            built = build(value, part[1:] if part[0] == "." else part)
            if built is not _ABSENT:
                out[key] = built
        return out

    def _walker(self) -> Callable[[Any, str], Any]:
        """``build(node, path)``: the decided part of *node* (closures keep per-leaf cost low)."""
        get = self.verdicts.get
        keys_get = _KEYS.get
        release = self.release
        transform = self.transform
        allow, allow_pol, hold = Action.ALLOW, Action.ALLOW_WITH_USAGE_POLICY, Action.HOLD
        redact, block = Action.REDACT, Action.BLOCK
        absent = _ABSENT

        def leaf(node: Any, path: str) -> Any:
            verdict = get(path)
            if verdict is None:  # never decided: never sent
                return absent
            action = verdict.action
            if action is allow or action is allow_pol:
                return node
            if action is redact or action is block:
                return absent
            spec = verdict.spec
            if action is hold:
                if not release or verdict.release is None:
                    return absent
                spec = verdict.release
            return transform(spec, node, path)

        def build(node: Any, path: str) -> Any:
            kind = type(node)
            if kind is dict or (
                kind is not list and kind is not tuple and isinstance(node, Mapping)
            ):
                out: dict[str, Any] = {}
                for key, value in node.items():
                    if type(key) is not str or value is None:
                        continue
                    child = path + (keys_get(key) or _render_key(key))
                    vkind = type(value)
                    if vkind is str or vkind is int or vkind is bool:
                        built = leaf(value, child)
                    else:
                        built = build(value, child)
                    if built is not absent:
                        out[key] = built
                return out if out else absent
            if kind is list or kind is tuple:
                items = []
                for i, value in enumerate(node):
                    if value is None:
                        continue
                    child = f"{path}[{i}]"
                    vkind = type(value)
                    if vkind is str or vkind is int or vkind is bool:
                        built = leaf(value, child)
                    else:
                        built = build(value, child)
                    if built is not absent:
                        items.append(built)
                return items if items else absent
            return absent if node is None else leaf(node, path)

        return build

    def transform(self, spec: ActionSpec, value: Any, path: str) -> Any:
        action = spec.action
        if action in (Action.ALLOW, Action.ALLOW_WITH_USAGE_POLICY):
            return value
        if action is Action.PSEUDONYMISE:
            return pseudonym(self.secret, self.recipient_id, value)
        if action is Action.ENCRYPT:
            self.vault[path] = value
            return {ENCRYPTED_MARKER: path}
        if action is Action.GENERALISE:
            if spec.to is GeneraliseTo.INTENSITY:
                return self.intensity(spec, value, path)
            return self.region(spec, value, path)
        return _ABSENT  # redact, block, or an unreleased hold

    def region(self, spec: ActionSpec, value: Any, path: str) -> Any:
        """Province (ISO 3166-2) or country (ISO 3166-1) of a location field; else nothing."""
        to_province = spec.to is GeneraliseTo.PROVINCE
        code = _as_region(value, to_province)
        if code is not None:
            return code
        for candidate in _region_candidates(spec.source, path, to_province):
            code = _as_region(get_path(self.record, candidate), to_province)
            if code is not None:
                return code
        return _ABSENT

    def intensity(self, spec: ActionSpec, value: Any, path: str) -> Any:
        """Absolute quantity ÷ denominator (e.g. production volume), to N significant digits."""
        numerator = _decimal(value)
        bound, unit_path = _intensity_paths(spec.denominator, spec.denominator_unit, path)
        denominator = _decimal(get_path(self.record, bound)) if bound else None
        if numerator is None or denominator is None or denominator == 0:
            return _ABSENT
        ratio = _context(spec.significant_digits).divide(numerator, denominator)
        out: dict[str, Any] = {"intensity": format(ratio, "f")}
        if spec.denominator_unit:
            unit = get_path(self.record, unit_path) if unit_path else None
            if isinstance(unit, str):
                out["per"] = unit
        return out


@lru_cache(maxsize=65536)
def _region_candidates(source: str | None, path: str, to_province: bool) -> tuple[str, ...]:
    """Where a location field's region may be found instead, in the order tried: the spec's
    source (its ``[*]`` bound to *path*'s indices), then the sibling province/country keys.
    Depends on the leaf's path and spec only, so it is worked out once per leaf of a layout."""
    candidates: list[str] = []
    if source:
        bound = bind_indices(source, path)
        if bound is not None:
            candidates.append(bound)
    parent = path.rpartition(".")[0]
    keys = (_PROVINCE_KEYS + _COUNTRY_KEYS) if to_province else _COUNTRY_KEYS + _PROVINCE_KEYS
    candidates.extend(f"{parent}.{k}" if parent else k for k in keys)
    return tuple(candidates)


@lru_cache(maxsize=65536)
def _intensity_paths(
    denominator: str | None, unit: str | None, path: str
) -> tuple[str | None, str | None]:
    """The concrete paths of an intensity's denominator and its unit for the leaf at *path*
    (their ``[*]`` bound to its indices): once per leaf of a layout."""
    return (
        bind_indices(denominator or "", path),
        bind_indices(unit, path) if unit else None,
    )


@lru_cache(maxsize=16)
def _context(digits: int) -> Context:
    return Context(prec=digits)


def _as_region(value: Any, to_province: bool) -> str | None:
    if not isinstance(value, str):
        return None
    if _SUBDIVISION.match(value):
        return value if to_province else value[:2]
    if _COUNTRY.match(value):
        return value
    return None


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        return None
    try:
        result = Decimal(value)
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() else None
