"""The background database: factor tables checked whole before anything is published, and the
factors' versions read back from ``pcf.factors``.

A factor (:class:`contracts.EmissionFactor`) is identified by ``factorId`` and versioned by
``version``. ``pcf.factors`` is kept forever and keyed by factor id, so publishing a new version
appends a record under the same key: the streams use the one with the highest envelope
``sequence`` (decision 4), and every older one stays on the topic, readable. This module is the
operator's side of that:

* :func:`check_factor_table` -- a table (CSV or JSON) is checked *as a whole* before a single row
  is sent: every row valid (the model's rules: known unit, decimal numbers, a split adding up,
  a real date), every row citing its published source (``reference``), no (factorId, version)
  twice. One bad row and nothing is published (:attr:`FactorTable.ok`), with a reason per row
  naming the column.
* :func:`plan_import` -- against what ``pcf.factors`` already holds: a version published before
  with the same content is not sent again, and one published before with *other* content
  refuses the import (a published version is immutable; a corrected figure is a new version).
* :class:`FactorCatalogue` -- the versions of every factor in publication order, the current one
  (highest sequence) and the ones it superseded. Pure (:meth:`FactorCatalogue.of`) over signed
  records; :meth:`FactorCatalogue.read` reads them from the topic (I/O at the edge), checking
  each signature when given the operator's key.

Shipped with the package: :data:`SOURCED_FACTORS`, a set covering the pilots' main inputs with
each figure exactly as published and its source (``producers/data/factors-sourced.json``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pcf_exchange.contracts import (
    AvroSerde,
    EmissionFactor,
    LoadedRecord,
    SignedEmissionFactor,
    verify,
)
from pcf_exchange.contracts.errors import PcfError, Violation
from pcf_exchange.contracts.kafka_client import read_to_end
from pcf_exchange.producers.delivery import KAFKA_LOGGER

__all__ = [
    "SOURCED_FACTORS",
    "FactorCatalogue",
    "FactorTable",
    "FactorVersion",
    "ImportPlan",
    "RowProblem",
    "check_factor_table",
    "plan_import",
]

SOURCED_FACTORS: Final = Path(__file__).resolve().parent / "data" / "factors-sourced.json"
"""The shipped, sourced factor set (every entry has a ``reference``)."""


# --- a table, checked whole ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RowProblem:
    """Why one row of a factor table is refused."""

    index: int | None
    """Position of the row (0-based data row; ``None``: the file itself)."""
    line: int | None
    """1-based line in a CSV file."""
    factor_id: str | None
    violations: tuple[Violation, ...]

    @property
    def where(self) -> str:
        if self.line is not None:
            return f"line {self.line}"
        return "file" if self.index is None else f"[{self.index}]"


@dataclass(frozen=True, slots=True)
class FactorTable:
    """A factor table after :func:`check_factor_table`: publish it only if :attr:`ok`."""

    file: str
    factors: tuple[EmissionFactor, ...]
    """The valid rows, in file order."""
    problems: tuple[RowProblem, ...]
    unreadable: bool = False
    """The file could not be read at all (not UTF-8, not CSV/JSON, no header, ...)."""

    @property
    def ok(self) -> bool:
        return not self.problems and not self.unreadable and bool(self.factors)


def _raw_id(loaded: LoadedRecord[EmissionFactor]) -> str | None:
    return loaded.value.factor_id if loaded.value is not None else None


def check_factor_table(loaded: Sequence[LoadedRecord[EmissionFactor]], *, file: str) -> FactorTable:
    """Check a loaded table as a whole: each row's own rules, a ``reference`` on every row, and
    no (factorId, version) twice. Returns the valid factors and every row's problems."""
    problems: list[RowProblem] = []
    factors: list[EmissionFactor] = []
    first: dict[tuple[str, str], LoadedRecord[EmissionFactor]] = {}
    unreadable = False
    for row in loaded:
        if row.index is None:  # the file itself
            unreadable = True
            violations = row.error.violations if row.error else ()
            problems.append(RowProblem(None, None, None, tuple(violations)))
            continue
        if row.value is None:
            violations = row.error.violations if row.error else ()
            problems.append(RowProblem(row.index, row.line, None, tuple(violations)))
            continue
        factor = row.value
        found: list[Violation] = []
        if factor.reference is None:
            found.append(
                Violation(
                    "reference",
                    "source_required",
                    "is required: every imported factor names its published source "
                    "(referencePublisher, referenceTitle, referenceUrl, referencePublished)",
                )
            )
        key = (factor.factor_id, factor.version)
        earlier = first.setdefault(key, row)
        if earlier is not row:
            at = f"line {earlier.line}" if earlier.line is not None else f"[{earlier.index}]"
            found.append(
                Violation(
                    "factorId",
                    "duplicate",
                    f"repeats factorId {factor.factor_id!r} version {factor.version!r} of {at}; "
                    "a new version of a factor needs a new version",
                )
            )
        if found:
            problems.append(RowProblem(row.index, row.line, factor.factor_id, tuple(found)))
        else:
            factors.append(factor)
    if not loaded:
        problems.append(
            RowProblem(None, None, None, (Violation("", "empty", "has no factor rows"),))
        )
    return FactorTable(file, tuple(factors), tuple(problems), unreadable)


# --- an import against what is published -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImportPlan:
    """What importing a checked table does, given the versions already published."""

    to_publish: tuple[EmissionFactor, ...]
    """New versions, in table order (so a table listing older versions first publishes the
    newest last, and it becomes current)."""
    already: tuple[EmissionFactor, ...]
    """Versions published before with the same content: not sent again."""
    conflicts: tuple[RowProblem, ...]
    """Versions published before with *other* content: a version is immutable."""

    @property
    def ok(self) -> bool:
        return not self.conflicts


def plan_import(table: FactorTable, published: FactorCatalogue) -> ImportPlan:
    """Split a checked table into new versions, versions already published as they are, and
    conflicts (a published version with other content), which refuse the whole import."""
    to_publish: list[EmissionFactor] = []
    already: list[EmissionFactor] = []
    conflicts: list[RowProblem] = []
    for index, factor in enumerate(table.factors):
        same = [
            v for v in published.history(factor.factor_id) if v.factor.version == factor.version
        ]
        if not same:
            to_publish.append(factor)
        elif any(v.factor == factor for v in same):
            already.append(factor)
        else:
            violation = Violation(
                "version",
                "immutable_version",
                f"{factor.factor_id!r} version {factor.version!r} was published before with "
                f"other content (sequence {same[-1].sequence}); a published version does not "
                "change: give the corrected figure a new version",
            )
            conflicts.append(RowProblem(index, None, factor.factor_id, (violation,)))
    return ImportPlan(tuple(to_publish), tuple(already), tuple(conflicts))


# --- versions on the topic ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FactorVersion:
    """One published version of a factor."""

    factor: EmissionFactor
    sequence: int
    """The envelope's sequence: the streams keep the highest per factor id."""
    signed_by: str
    """``supplierId/keyId`` of the signer (the operator); empty for unsigned (file) input."""
    verified: bool
    """The signature was checked against the operator's key (``False``: not checked)."""


@dataclass(frozen=True, slots=True)
class FactorCatalogue:
    """Every factor's versions, oldest first (by sequence, then publication order)."""

    versions: Mapping[str, tuple[FactorVersion, ...]] = field(default_factory=dict)
    skipped: int = 0
    """Records that did not decode or whose signature did not verify."""

    @classmethod
    def of(cls, published: Iterable[FactorVersion], *, skipped: int = 0) -> FactorCatalogue:
        """A catalogue of *published* versions, in the order they were published."""
        by_id: dict[str, list[FactorVersion]] = {}
        for version in published:
            found = by_id.setdefault(version.factor.factor_id, [])
            if any(v.sequence == version.sequence and v.factor == version.factor for v in found):
                continue  # the same record sent again (a retry): one version
            found.append(version)
        ordered = {
            fid: tuple(sorted(found, key=lambda v: v.sequence))  # (stable: ties keep order)
            for fid, found in sorted(by_id.items())
        }
        return cls(ordered, skipped)

    @classmethod
    def of_factors(cls, factors: Iterable[EmissionFactor]) -> FactorCatalogue:
        """Unsigned factors (a file) as if published in file order."""
        return cls.of(
            FactorVersion(f, sequence=i, signed_by="", verified=False)
            for i, f in enumerate(factors)
        )

    def current(self, factor_id: str) -> FactorVersion | None:
        """The version in force: the highest sequence."""
        found = self.versions.get(factor_id)
        return found[-1] if found else None

    def history(self, factor_id: str) -> tuple[FactorVersion, ...]:
        return self.versions.get(factor_id, ())

    def __len__(self) -> int:
        return len(self.versions)

    @classmethod
    def read(
        cls,
        bootstrap: str,
        serde: AvroSerde,
        *,
        topic: str = "pcf.factors",
        operator_key: Ed25519PublicKey | None = None,
        timeout_s: float = 15.0,
    ) -> FactorCatalogue:
        """Read *topic* from the beginning to its current end. With *operator_key*, a record
        whose signature does not verify under it is skipped (counted in :attr:`skipped`)."""
        published: list[FactorVersion] = []
        skipped = 0
        for message in read_to_end(
            bootstrap, topic, timeout_s=timeout_s, group_prefix="pcfx-factors-", logger=KAFKA_LOGGER
        ):
            value = message.value()
            if value is None:
                continue
            try:
                record = serde.decode(value, SignedEmissionFactor)
                if operator_key is not None:
                    verify(operator_key, record)
            except PcfError:
                skipped += 1
                continue
            published.append(
                FactorVersion(
                    record.factor,
                    record.sequence,
                    f"{record.supplier_id}/{record.key_id}",
                    verified=operator_key is not None,
                )
            )
        return cls.of(published, skipped=skipped)
