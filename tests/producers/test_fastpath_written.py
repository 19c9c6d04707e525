"""The fast lane's one compiled pass (``footprint_written_ok``: the rules and the form the model
writes, together) decides exactly what the two passes it replaced decided (``footprint_ok``, then
a walk of the record asking each decimal, instant, id and extension to be in the model's form,
kept here verbatim as the reference), and a JSON Lines file checked the new way gives the same
items, bytes, rejections and reasons as one checked the old way."""

from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
from collections.abc import Sequence
from datetime import UTC
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import orjson
import pytest

from pcf_exchange.contracts import PCFX_EXTENSION_SCHEMA
from pcf_exchange.contracts._checkgen import (
    DEC_KINDS,
    WRITTEN_DECIMAL_RE,
    Dec,
    Obj,
    compile_object,
    instant,
    written_datetime,
    written_instant,
)
from pcf_exchange.contracts._fast import footprint_ok
from pcf_exchange.contracts._footprint import _ROOMY, _same_at_precision, mass_warnings
from pcf_exchange.contracts._pact import PCFX_EXTENSION_SPEC_VERSION
from pcf_exchange.contracts._types import format_datetime, format_decimal
from pcf_exchange.contracts.errors import Violation
from pcf_exchange.producers import _fastpath, _input
from pcf_exchange.producers._fastpath import (
    PactFootprint,
    canonical_payload,
    footprint_written_ok,
)
from pcf_exchange.producers._input import Item, jsonl_item
from pcf_exchange.producers._parallel import Compact, Line, _chunks, _expand, _run, check_chunk
from pcf_exchange.producers._pcr import pcr_gate
from tests.contracts.conftest import FOOTPRINT_JSON
from tests.contracts.test_fast_path import PATHS, TRICKY, _mutated
from tests.producers.conftest import footprint_json
from tests.producers.test_fastpath import DECLINED, TAKEN
from tests.producers.test_parallel import _mixed_file

# -- the reference: the second pass as it was (producers/_fastpath.py before session 18) --------


@functools.lru_cache(maxsize=8192)
def _normal_decimal(text: str) -> bool:
    return format_decimal(Decimal(text)) == text


@functools.lru_cache(maxsize=8192)
def _normal_instant(text: str) -> bool:
    moment = instant(text)
    return moment is not None and format_datetime(moment) == text


_TOP_INSTANTS: Final = ("created", "validityPeriodStart", "validityPeriodEnd")
_PCF_NOT_DECIMAL: Final = frozenset(
    {
        "declaredUnitOfMeasurement",
        "referencePeriodStart",
        "referencePeriodEnd",
        "geographyRegionOrSubregion",
        "geographyCountry",
        "geographyCountrySubdivision",
        "boundaryProcessesDescription",
        "packagingEmissionsIncluded",
        "ccsTechnologicalCO2CaptureIncluded",
        "technologicalCO2CaptureOrigin",
        "ccuCalculationApproach",
        "ccuCreditCertification",
        "ipccCharacterizationFactors",
        "crossSectoralStandards",
        "productOrSectorSpecificRules",
        "exemptedEmissionsDescription",
        "allocationRulesDescription",
        "secondaryEmissionFactorSources",
        "dqi",
        "verification",
    }
)
"""The pcf fields that are not decimal text (every other pcf field is)."""


def _normal(p: dict[str, Any], compact: bytes | None = None) -> bool:
    """Whether ``to_pact_json(parse_footprint(p)) == p`` (given ``footprint_ok(p)``); *compact*
    is ``orjson.dumps(p)`` (keys sorted or not) if the caller has it."""
    # (a string holding ":null" only sends it the model's way)
    if b":null" in (orjson.dumps(p) if compact is None else compact):
        return False
    if p["id"] != p["id"].lower():
        return False
    preceding = p.get("precedingPfIds")
    if preceding is not None and any(x != x.lower() for x in preceding):
        return False
    if not all(_normal_instant(p[k]) for k in _TOP_INSTANTS if k in p):
        return False
    pcf = p["pcf"]
    for key, value in pcf.items():
        if key not in _PCF_NOT_DECIMAL and not _normal_decimal(value):
            return False
    if not (
        _normal_instant(pcf["referencePeriodStart"]) and _normal_instant(pcf["referencePeriodEnd"])
    ):
        return False
    dqi = pcf.get("dqi")
    if dqi is not None and not all(_normal_decimal(v) for v in dqi.values()):
        return False
    verification = pcf.get("verification")
    completed = verification.get("completedAt") if verification is not None else None
    if completed is not None and not _normal_instant(completed):
        return False
    if "extensions" in p:
        return _normal_extension(p["extensions"])
    return True


def _normal_extension(extensions: list[dict[str, Any]]) -> bool:
    if len(extensions) != 1:  # an empty list is left out by the model
        return False
    (ext,) = extensions
    if ext["specVersion"] != PCFX_EXTENSION_SPEC_VERSION or "documentation" in ext:
        return False
    if ext["dataSchema"] != PCFX_EXTENSION_SCHEMA:  # pragma: no cover - footprint_ok checked it
        return False
    data = ext["data"]
    stages = data.get("stageBreakdown")
    if stages is not None and not all(_normal_decimal(v) for v in stages.values()):
        return False
    uncertainty = data.get("uncertainty")
    if uncertainty is not None and not all(
        _normal_decimal(v) for k, v in uncertainty.items() if k != "method"
    ):
        return False
    labels = data.get("fieldLabels")
    if labels is not None:
        for label in labels.values():  # the model leaves a field at its default out
            if label.get("personalInfo") == "NONE" or label.get("tradeSecret") is False:
                return False
    return True


def _may_warn(p: dict[str, Any]) -> bool:
    """Whether ``check_footprint(p)`` may give a warning (then the model path gives it)."""
    pcf = p["pcf"]
    mass = pcf.get("productMassPerDeclaredUnit")
    if pcf["declaredUnitOfMeasurement"] == "kilogram" and mass is not None:
        amount = Decimal(pcf["declaredUnitAmount"])
        if mass_warnings(amount, "kilogram", Decimal(mass)):
            return True
    excluding = Decimal(pcf["pcfExcludingBiogenicUptake"])
    uptake = pcf.get("biogenicCO2Uptake")
    if uptake is not None:
        computed = _ROOMY.add(excluding, Decimal(uptake))
        if not _same_at_precision(Decimal(pcf["pcfIncludingBiogenicUptake"]), computed):
            return True
    if pcf.get("ccuCreditCertification") is not None and pcf.get("ccuCalculationApproach") != (
        "Credit"
    ):
        return True
    for rule in pcf.get("productOrSectorSpecificRules", ()):
        if rule["operator"] != "Other" and rule.get("otherOperatorName") is not None:
            return True
    for ext in p.get("extensions", ()):
        data = ext["data"]
        uncertainty = data.get("uncertainty")
        low = uncertainty.get("lower95") if uncertainty is not None else None
        high = uncertainty.get("upper95") if uncertainty is not None else None
        if low is not None and high is not None and not Decimal(low) <= excluding <= Decimal(high):
            return True
        stages = data.get("stageBreakdown")
        if stages:
            total = Decimal(0)
            for amount_text in stages.values():
                total = _ROOMY.add(total, Decimal(amount_text))
            if not _same_at_precision(excluding, total):
                return True
    return False


def _reference_accepts(value: Any, canonical: bytes) -> bool:
    """The old lane's decision: the rules, then the written form, then no warning."""
    return footprint_ok(value) and _normal(value, canonical) and not _may_warn(value)


def _reference_accept(value: Any, canonical: bytes | None = None) -> PactFootprint | None:
    """``_fastpath.accept`` as it was: the same result built when the old passes agree."""
    written = canonical_payload(value) if canonical is None else canonical
    if not _reference_accepts(value, written):
        return None
    created = instant(value["created"])
    assert created is not None
    return PactFootprint(
        value["id"],
        created,
        value["status"],
        tuple(value["companyIds"]),
        tuple(value["productIds"]),
        written,
        value,
    )


def _new_accepts(value: Any, canonical: bytes) -> bool:
    return _fastpath.accept(value, canonical) is not None


# -- the pieces ----------------------------------------------------------------------------------


def test_the_written_decimal_pattern_is_format_decimal() -> None:
    signs, whole = ("", "+", "-"), ("0", "00", "1", "01", "10", "007", "100", "9" * 40)
    fractions = ("", ".0", ".5", ".50", ".000", ".0001", "." + "1" * 20)
    texts = ["".join(t) for t in itertools.product(signs, whole, fractions)]
    for text in texts:
        assert (WRITTEN_DECIMAL_RE.fullmatch(text) is not None) is _normal_decimal(text), text
    # each kind's written check (its sign rule inside the pattern) is the rule and the form
    texts += ["", "x", "1e5", "1.", ".5", "-", "9" * 65, "0." + "0" * 63, "٦"]
    for kind in sorted(DEC_KINDS):
        rule = compile_object(Obj({"x": Dec(kind)}, required=frozenset({"x"})))
        written = compile_object(Obj({"x": Dec(kind, written=True)}, required=frozenset({"x"})))
        for text in texts:
            expected = rule({"x": text}) and _normal_decimal(text)
            assert written({"x": text}) is expected, (kind, text)


def test_a_written_instant_is_one_format_datetime_gives_back() -> None:
    texts = [
        "2025-03-01T08:00:00Z",
        "2025-03-01T08:00:00z",
        "2025-03-01t08:00:00Z",
        "2025-03-01T08:00:00+00:00",
        "2025-03-01T16:00:00+08:00",
        "2025-03-01T08:00:00.5Z",
        "2025-03-01T08:00:00.500000Z",
        "2025-03-01T08:00:00.000000Z",
        "2025-03-01T08:00:00.0000001Z",
        "2025-02-30T08:00:00Z",
        "0001-01-01T00:00:00Z",
        "0000-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z",
        "2024-02-29T12:00:00Z",
        "2025-02-29T12:00:00Z",
        "2025-03-01T24:00:00Z",
        "2025-03-01T23:59:60Z",
        "2025-13-01T00:00:00Z",
        "2025-3-01T00:00:00Z",
        "2025-03-01T08:00:00.000001Z",
        "2025-03-01T08:00:00.100000Z",
        "2025-03-01T08:00:00.1000000Z",
        "2025-03-01T08:00:00.0000000Z",
        "2025-03-01T08:00:00.1234567Z",
        "2025-03-01T08:00:00.00000Z",
        "2025-03-01T08:00:00-00:00",
        "2025-03-01T08:00:00Z ",
        "+2025-03-01T08:00:00Z",
        "not a time",
    ]
    texts += [f"2025-03-01T08:00:00.{n:06d}Z" for n in (0, 1, 10, 999_999, 500_000)]
    for text in texts:
        assert written_instant(text) is _normal_instant(text), text
        if written_instant(text):  # read as the models read it: the same instant, in UTC
            read = written_datetime(text)
            assert read == instant(text) and read is not None and read.tzinfo is UTC, text


# -- one pass against the two ----------------------------------------------------------------------

EXTRA: Final[list[Any]] = [
    "61.4",
    "61.400",
    "061.40",
    "+61.40",
    "0.0",
    "-0",
    "2025-03-01T08:00:00.000001Z",
    "2025-03-01T08:00:00.000000Z",
    "2025-03-01T08:00:00+00:00",
    "BE000000-0000-0000-0000-000000000000",
    "NONE",
    "2.0.0",
    "1.0.0",
    False,
    True,
    "https://x.example/doc",
    [],
    {},
    [PCFX_EXTENSION_SCHEMA],
]


def _cases() -> list[dict[str, Any]]:
    cases = []
    for mutate in (*(c[1] for c in TAKEN), *(c[1] for c in DECLINED)):
        payload = copy.deepcopy(FOOTPRINT_JSON)
        mutate(payload)
        cases.append(payload)
    for path, action, value in itertools.product(PATHS, ("set", "delete", "add"), TRICKY + EXTRA):
        if action != "set" and value is not None:
            if action == "delete" and value != "0":
                continue  # (a delete is the same whatever the value: once)
            if action == "add" and value not in ("0", None, "NONE"):
                continue
        cases.append(_mutated(path, action, value))
    # the uptake sum (a warning when it is off): zero or not, the same text or not
    for uptake, including, excluding in itertools.product(
        ("0", "-0", "0.000", "-0.0", "-1", "-0.01", "+0", "00"),
        ("61.40", "61.4", "61.400", "61.39", "60.40", "-61.40"),
        ("61.40", "61.4", "0", "-0"),
    ):
        payload = copy.deepcopy(FOOTPRINT_JSON)
        payload["pcf"].update(
            biogenicCO2Uptake=uptake,
            pcfIncludingBiogenicUptake=including,
            pcfExcludingBiogenicUptake=excluding,
        )
        payload.pop("extensions")  # (no stages or interval to hold the total)
        cases.append(payload)
    return cases


def test_the_one_pass_decides_what_the_passes_it_replaced_decided() -> None:
    cases = _cases()
    taken = 0
    for payload in cases:
        value = orjson.loads(orjson.dumps(payload))
        canonical = canonical_payload(value)
        old = _reference_accepts(value, canonical)
        assert _new_accepts(value, canonical) is old, payload
        assert (footprint_written_ok(value) and b":null" not in canonical) is (
            footprint_ok(value) and _normal(value, canonical)
        ), payload
        taken += old
    # both answers occur often: the comparison is not between two "no"s
    assert len(cases) > 5_000 and 500 < taken < len(cases) - 500, (len(cases), taken)


# -- a whole file, checked the old way and the new ------------------------------------------------


def _seen(item: Item) -> tuple[Any, ...]:
    """Everything a checked item carries that the publisher reads."""
    record = item.record
    if isinstance(record, PactFootprint):
        body: Any = (
            "lane",
            record.canonical,
            record.id,
            record.created,
            record.status,
            record.company_ids,
            record.product_ids,
        )
    elif record is None:
        body = None
    else:
        body = (type(record).__name__, record.model_dump(mode="json", by_alias=True))
    error = None if item.error is None else (type(item.error), item.error.violations)
    return (body, item.ref, item.file, item.index, item.line, error, item.warnings, item.pcr)


def _file(tmp_path: Path) -> Path:
    """The parallel tests' mixed file (good lines around every kind of bad or unusual one),
    then every named case and a mutation of each path, as lines."""
    path = _mixed_file(tmp_path / "mixed.jsonl")
    lines = [path.read_bytes().rstrip(b"\n")]
    for n, (path_, value) in enumerate(itertools.product(PATHS, ("", "-0", "061.4", None))):
        payload = footprint_json(500 + n)
        lines.append(orjson.dumps(_mutated(path_, "set", value)))
        lines.append(orjson.dumps(payload))
    for mutate in (*(c[1] for c in TAKEN), *(c[1] for c in DECLINED)):
        payload = footprint_json(2_000 + len(lines))
        mutate(payload)
        lines.append(orjson.dumps(payload))
    out = tmp_path / "file.jsonl"
    out.write_bytes(b"\n".join(lines) + b"\n")
    return out


def _reference_check_chunk(name: str, lines: list[Line], strict: bool) -> list[Item]:
    """``producers._parallel.check_chunk`` as it was: every line's item, then the PCR gate."""
    items = []
    for number, index, raw in lines:
        item = jsonl_item(name, number, index, raw)
        if item.record is not None:
            gated = pcr_gate(item, strict=strict)
            verdict: tuple[Violation, ...] = ()
            if isinstance(gated, list):
                verdict = tuple(gated)
            else:
                item = gated
            item = dataclasses.replace(item, pcr=verdict)
        items.append(item)
    return items


@pytest.mark.parametrize("strict", [False, True])
def test_a_file_checked_the_new_way_gives_what_the_old_way_gave(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, strict: bool
) -> None:
    path = _file(tmp_path)
    name = str(path)
    with open(path, "rb") as handle:
        chunks = list(_chunks(handle, 97))
    # as a checking process hands them over, and as this process checks them itself
    new = [_seen(i) for c in chunks for i in _expand(name, _run(_check(strict), name, c))]
    here = [_seen(i) for c in chunks for i in _expand(name, check_chunk(name, c, strict))]
    monkeypatch.setattr(_input, "accept", _reference_accept)
    old = [_seen(i) for c in chunks for i in _reference_check_chunk(name, c, strict)]
    assert new == old
    assert here == old
    kinds = {s[0][0] if s[0] is not None else "refused" for s in old}
    assert kinds == {"lane", "ProductFootprint", "refused"}, kinds
    lane = sum(1 for s in old if s[0] is not None and s[0][0] == "lane")
    assert lane > 300 and len(old) - lane > 100, (lane, len(old))
    # some lane records are held back by the PCR gate (a warning, or refused with --strict)
    assert any(s[0] is not None and s[0][0] == "lane" and s[7] != () for s in old)


def _check(strict: bool) -> Any:
    return functools.partial(_strict_check, strict)


def _strict_check(strict: bool, name: str, lines: list[Line]) -> Sequence[Item | Compact]:
    return check_chunk(name, lines, strict)
