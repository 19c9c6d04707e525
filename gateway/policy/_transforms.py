"""``apply(decision, record) -> Outbound``: build the payload a recipient may receive.

The footprint is *built* from decided fields, never copied and pruned, so an undecided field cannot
leak. Transforms: generalise, pseudonymise (per-recipient HMAC), encrypt (HPKE field vault), redact.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Context, Decimal, InvalidOperation
from functools import lru_cache
from json.encoder import encode_basestring as _escape
from typing import TYPE_CHECKING, Any

from contracts.canonical import pae
from gateway._canonical import canonical_bytes
from gateway._errors import TransferBlocked, TransferHeld
from gateway._sealing import OUTBOUND_CONTENT_TYPE, hpke_seal
from gateway.policy._decision import Outcome, PolicyDecision, Verdict
from gateway.policy._model import Action, ActionSpec, GeneraliseTo
from gateway.policy._paths import _KEYS, _render_key, bind_indices, get_path

if TYPE_CHECKING:
    from gateway._approvals import Approval

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
    data = _escape(value).encode() if type(value) is str else canonical_bytes(value)
    digest = hmac.digest(_recipient_key(secret, recipient_id), data, "sha256")
    return PSEUDONYM_PREFIX + digest[:16].hex()


def vault_context(recipient_id: str, decision_id: str) -> bytes:
    """HPKE ``info`` for a field vault: bound to the recipient and the decision."""
    return pae(
        FIELD_VAULT_CONTENT_TYPE,
        canonical_bytes({"decisionId": decision_id, "recipientId": recipient_id}),
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
    footprint = builder.build_root(record)
    vault = None
    if builder.vault:
        vault = hpke_seal(
            recipient.field_key,
            canonical_bytes(builder.vault),
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


class _Builder:
    def __init__(
        self, decision: PolicyDecision, record: Mapping[str, Any], secret: bytes, release: bool
    ) -> None:
        self.verdicts: dict[str, Verdict] = {f.path: f.verdict for f in decision.fields}
        self.record = record
        self.secret = secret
        self.release = release
        self.recipient_id = decision.recipient_id
        self.vault: dict[str, Any] = {}

    def build_root(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Rebuild *record* from its decided leaves (closures keep the per-leaf cost low)."""
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

        out: dict[str, Any] = {}
        for key, value in record.items():
            if type(key) is not str or value is None:
                continue
            part = _render_key(key)
            built = build(value, part[1:] if part[0] == "." else part)
            if built is not absent:
                out[key] = built
        return out

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
        candidates: list[str] = []
        if spec.source:
            bound = bind_indices(spec.source, path)
            if bound is not None:
                candidates.append(bound)
        parent = path.rpartition(".")[0]
        keys = (_PROVINCE_KEYS + _COUNTRY_KEYS) if to_province else _COUNTRY_KEYS + _PROVINCE_KEYS
        candidates.extend(f"{parent}.{k}" if parent else k for k in keys)
        for candidate in candidates:
            code = _as_region(get_path(self.record, candidate), to_province)
            if code is not None:
                return code
        return _ABSENT

    def intensity(self, spec: ActionSpec, value: Any, path: str) -> Any:
        """Absolute quantity ÷ denominator (e.g. production volume), to N significant digits."""
        numerator = _decimal(value)
        bound = bind_indices(spec.denominator or "", path)
        denominator = _decimal(get_path(self.record, bound)) if bound else None
        if numerator is None or denominator is None or denominator == 0:
            return _ABSENT
        ratio = _context(spec.significant_digits).divide(numerator, denominator)
        out: dict[str, Any] = {"intensity": format(ratio, "f")}
        if spec.denominator_unit:
            unit_path = bind_indices(spec.denominator_unit, path)
            unit = get_path(self.record, unit_path) if unit_path else None
            if isinstance(unit, str):
                out["per"] = unit
        return out


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
