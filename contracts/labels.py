"""Verifiable carbon labels: a compact payload a body signs, short enough for a QR code (pure).

A label says *this product's footprint is F kgCO2e per declared unit, certified by body B under
certificate C, valid from .. until ..*. Its text form is::

    PCFX1.<base64url(canonical JSON body)>.<base64url(Ed25519 signature)>

The body is the one canonical JSON (:func:`contracts.canonical.canonical_json`) with short keys
(``b`` body id, ``c`` certificate id, ``f`` figure as a decimal string, ``k`` key id, ``p``
product id, ``u`` unit, ``nb``/``na`` valid from / until, ``v`` version); the signature covers
``pae(PAYLOAD_LABEL, body)`` (:func:`contracts.canonical.pae`), so no other statement's
signature can pass as a label's. About 360-390 characters for a typical product URN (the
Ed25519 signature alone is 86): a QR code of version 15 (77 modules) at error correction M.

Anyone verifies a label against a :class:`~contracts.certification.CertRegistry` (folded live
from Kafka, or from an operator-signed snapshot file for offline use), in numbered steps
(``# (n)`` in the code); :func:`check_label` returns every check's result
(:class:`LabelVerdict`), :func:`verify_label` raises the first failure:

1. the text decodes into a label (``malformed``);
2. its body is registered (``unknown_body``) and the key is one of the body's (``unknown_key``);
3. the signature verifies (``bad_signature``: a figure or any other field altered) — the
   checks below run only on a label whose signature holds;
4. the body is not blacklisted now (``blacklisted_body``);
5. the certificate is on the exchange, from that body (``unknown_certificate``), and the label
   says what the certificate certified: product, figure, unit (``label_mismatch``);
6. the certificate is not revoked (``revoked_certificate``);
7. label and certificate are valid now (``expired_label``, ``expired_certificate``);
8. the product's current footprint is the certified one (``stale``).
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pcf_exchange.contracts._envelope import verify_bytes
from pcf_exchange.contracts.canonical import canonical_json, pae
from pcf_exchange.contracts.certification import Certificate, CertRegistry, CertStatus
from pcf_exchange.contracts.errors import CertificationError, TrustError
from pcf_exchange.contracts.keyfiles import key_id_of

__all__ = [
    "LABEL_PREFIX",
    "PAYLOAD_LABEL",
    "Label",
    "LabelCheck",
    "LabelVerdict",
    "check_label",
    "decode_label",
    "encode_label",
    "label_for",
    "label_from_scan",
    "label_url",
    "verify_label",
]

PAYLOAD_LABEL: Final = "application/vnd.pcfx.carbon-label+json"
LABEL_PREFIX: Final = "PCFX1."
_MAX_LABEL: Final = 2_000
"""Characters; a QR code holds at most ~2 900 bytes, and a label is ~370."""
_B64_RE: Final = re.compile(r"^[A-Za-z0-9_-]+$")
_DECIMAL_RE: Final = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Label:
    """What a carbon label says (see the module docstring for its text form)."""

    body_id: str
    certificate_id: str
    key_id: str
    product_id: str
    figure: Decimal
    unit: str
    valid_from: datetime
    valid_until: datetime

    def body(self) -> bytes:
        """The canonical JSON the body signs."""
        return canonical_json(
            {
                "b": self.body_id,
                "c": self.certificate_id,
                "f": format(self.figure, "f"),
                "k": self.key_id,
                "na": _iso(self.valid_until),
                "nb": _iso(self.valid_from),
                "p": self.product_id,
                "u": self.unit,
                "v": 1,
            }
        )

    def to_json(self) -> dict[str, str]:
        return {
            "bodyId": self.body_id,
            "certificateId": self.certificate_id,
            "keyId": self.key_id,
            "productId": self.product_id,
            "figure": format(self.figure, "f"),
            "unit": self.unit,
            "validFrom": _iso(self.valid_from),
            "validUntil": _iso(self.valid_until),
        }


def label_for(certificate: Certificate, *, valid_until: datetime | None = None) -> Label:
    """The label of *certificate*: its figure, unit and product; valid as long as the
    certificate (or until *valid_until*, if earlier)."""
    until = certificate.valid_until
    if valid_until is not None:
        until = min(until, valid_until.astimezone(UTC))
    return Label(
        certificate.body_id,
        certificate.certificate_id,
        certificate.key_id,
        certificate.product_id,
        certificate.figure,
        certificate.unit,
        certificate.valid_from,
        until,
    )


def label_url(verify_url: str, text: str) -> str:
    """What a QR code carries for a person: the verification page's address (``GET
    /labels/verify`` of the exchange's API) with the label *text* as its ``payload``, so a phone
    that scans it opens the verdict. The label inside is unchanged: :func:`label_from_scan`
    takes it back out."""
    if not verify_url.startswith("https://"):
        raise ValueError(f"the verification address must be https:// (got {verify_url!r:.80})")
    separator = "&" if "?" in verify_url else "?"
    return f"{verify_url}{separator}{urllib.parse.urlencode({'payload': text})}"


def label_from_scan(scanned: str) -> str:
    """The label text from what a scanner read: the text itself (``PCFX1.…``), or an address
    made by :func:`label_url` (its ``payload`` parameter); anything else comes back unchanged
    (and :func:`check_label` calls it malformed)."""
    scanned = scanned.strip()
    if scanned.startswith(LABEL_PREFIX):
        return scanned
    query = urllib.parse.urlsplit(scanned).query
    payloads = urllib.parse.parse_qs(query).get("payload", [])
    return payloads[0] if len(payloads) == 1 else scanned


def encode_label(label: Label, private_key: Ed25519PrivateKey) -> str:
    """Sign *label* with the body's key (its key id must be the label's) and return the text."""
    if key_id_of(private_key.public_key()) != label.key_id:
        raise CertificationError(
            f"the label names key {label.key_id!r} but the private key's id is"
            f" {key_id_of(private_key.public_key())!r}",
            reason="unknown_key",
            hint="Sign the label with the key that signed the certificate.",
        )
    body = label.body()
    signature = private_key.sign(pae(PAYLOAD_LABEL, body))
    return f"{LABEL_PREFIX}{_b64(body)}.{_b64(signature)}"


def _malformed(message: str) -> CertificationError:
    return CertificationError(
        f"not a carbon label: {message}",
        reason="malformed",
        hint="Scan the QR code again, or pass the label text exactly as printed (PCFX1.…).",
    )


def decode_label(text: str) -> tuple[Label, bytes, bytes]:
    """(label, signed body, signature) of a label's text; :class:`CertificationError`
    (``malformed``) naming the part that is wrong. Checks no signature."""
    text = text.strip()
    if len(text) > _MAX_LABEL:
        raise _malformed(f"at most {_MAX_LABEL} characters (got {len(text)})")
    if not text.startswith(LABEL_PREFIX):
        raise _malformed(f"must start with {LABEL_PREFIX!r} (got {text[:12]!r})")
    parts = text[len(LABEL_PREFIX) :].split(".")
    if len(parts) != 2 or not all(_B64_RE.match(p) for p in parts):
        raise _malformed("must be PCFX1.<base64url body>.<base64url signature>")
    try:
        body, signature = _unb64(parts[0]), _unb64(parts[1])
        data = orjson.loads(body)
    except (ValueError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise _malformed(f"the body is not base64url JSON ({exc})") from None
    if not isinstance(data, dict):
        raise _malformed(f"the body must be a JSON object (got {type(data).__name__})")
    if data.get("v") != 1:
        raise _malformed(f"'v' must be 1 (got {data.get('v')!r})")
    problems: list[str] = []
    fields: dict[str, str] = {}
    for key in ("b", "c", "f", "k", "na", "nb", "p", "u"):
        value = data.get(key)
        if not isinstance(value, str) or not value:
            problems.append(f"'{key}' must be a non-empty string (got {value!r})")
        else:
            fields[key] = value
    if "f" in fields and not _DECIMAL_RE.match(fields["f"]):
        problems.append(f"'f' must be a decimal string (got {fields['f']!r})")
    moments: dict[str, datetime] = {}
    for key in ("nb", "na"):
        if key in fields:
            try:
                moment = datetime.fromisoformat(fields[key])
                if moment.tzinfo is None:
                    raise ValueError
                moments[key] = moment.astimezone(UTC)
            except ValueError:
                problems.append(
                    f"'{key}' must be an ISO 8601 date-time in UTC (got {fields[key]!r})"
                )
    if problems:
        raise _malformed("; ".join(problems))
    label = Label(
        fields["b"],
        fields["c"],
        fields["k"],
        fields["p"],
        Decimal(fields["f"]),
        fields["u"],
        moments["nb"],
        moments["na"],
    )
    return label, body, signature


@dataclass(frozen=True, slots=True)
class LabelCheck:
    """One step of a label's verification."""

    step: int
    name: str
    ok: bool
    reason: str = ""
    """The rule broken (``bad_signature``, ``stale``, ...); empty when *ok*."""
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "check": self.name,
            "ok": self.ok,
            "reason": self.reason or None,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class LabelVerdict:
    """Every check's result for one label at one moment (:func:`check_label`)."""

    label: Label | None
    checks: tuple[LabelCheck, ...]
    at: datetime
    status: CertStatus | None = None
    """The certificate's status, once the label's signature held."""

    @property
    def valid(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failures(self) -> tuple[LabelCheck, ...]:
        return tuple(c for c in self.checks if not c.ok)

    def to_json(self) -> dict[str, Any]:
        """The verdict as ``--json`` and the API return it (camelCase)."""
        return {
            "valid": self.valid,
            "verifiedAt": _iso(self.at),
            "label": self.label.to_json() if self.label else None,
            "certificateStatus": self.status.value if self.status else None,
            "reasons": [c.reason for c in self.failures],
            "checks": [c.to_json() for c in self.checks],
        }


def check_label(text: str, registry: CertRegistry, *, at: datetime) -> LabelVerdict:
    """Verify a label's text against *registry* at *at* (steps 1-8 of the module docstring)."""
    checks: list[LabelCheck] = []

    def fail(step: int, name: str, error: CertificationError) -> LabelVerdict:
        checks.append(LabelCheck(step, name, False, error.reason, error.message))
        return LabelVerdict(label, tuple(checks), at)

    label: Label | None = None
    # (1) decodes
    try:
        label, body, signature = decode_label(text)
    except CertificationError as exc:
        return fail(1, "decodes", exc)
    checks.append(LabelCheck(1, "decodes", True, message="a well-formed carbon label"))
    # (2) body and key registered
    state = registry.bodies.get(label.body_id)
    key = state.registration.key(label.key_id) if state is not None else None
    if state is None or key is None:
        what = (
            f"no body {label.body_id!r} is registered"
            if state is None
            else f"key {label.key_id!r} is not one of body {label.body_id!r}'s keys"
        )
        return fail(
            2,
            "body registered",
            CertificationError(what, reason="unknown_body" if state is None else "unknown_key"),
        )
    checks.append(
        LabelCheck(
            2,
            "body registered",
            True,
            message=f"{state.registration.name} ({state.registration.accreditation_no})",
        )
    )
    # (3) signature
    try:
        verify_bytes(key.public_key, signature, pae(PAYLOAD_LABEL, body), what="carbon label")
    except TrustError as exc:
        return fail(3, "signature", CertificationError(exc.message, reason="bad_signature"))
    checks.append(LabelCheck(3, "signature", True, message=f"signed by key {label.key_id}"))
    # (4) body not blacklisted now
    listed = state.blacklisted_at(at)
    checks.append(
        LabelCheck(
            4,
            "body not blacklisted",
            False,
            "blacklisted_body",
            f"body {label.body_id!r} is blacklisted since {_iso(listed[0])}: {listed[1]}",
        )
        if listed is not None
        else LabelCheck(4, "body not blacklisted", True)
    )
    # (5) the certificate, and the label says what it certified
    cert_state = registry.certificates.get(label.certificate_id)
    if cert_state is None or cert_state.certificate.body_id != label.body_id:
        checks.append(
            LabelCheck(
                5,
                "certificate matches",
                False,
                "unknown_certificate",
                f"certificate {label.certificate_id!r} of body"
                f" {label.body_id!r} is not on pcf.certificates",
            )
        )
        return LabelVerdict(label, tuple(checks), at)
    cert = cert_state.certificate
    differ = [
        f"{name} {mine!r} (certified: {theirs!r})"
        for name, mine, theirs in (
            ("product", label.product_id, cert.product_id),
            ("figure", format(label.figure, "f"), format(cert.figure, "f")),
            ("unit", label.unit, cert.unit),
        )
        if mine != theirs
    ]
    checks.append(
        LabelCheck(
            5, "certificate matches", False, "label_mismatch", "the label says " + ", ".join(differ)
        )
        if differ
        else LabelCheck(
            5,
            "certificate matches",
            True,
            message=f"{cert.scope}, PCR {cert.pcr_pack_id} {cert.pcr_pack_version}",
        )
    )
    # (6)-(8) from the certificate's status at *at*
    report = registry.status(label.certificate_id, at)
    revoked = cert_state.revoked_at is not None and at >= cert_state.revoked_at
    checks.append(
        LabelCheck(
            6,
            "certificate not revoked",
            False,
            "revoked_certificate",
            report.finding(CertStatus.REVOKED) or "revoked",
        )
        if revoked
        else LabelCheck(6, "certificate not revoked", True)
    )
    window = []
    if not label.valid_from <= at < label.valid_until:
        window.append(
            (
                "expired_label",
                f"the label is valid from {_iso(label.valid_from)} until {_iso(label.valid_until)}",
            )
        )
    if not cert.valid_from <= at < cert.valid_until:
        window.append(
            (
                "expired_certificate",
                f"the certificate is valid from"
                f" {_iso(cert.valid_from)} until {_iso(cert.valid_until)}",
            )
        )
    checks.append(
        LabelCheck(7, "valid now", False, window[0][0], "; ".join(m for _, m in window))
        if window
        else LabelCheck(7, "valid now", True)
    )
    stale = report.finding(CertStatus.STALE)
    checks.append(
        LabelCheck(8, "footprint current", False, "stale", stale)
        if stale is not None
        else LabelCheck(
            8,
            "footprint current",
            True,
            message="no newer footprint known"
            if cert.product_id not in registry.footprints
            else "the certified footprint is the current one",
        )
    )
    return LabelVerdict(label, tuple(checks), at, report.status)


def verify_label(text: str, registry: CertRegistry, *, at: datetime) -> LabelVerdict:
    """:func:`check_label`, raising :class:`CertificationError` for the first failed check."""
    verdict = check_label(text, registry, at=at)
    if not verdict.valid:
        first = verdict.failures[0]
        raise CertificationError(first.message, reason=first.reason)
    return verdict
