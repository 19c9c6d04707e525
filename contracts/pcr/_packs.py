"""Product category rules (PCRs) as versioned rule packs: the typed model and its loader.

One YAML file per entry of the first-batch carbon-label certification catalogue (17 entries,
``regulation.md`` §0) lives in ``contracts/pcr/packs/`` and ships in the wheel as package data.
A pack says, for the product of its catalogue entry:

- where its rules come from (:class:`PackSource`: title, number, issuer, date, URL, and whether
  the rule text is public; where it is not, the pack keeps to what GB/T 24067-2024 and the cited
  unit conventions defend, and says so in ``source.note``);
- the declared units it accepts, each with its dimension (:mod:`contracts.units`) and a
  plausibility range per one such unit, with where the range comes from (:class:`Range`);
- the system boundary, the mandatory life-cycle stages (keys of the pcfx extension's
  ``stageBreakdown``), the figures a footprint must carry (PACT paths under ``pcf``), and the
  minimum data quality where a rule sets one (a maximum DQR, PACT's 1 = best, 5 = worst);
- ``supply_chain``: what the category's *upstream* records (materials and parts that name the
  category, e.g. lithium carbonate for a battery) may be declared in, with a range each. They are
  held to the unit and the range only: the PCR governs the product's study, not its suppliers'.

:func:`load_pack` validates the YAML itself, key by key, and fails with a
:class:`~contracts.errors.PcrPackError` naming the file, the key path, what was expected and what
came in; nothing half-loaded is returned. :func:`default_packs` loads the shipped packs once.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Final

import yaml

from pcf_exchange.contracts._footprint import PilotCategory
from pcf_exchange.contracts.errors import PcrPackError, UnitError
from pcf_exchange.contracts.units import Dimension, dimension_of

__all__ = [
    "Boundary",
    "DeclaredUnitRule",
    "PackSet",
    "PackSource",
    "Range",
    "RulePack",
    "default_packs",
    "load_pack",
    "load_packs",
]

STAGES: Final = (
    "raw_material_acquisition",
    "production",
    "distribution",
    "use",
    "end_of_life",
)
"""The life-cycle stage names a pack may make mandatory (GB/T 24067 / ISO 14067 stages, as the
pcfx extension's ``stageBreakdown`` keys spell them)."""
GRAVE_STAGES: Final = frozenset({"use", "end_of_life"})
"""Stages beyond the factory gate (and distribution): a cradle-to-gate study has none of them."""


class Boundary(StrEnum):
    CRADLE_TO_GATE = "cradle-to-gate"
    CRADLE_TO_GRAVE = "cradle-to-grave"


class RangeBasis(StrEnum):
    LITERATURE = "literature"
    """Anchored on published values for the category (the source names them)."""
    DERIVED = "derived"
    """Converted from a published range in another unit (the source says how)."""
    SCREENING = "screening"
    """No published range found: a wide engineering screen, to be replaced by the rule's own."""


@dataclass(frozen=True, slots=True)
class PackSource:
    title: str
    issuer: str
    date: str
    """ISO date or year-month of the document (as precise as it is known)."""
    public_text: bool
    """Whether the rule text itself is public; when not, ``note`` says what the pack rests on."""
    number: str | None = None
    url: str | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Range:
    """The plausible kgCO2e (``pcfExcludingBiogenicUptake``) per one unit of its rule."""

    low: Decimal
    high: Decimal
    basis: RangeBasis
    source: str

    def contains(self, value: Decimal) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True, slots=True)
class DeclaredUnitRule:
    unit: str
    dimension: Dimension
    applies_to: str
    range: Range


@dataclass(frozen=True, slots=True)
class RulePack:
    id: str
    version: str
    title: str
    catalogue_entry: str
    """The entry's name in the certification catalogue (Chinese, as published)."""
    pilot_category: PilotCategory
    source: PackSource
    boundary: Boundary
    declared_units: tuple[DeclaredUnitRule, ...]
    mandatory_stages: tuple[str, ...]
    required_figures: tuple[str, ...]
    """PACT paths under ``pcf`` that must be present (e.g. ``dqi``, ``primaryDataShare``)."""
    max_dqr: Decimal | None
    """The worst DQR allowed on each of the three PACT DQRs, where a rule sets one."""
    max_dqr_source: str | None
    supply_chain: tuple[DeclaredUnitRule, ...]
    file: str
    ref: str = field(init=False, compare=False)
    """``id@version``: how violations and held records name the pack."""
    _products: Mapping[Dimension, DeclaredUnitRule] = field(init=False, repr=False, compare=False)
    _chain: Mapping[Dimension, DeclaredUnitRule] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # looked up per record at ingestion: built once (the loader allows one rule per dimension)
        object.__setattr__(self, "ref", f"{self.id}@{self.version}")
        object.__setattr__(self, "_products", {r.dimension: r for r in self.declared_units})
        object.__setattr__(self, "_chain", {r.dimension: r for r in self.supply_chain})

    def product_rule(self, dimension: Dimension) -> DeclaredUnitRule | None:
        return self._products.get(dimension)

    def supply_chain_rule(self, dimension: Dimension) -> DeclaredUnitRule | None:
        return self._chain.get(dimension)


@dataclass(frozen=True)
class PackSet:
    """Packs by id, and by pilot category (a category may have several catalogue entries)."""

    packs: tuple[RulePack, ...]
    _by_id: Mapping[str, RulePack] = field(init=False, repr=False, compare=False)
    _by_category: Mapping[str, tuple[RulePack, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        seen: dict[str, RulePack] = {}
        by_category: dict[str, list[RulePack]] = {}
        for pack in self.packs:
            if pack.id in seen:
                raise PcrPackError(
                    pack.file, "id", f"a pack id used once (also in {seen[pack.id].file})", pack.id
                )
            seen[pack.id] = pack
            by_category.setdefault(pack.pilot_category.value, []).append(pack)
        object.__setattr__(self, "_by_id", seen)
        object.__setattr__(self, "_by_category", {c: tuple(p) for c, p in by_category.items()})

    def __iter__(self) -> Iterator[RulePack]:
        return iter(self.packs)

    def __len__(self) -> int:
        return len(self.packs)

    def get(self, pack_id: str) -> RulePack | None:
        return self._by_id.get(pack_id)

    def of_category(self, category: str) -> tuple[RulePack, ...]:
        return self._by_category.get(category, ())


# --- the loader: every key checked, with the file and key path in the error ---------------------


class _Reader:
    """Typed access to one YAML mapping, raising :class:`PcrPackError` with the key path."""

    def __init__(self, file: str, data: Any, path: str = "") -> None:
        if not isinstance(data, Mapping):
            raise PcrPackError(file, path or "(top level)", "a mapping", type(data).__name__)
        self.file, self.data, self.path = file, data, path
        self.used: set[str] = set()

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str, *, required: bool = True) -> Any:
        self.used.add(key)
        if key not in self.data or self.data[key] is None:
            if required:
                raise PcrPackError(self.file, self._key(key), "a value (the key is required)", None)
            return None
        return self.data[key]

    def text(self, key: str, *, required: bool = True) -> str | None:
        value = self.raw(key, required=required)
        if value is None:
            return None
        if isinstance(value, date):  # YAML reads 2024-08-23 as a date
            return value.isoformat()
        if not isinstance(value, str) or not value.strip():
            raise PcrPackError(self.file, self._key(key), "a non-empty string", value)
        return value.strip()

    def req_text(self, key: str) -> str:
        value = self.text(key)
        assert value is not None
        return value

    def boolean(self, key: str) -> bool:
        value = self.raw(key)
        if not isinstance(value, bool):
            raise PcrPackError(self.file, self._key(key), "true or false", value)
        return value

    def decimal(self, key: str, *, required: bool = True) -> Decimal | None:
        value = self.raw(key, required=required)
        if value is None:
            return None
        # decimals are written as strings in packs, as everywhere in the exchange: a YAML float
        # would already have been rounded to binary
        if not isinstance(value, str):
            raise PcrPackError(
                self.file, self._key(key), 'a decimal written as a string (e.g. "2.5")', value
            )
        try:
            number = Decimal(value)
        except InvalidOperation:
            raise PcrPackError(self.file, self._key(key), "a decimal", value) from None
        if not number.is_finite():
            raise PcrPackError(self.file, self._key(key), "a finite decimal", value)
        return number

    def choice(self, key: str, choices: Sequence[str]) -> str:
        value = self.req_text(key)
        if value not in choices:
            raise PcrPackError(self.file, self._key(key), f"one of {', '.join(choices)}", value)
        return value

    def items(self, key: str, *, required: bool = True) -> list[Any]:
        value = self.raw(key, required=required)
        if value is None:
            return []
        if not isinstance(value, list):
            raise PcrPackError(self.file, self._key(key), "a list", value)
        return value

    def names(self, key: str, choices: Sequence[str] | None = None) -> tuple[str, ...]:
        out: list[str] = []
        for i, item in enumerate(self.items(key)):
            where = f"{self._key(key)}[{i}]"
            if not isinstance(item, str) or not item.strip():
                raise PcrPackError(self.file, where, "a non-empty string", item)
            if choices is not None and item not in choices:
                raise PcrPackError(self.file, where, f"one of {', '.join(choices)}", item)
            if item in out:
                raise PcrPackError(self.file, where, "a name listed once", item)
            out.append(item)
        return tuple(out)

    def child(self, key: str) -> _Reader:
        return _Reader(self.file, self.raw(key), self._key(key))

    def done(self) -> None:
        """Refuse keys nobody reads: a misspelt key must not silently turn a rule off."""
        unknown = sorted(set(map(str, self.data)) - self.used)
        if unknown:
            raise PcrPackError(
                self.file,
                self._key(unknown[0]),
                f"only the keys {', '.join(sorted(self.used))}",
                unknown[0],
            )


def _unit_rule(file: str, data: Any, path: str) -> DeclaredUnitRule:
    r = _Reader(file, data, path)
    unit_name = r.req_text("unit")
    try:
        dimension = dimension_of(unit_name)
    except UnitError:
        raise PcrPackError(file, f"{path}.unit", "a unit of contracts.units", unit_name) from None
    declared = r.choice("dimension", [d.value for d in Dimension])
    if declared != dimension.value:
        raise PcrPackError(
            file,
            f"{path}.dimension",
            f"{dimension.value} (the dimension of {unit_name!r})",
            declared,
        )
    applies_to = r.req_text("applies_to")
    rr = r.child("range")
    low, high = rr.decimal("low"), rr.decimal("high")
    assert low is not None and high is not None
    if not Decimal(0) <= low < high:
        raise PcrPackError(file, f"{path}.range.high", f"a decimal above low ({low}) >= 0", high)
    basis = rr.choice("basis", [b.value for b in RangeBasis])
    plausible = Range(low, high, RangeBasis(basis), rr.req_text("source"))
    rr.done()
    r.done()
    return DeclaredUnitRule(unit_name, dimension, applies_to, plausible)


def _pack(file: str, data: Any) -> RulePack:
    r = _Reader(file, data)
    pack_id = r.req_text("id")
    version = r.req_text("version")
    s = r.child("source")
    source = PackSource(
        title=s.req_text("title"),
        issuer=s.req_text("issuer"),
        date=s.req_text("date"),
        public_text=s.boolean("public_text"),
        number=s.text("number", required=False),
        url=s.text("url", required=False),
        note=s.text("note", required=False),
    )
    s.done()
    if not source.public_text and source.note is None:
        raise PcrPackError(
            file, "source.note", "what the rules rest on when the rule text is not public", None
        )
    units = tuple(
        _unit_rule(file, item, f"declared_units[{i}]")
        for i, item in enumerate(r.items("declared_units"))
    )
    if not units:
        raise PcrPackError(file, "declared_units", "at least one declared unit", [])
    chain = tuple(
        _unit_rule(file, item, f"supply_chain[{i}]")
        for i, item in enumerate(r.items("supply_chain", required=False))
    )
    for key, rules in (("declared_units", units), ("supply_chain", chain)):
        dims = [u.dimension for u in rules]
        for i, d in enumerate(dims):
            if d in dims[:i]:
                raise PcrPackError(file, f"{key}[{i}].dimension", "one rule per dimension", d.value)
    boundary = Boundary(r.choice("boundary", [b.value for b in Boundary]))
    stages = r.names("mandatory_stages", STAGES)
    if boundary is Boundary.CRADLE_TO_GATE and GRAVE_STAGES & set(stages):
        raise PcrPackError(
            file, "mandatory_stages", "no stage beyond the gate in a cradle-to-gate pack", stages
        )
    figures = r.names("required_figures")
    quality = r.raw("minimum_data_quality", required=False)
    max_dqr: Decimal | None = None
    max_dqr_source: str | None = None
    if quality is not None:
        q = r.child("minimum_data_quality")
        max_dqr = q.decimal("max_dqr")
        assert max_dqr is not None
        if not Decimal(1) <= max_dqr <= Decimal(5):
            raise PcrPackError(
                file, "minimum_data_quality.max_dqr", "a DQR from 1 to 5", str(max_dqr)
            )
        max_dqr_source = q.req_text("source")
        q.done()
    category = r.choice("pilot_category", [c.value for c in PilotCategory])
    pack = RulePack(
        id=pack_id,
        version=version,
        title=r.req_text("title"),
        catalogue_entry=r.req_text("catalogue_entry"),
        pilot_category=PilotCategory(category),
        source=source,
        boundary=boundary,
        declared_units=units,
        mandatory_stages=stages,
        required_figures=figures,
        max_dqr=max_dqr,
        max_dqr_source=max_dqr_source,
        supply_chain=chain,
        file=file,
    )
    r.done()
    return pack


def load_pack(text: str, file: str) -> RulePack:
    """One pack from its YAML *text* (*file* names it in errors)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PcrPackError(
            file, "(document)", "well-formed YAML", str(exc).splitlines()[0]
        ) from exc
    return _pack(file, data)


def load_packs(directory: Path | None = None) -> PackSet:
    """Every ``*.yaml`` pack of *directory* (default: the shipped packs), sorted by file name."""
    if directory is not None:
        files = sorted(directory.glob("*.yaml"))
        return PackSet(tuple(load_pack(f.read_text(encoding="utf-8"), f.name) for f in files))
    root = resources.files("pcf_exchange.contracts.pcr").joinpath("packs")
    entries = sorted((e for e in root.iterdir() if e.name.endswith(".yaml")), key=lambda e: e.name)
    return PackSet(tuple(load_pack(e.read_text(encoding="utf-8"), e.name) for e in entries))


@functools.cache
def default_packs() -> PackSet:
    """The shipped packs, loaded once per process."""
    return load_packs()
