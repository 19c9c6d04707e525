"""The PCR check: a footprint or BOM that names a category, against its rule pack.

Pure: PACT JSON (or a BOM's JSON) in, a typed :class:`PcrCheck` out. The producers run it at
publish time (``--dry-run`` too) on the parsed footprint (:func:`check_footprint_model`: the same
facts read from the model, no dump to JSON), the streams at ingestion (:mod:`streams._ingest_step`)
on the checked PACT JSON, and ``pcfx pcr check`` on a file, so all three judge a record the same
way (a test checks the model and JSON checks agree).

**Which pack.** A footprint names its catalogue entry by listing the pack id among
``pcf.productOrSectorSpecificRules[*].ruleNames`` (e.g. ``CN-CCL-PCR-CEMENT``); it is then held
to that pack as the entry's product. Otherwise its pcfx extension's ``pilotCategory`` decides
(a BOM: ``productInfo.pilotCategory``). A category has one or several catalogue entries (lithium
batteries four, steel three, electronics four); the record is checked against each of them, in
order:

1. the entries whose product may be declared in the record's unit dimension: as that product
   (every rule). The record passes if one entry accepts it; otherwise the entry it comes closest
   to (fewest violations) is reported;
2. if none, the entries whose *supply chain* may be declared in that dimension (a kilogram of
   lithium carbonate naming the battery category): the plausibility range only;
3. if none either: a ``declared-unit`` violation naming the dimensions the category accepts.

A category without a pack (``UREA``, ``PHOSPHATE_FERTILISER``, ``OTHER``: not in the
catalogue), or a record naming none, is ``NOT_APPLICABLE``, said so, never silently passed.

**Rules, in order** (each finding names the rule, the field path and the pack ``id@version``,
what was expected and what came in): ``declared-unit`` (the dimension, :mod:`contracts.units`),
``boundary`` (a cradle-to-gate study declares no ``use``/``end_of_life`` stage),
``stage.<name>`` (mandatory stages in ``stageBreakdown``), ``figure.<path>`` (required figures),
``data-quality.<DQR>`` (each PACT DQR at most the pack's maximum, 1 best), and last
``plausible-range``: ``pcfExcludingBiogenicUptake`` per one unit of the rule (exactly converted
from ``declaredUnitAmount`` × ``declaredUnitOfMeasurement``). A range finding is not a
violation: the record is ``OUT_OF_RANGE``, to be held for review, unless the caller waives the
range (a compliance officer released it).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Final

from pcf_exchange.contracts._footprint import (
    PCFX_EXTENSION_SCHEMA,
    CarbonFootprint,
    ProductFootprint,
)
from pcf_exchange.contracts.errors import (
    PcrOutOfRange,
    PcrViolation,
    UnitError,
    ValidationFailed,
    Violation,
)
from pcf_exchange.contracts.pcr._packs import (
    GRAVE_STAGES,
    Boundary,
    DeclaredUnitRule,
    PackSet,
    RulePack,
    default_packs,
)
from pcf_exchange.contracts.units import Dimension, convert, dimension_of

__all__ = [
    "PACK_ID_PREFIX",
    "PcrCheck",
    "PcrFinding",
    "PcrOutcome",
    "check_bom",
    "check_footprint",
    "check_footprint_model",
    "verify_footprint",
]

PACK_ID_PREFIX: Final = "CN-CCL-PCR-"
"""Every shipped pack id starts so; a rule name with this prefix that names no pack is refused."""
_DQRS: Final = ("technologicalDQR", "geographicalDQR", "temporalDQR")
_EXACT: Final = Context(prec=50)


class PcrOutcome(StrEnum):
    NOT_APPLICABLE = "not_applicable"
    """No category, or a category without a pack: nothing to check (``note`` says which)."""
    PASSED = "passed"
    VIOLATED = "violated"
    """A rule is broken: refused (publish) or to the DLQ (ingestion)."""
    OUT_OF_RANGE = "out_of_range"
    """Every rule holds but the figure is far outside the plausible range: held for review."""


@dataclass(frozen=True, slots=True)
class PcrFinding:
    """One broken rule: which, where, in which pack, what was expected and what came in."""

    rule: str
    path: str
    pack: str
    """``id@version``."""
    expected: str
    got: str | None

    def violation(self) -> Violation:
        return Violation.of(
            self.path,
            f"pcr.{self.rule}",
            f"rule {self.rule} of pack {self.pack}: must be {self.expected}",
            ... if self.got is None else self.got,
        )


@dataclass(frozen=True)
class PcrCheck:
    """What :func:`check_footprint` / :func:`check_bom` found."""

    outcome: PcrOutcome
    pack: RulePack | None = None
    role: str | None = None
    """``product`` (the catalogue entry's own record) or ``supply chain`` (an upstream one)."""
    findings: tuple[PcrFinding, ...] = ()
    """The violations (``VIOLATED``) or the one range finding (``OUT_OF_RANGE``)."""
    figure: Decimal | None = None
    """kgCO2e per one unit of the applied rule (``unit``), when a figure was checked."""
    unit: str | None = None
    note: str = ""

    @property
    def accepted(self) -> bool:
        return self.outcome in (PcrOutcome.PASSED, PcrOutcome.NOT_APPLICABLE)

    def error(self, subject: str = "record") -> ValidationFailed | None:
        """The error to refuse (``VIOLATED``) or hold (``OUT_OF_RANGE``) with, else ``None``."""
        violations = [f.violation() for f in self.findings]
        if self.outcome is PcrOutcome.VIOLATED:
            return PcrViolation(violations, subject=subject)
        if self.outcome is PcrOutcome.OUT_OF_RANGE:
            return PcrOutOfRange(violations, subject=subject)
        return None

    def to_dict(self) -> dict[str, Any]:
        """camelCase, for ``--json``."""
        return {
            "outcome": self.outcome.value,
            "pack": None if self.pack is None else self.pack.id,
            "packVersion": None if self.pack is None else self.pack.version,
            "role": self.role,
            "figure": None if self.figure is None else f"{self.figure.normalize():f}",
            "unit": self.unit,
            "note": self.note,
            "findings": [
                {
                    "rule": f.rule,
                    "path": f.path,
                    "pack": f.pack,
                    "expected": f.expected,
                    "got": f.got,
                }
                for f in self.findings
            ],
        }


@dataclass(slots=True, eq=False)
class _Facts:
    """What the rules read of a record, with the path each came from (read-only by
    convention: not ``frozen``, which costs a call per field on every record)."""

    category: str | None
    category_path: str
    named: tuple[str, ...]
    unit: str | None
    unit_path: str
    amount: Decimal | None
    figure: Decimal | None
    figure_path: str
    stages: AbstractSet[str] | None
    stages_path: str
    pcf: Mapping[str, Any]
    pcf_path: str
    is_bom: bool


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, str):
        try:
            number = Decimal(value)
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def _extension_paths(i: int) -> tuple[str, str]:
    return f"extensions[{i}].data.pilotCategory", f"extensions[{i}].data.stageBreakdown"


_EXTENSION_PATHS: Final = tuple(_extension_paths(i) for i in range(8))
"""The category's and the stages' paths in the extension at each place (written once)."""


def _footprint_facts(pact: Mapping[str, Any]) -> _Facts:
    pcf = pact.get("pcf")
    if not isinstance(pcf, dict):
        pcf = {}
    category, category_path = None, "extensions"
    stages: AbstractSet[str] | None = None
    stages_path = "extensions"
    extensions = pact.get("extensions")
    for i, ext in enumerate(extensions if isinstance(extensions, list) else ()):
        if isinstance(ext, dict) and ext.get("dataSchema") == PCFX_EXTENSION_SCHEMA:
            data = ext.get("data")
            if not isinstance(data, dict):
                data = {}
            value = data.get("pilotCategory")
            category = value if isinstance(value, str) else None
            paths = _EXTENSION_PATHS[i] if i < len(_EXTENSION_PATHS) else _extension_paths(i)
            category_path, stages_path = paths
            breakdown = data.get("stageBreakdown")
            stages = breakdown.keys() if isinstance(breakdown, dict) else frozenset()
            break
    named: list[str] = []
    rules = pcf.get("productOrSectorSpecificRules")
    for rule in rules if isinstance(rules, list) else ():
        names = rule.get("ruleNames") if isinstance(rule, dict) else None
        if isinstance(names, list):
            named += [n for n in names if isinstance(n, str) and n.startswith(PACK_ID_PREFIX)]
    unit = pcf.get("declaredUnitOfMeasurement")
    return _Facts(
        category,
        category_path,
        tuple(named),
        unit if isinstance(unit, str) else None,
        "pcf.declaredUnitOfMeasurement",
        _decimal(pcf.get("declaredUnitAmount")),
        _decimal(pcf.get("pcfExcludingBiogenicUptake")),
        "pcf.pcfExcludingBiogenicUptake",
        stages,
        stages_path,
        pcf,
        "pcf",
        False,
    )


_ALIASES: Final = {f.alias or n: n for n, f in CarbonFootprint.model_fields.items()}
"""PACT name -> attribute of the ``pcf`` model (the packs name figures as PACT does)."""


class _PcfView:
    """A footprint model's ``pcf`` read by PACT name, as :func:`_product_findings` reads the JSON
    (``dqi`` as its three DQR strings): no dump of the whole record at publish time."""

    __slots__ = ("pcf",)

    def __init__(self, pcf: CarbonFootprint) -> None:
        self.pcf = pcf

    def get(self, alias: str, default: Any = None) -> Any:
        name = _ALIASES.get(alias)
        value = default if name is None else getattr(self.pcf, name, default)
        if alias == "dqi" and value is not None:
            return {
                "technologicalDQR": str(value.technological_dqr),
                "geographicalDQR": str(value.geographical_dqr),
                "temporalDQR": str(value.temporal_dqr),
            }
        return value


def _model_facts(footprint: ProductFootprint) -> _Facts:
    """The facts of a footprint model, at the paths its PACT JSON has (:func:`to_pact_json`
    appends our extension after the foreign ones)."""
    pcf, ext = footprint.pcf, footprint.pcfx
    at = f"extensions[{len(footprint.extensions or ())}].data"
    named = [
        n
        for rule in pcf.product_or_sector_specific_rules or ()
        for n in rule.rule_names
        if n.startswith(PACK_ID_PREFIX)
    ]
    category = None if ext is None or ext.pilot_category is None else ext.pilot_category.value
    stages = None if ext is None else (ext.stage_breakdown or {}).keys()
    return _Facts(
        category=category,
        category_path=f"{at}.pilotCategory" if ext is not None else "extensions",
        named=tuple(named),
        unit=pcf.declared_unit_of_measurement,
        unit_path="pcf.declaredUnitOfMeasurement",
        amount=pcf.declared_unit_amount,
        figure=pcf.pcf_excluding_biogenic_uptake,
        figure_path="pcf.pcfExcludingBiogenicUptake",
        stages=stages,
        stages_path=f"{at}.stageBreakdown" if ext is not None else "extensions",
        pcf=_PcfView(pcf),  # type: ignore[arg-type]
        pcf_path="pcf",
        is_bom=False,
    )


def _bom_facts(bom: Mapping[str, Any]) -> _Facts:
    info = bom.get("productInfo")
    info = info if isinstance(info, dict) else {}
    declared = bom.get("declaredUnit")
    declared = declared if isinstance(declared, dict) else {}
    category = info.get("pilotCategory")
    unit = declared.get("unit")
    return _Facts(
        category=category if isinstance(category, str) else None,
        category_path="productInfo.pilotCategory",
        named=(),
        unit=unit if isinstance(unit, str) else None,
        unit_path="declaredUnit.unit",
        amount=_decimal(declared.get("amount")),
        figure=None,
        figure_path="",
        stages=None,
        stages_path="",
        pcf={},
        pcf_path="",
        is_bom=True,
    )


@functools.lru_cache(maxsize=256)
def _dimension(unit: str | None) -> Dimension | None:
    """(cached: asked three times per record, of a handful of units)"""
    if unit is None:
        return None
    try:
        return dimension_of(unit)
    except UnitError:
        return None


def _per_unit(facts: _Facts, rule: DeclaredUnitRule) -> Decimal | None:
    """The figure per one unit of *rule* (exact to 50 digits; for the range comparison only)."""
    if facts.figure is None or facts.amount is None or facts.unit is None or facts.amount <= 0:
        return None
    amount = convert(facts.amount, facts.unit, rule.unit)
    return _EXACT.divide(facts.figure, amount)


def _range_finding(
    facts: _Facts, pack: RulePack, rule: DeclaredUnitRule
) -> tuple[Decimal | None, PcrFinding | None]:
    figure = _per_unit(facts, rule)
    if figure is None or rule.range.contains(figure):
        return figure, None
    r = rule.range
    finding = PcrFinding(
        "plausible-range",
        facts.figure_path,
        pack.ref,
        f"within {r.low}..{r.high} kgCO2e per {rule.unit} for {rule.applies_to}"
        f" ({r.basis.value}: {r.source})",
        f"{figure.normalize():f} kgCO2e per {rule.unit}",
    )
    return figure, finding


def _product_findings(facts: _Facts, pack: RulePack) -> list[PcrFinding]:
    """Every rule of *pack* but the range, for the entry's own product."""
    out: list[PcrFinding] = []
    ref = pack.ref
    dim = _dimension(facts.unit)
    if dim is None or pack.product_rule(dim) is None:
        allowed = ", ".join(f"{r.dimension.value} (e.g. {r.unit})" for r in pack.declared_units)
        out.append(
            PcrFinding("declared-unit", facts.unit_path, ref, f"a unit of {allowed}", facts.unit)
        )
    if facts.is_bom:
        return out
    stages = facts.stages if facts.stages is not None else frozenset()
    beyond = sorted(GRAVE_STAGES & set(stages)) if stages else []
    if pack.boundary is Boundary.CRADLE_TO_GATE and beyond:
        out.append(
            PcrFinding(
                "boundary",
                f"{facts.stages_path}.{beyond[0]}",
                ref,
                "cradle-to-gate: no stage beyond the factory gate (use, end_of_life)",
                beyond[0],
            )
        )
    for stage in pack.mandatory_stages:
        if stage not in stages:
            out.append(
                PcrFinding(
                    f"stage.{stage}",
                    f"{facts.stages_path}.{stage}",
                    ref,
                    f"declared (the mandatory stages of this {pack.boundary.value} pack:"
                    f" {', '.join(pack.mandatory_stages)})",
                    None,
                )
            )
    for figure in pack.required_figures:
        if facts.pcf.get(figure) is None:
            out.append(
                PcrFinding(
                    f"figure.{figure}",
                    f"{facts.pcf_path}.{figure}",
                    ref,
                    "given (a required figure of this pack)",
                    None,
                )
            )
    if pack.max_dqr is not None:
        dqi = facts.pcf.get("dqi")
        if isinstance(dqi, dict):
            for name in _DQRS:
                value = _decimal(dqi.get(name))
                if value is not None and value > pack.max_dqr:
                    out.append(
                        PcrFinding(
                            f"data-quality.{name}",
                            f"{facts.pcf_path}.dqi.{name}",
                            ref,
                            f"at most {pack.max_dqr} (1 best; {pack.max_dqr_source})",
                            str(value),
                        )
                    )
        elif "dqi" not in pack.required_figures:
            out.append(
                PcrFinding(
                    "data-quality.dqi",
                    f"{facts.pcf_path}.dqi",
                    ref,
                    f"given, each DQR at most {pack.max_dqr}",
                    None,
                )
            )
    return out


@dataclass(slots=True, eq=False)
class _Trial:
    pack: RulePack
    role: str
    findings: tuple[PcrFinding, ...]
    range_finding: PcrFinding | None
    figure: Decimal | None
    unit: str | None

    @property
    def rank(self) -> tuple[int, int]:
        return (len(self.findings), self.range_finding is not None)


def _trial(facts: _Facts, pack: RulePack, role: str, waive_range: bool) -> _Trial:
    dim = _dimension(facts.unit)
    if role == "product":
        findings = tuple(_product_findings(facts, pack))
        rule = None if dim is None else pack.product_rule(dim)
    else:
        findings = ()
        rule = None if dim is None else pack.supply_chain_rule(dim)
    if rule is None or facts.is_bom:
        return _Trial(pack, role, findings, None, None, None if rule is None else rule.unit)
    figure, finding = _range_finding(facts, pack, rule)
    return _Trial(pack, role, findings, None if waive_range else finding, figure, rule.unit)


def _decide(facts: _Facts, packs: PackSet, waive_range: bool) -> PcrCheck:
    # the pack the record names (an entry of the catalogue) ...
    if facts.named:
        name = facts.named[0]
        pack = packs.get(name)
        path = "pcf.productOrSectorSpecificRules[*].ruleNames"
        if pack is None:
            known = ", ".join(p.id for p in packs)
            finding = PcrFinding("pack", path, "(none)", f"the id of a pack ({known})", name)
            return PcrCheck(PcrOutcome.VIOLATED, findings=(finding,), note="unknown pack")
        if facts.category is not None and facts.category != pack.pilot_category.value:
            finding = PcrFinding(
                "category", facts.category_path, pack.ref, pack.pilot_category.value, facts.category
            )
            return PcrCheck(PcrOutcome.VIOLATED, pack, "product", (finding,))
        return _result([_trial(facts, pack, "product", waive_range)], "named in the record")
    # ... or its category's entries
    if facts.category is None:
        return PcrCheck(PcrOutcome.NOT_APPLICABLE, note="the record names no pilot category")
    family = packs.of_category(facts.category)
    if not family:
        return PcrCheck(
            PcrOutcome.NOT_APPLICABLE,
            note=f"no rule pack for category {facts.category} (not in the catalogue)",
        )
    dim = _dimension(facts.unit)
    products = [p for p in family if dim is not None and p.product_rule(dim) is not None]
    if products:
        return _result(
            (_trial(facts, p, "product", waive_range) for p in products),
            f"category {facts.category}",
        )
    chain = [p for p in family if dim is not None and p.supply_chain_rule(dim) is not None]
    if chain:
        return _result(
            (_trial(facts, p, "supply chain", waive_range) for p in chain),
            f"category {facts.category}, upstream record",
        )
    # a unit no entry of the category is declared in: every rule of the closest entry, so that
    # all its problems are named at once (the unit first)
    return _result(
        (_trial(facts, p, "product", waive_range) for p in family),
        f"category {facts.category}, in no unit its entries are declared in",
    )


def _result(trials: Iterable[_Trial], how: str) -> PcrCheck:
    """The first trial that passes every rule and its range (the rest are not evaluated), else
    the closest one: fewest violations, then in range, then the first of equals."""
    tried: list[_Trial] = []
    for trial in trials:
        tried.append(trial)
        if not trial.findings and trial.range_finding is None:
            return PcrCheck(PcrOutcome.PASSED, trial.pack, trial.role, (), trial.figure,
                            trial.unit, f"{how}; passed {trial.pack.ref}")  # fmt: skip
    best = min(tried, key=lambda t: t.rank)
    if best.findings:
        outcome, findings = PcrOutcome.VIOLATED, best.findings
    else:
        assert best.range_finding is not None
        outcome, findings = PcrOutcome.OUT_OF_RANGE, (best.range_finding,)
    return PcrCheck(outcome, best.pack, best.role, findings, best.figure, best.unit,
                    f"{how}; checked against {', '.join(t.pack.ref for t in tried)}")  # fmt: skip


def check_footprint(
    pact: Mapping[str, Any], packs: PackSet | None = None, *, waive_range: bool = False
) -> PcrCheck:
    """Check a footprint's PACT v3 JSON (as published, already valid PACT) against its pack;
    *waive_range* for a record a compliance officer released (every other rule still holds)."""
    return _decide(_footprint_facts(pact), packs or default_packs(), waive_range)


def check_footprint_model(
    footprint: ProductFootprint, packs: PackSet | None = None, *, waive_range: bool = False
) -> PcrCheck:
    """:func:`check_footprint` on a parsed footprint (publish time), without dumping it to
    PACT JSON: the same findings at the same paths (a test checks both agree)."""
    return _decide(_model_facts(footprint), packs or default_packs(), waive_range)


def check_bom(bom: Mapping[str, Any], packs: PackSet | None = None) -> PcrCheck:
    """Check a BOM's JSON (its declared unit) against its category's packs."""
    return _decide(_bom_facts(bom), packs or default_packs(), False)


def verify_footprint(pact: Mapping[str, Any], packs: PackSet | None = None) -> PcrCheck:
    """:func:`check_footprint`, raising :class:`PcrViolation` / :class:`PcrOutOfRange`."""
    result = check_footprint(pact, packs)
    error = result.error(str(pact.get("id", "footprint")))
    if error is not None:
        raise error
    return result
