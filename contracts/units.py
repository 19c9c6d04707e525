"""Units of measure and exact conversion between them.

The PACT v3 declared units (``CarbonFootprint.declaredUnitOfMeasurement``) plus the extra units
our BOM and factor files accept: gram, ton (1000 kg) and megawatt hour. Conversion is exact
(:class:`decimal.Decimal` factors) and only within one dimension; crossing dimensions (e.g. a
piece into kilograms) is the roll-up's job and goes through ``productMassPerDeclaredUnit``.

>>> convert(Decimal("1"), "kilowatt hour", "megajoule")
Decimal('3.6')
>>> convert(Decimal("2500"), "gram", "kilogram")
Decimal('2.500')
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple

from pcf_exchange.contracts.errors import UnitError

__all__ = [
    "PACT_DECLARED_UNITS",
    "UNITS",
    "Dimension",
    "Unit",
    "convert",
    "dimension_of",
    "factor_to_base",
    "unit",
]


class Dimension(StrEnum):
    MASS = "mass"  # base: kilogram
    ENERGY = "energy"  # base: megajoule
    VOLUME = "volume"  # base: cubic meter
    AREA = "area"  # base: square meter
    COUNT = "count"  # base: piece
    TRANSPORT = "transport"  # base: ton kilometer
    TIME = "time"  # base: hour
    DATA = "data"  # base: megabit second


class Unit(NamedTuple):
    name: str
    dimension: Dimension
    to_base: Decimal
    """How many base units of the dimension one of this unit is."""


UNITS: dict[str, Unit] = {
    u.name: u
    for u in (
        Unit("kilogram", Dimension.MASS, Decimal(1)),
        Unit("gram", Dimension.MASS, Decimal("0.001")),
        Unit("ton", Dimension.MASS, Decimal(1000)),
        Unit("megajoule", Dimension.ENERGY, Decimal(1)),
        Unit("kilowatt hour", Dimension.ENERGY, Decimal("3.6")),
        Unit("megawatt hour", Dimension.ENERGY, Decimal(3600)),
        Unit("cubic meter", Dimension.VOLUME, Decimal(1)),
        Unit("liter", Dimension.VOLUME, Decimal("0.001")),
        Unit("square meter", Dimension.AREA, Decimal(1)),
        Unit("piece", Dimension.COUNT, Decimal(1)),
        Unit("ton kilometer", Dimension.TRANSPORT, Decimal(1)),
        Unit("hour", Dimension.TIME, Decimal(1)),
        Unit("megabit second", Dimension.DATA, Decimal(1)),
    )
}

PACT_DECLARED_UNITS: tuple[str, ...] = (
    "liter",
    "kilogram",
    "cubic meter",
    "kilowatt hour",
    "megajoule",
    "ton kilometer",
    "square meter",
    "piece",
    "hour",
    "megabit second",
)
"""The v3 ``declaredUnitOfMeasurement`` enum, in the order of the OpenAPI file."""


def unit(name: str) -> Unit:
    """Look a unit up by its name; raise :class:`UnitError` naming the known units otherwise."""
    try:
        return UNITS[name]
    except KeyError:
        known = ", ".join(sorted(UNITS))
        raise UnitError(f"unit must be one of {known} (got {name!r})") from None


def dimension_of(name: str) -> Dimension:
    return unit(name).dimension


def factor_to_base(name: str) -> Decimal:
    return unit(name).to_base


def convert(amount: Decimal, from_unit: str, to_unit: str) -> Decimal:
    """Convert *amount* of *from_unit* into *to_unit*, exactly, within one dimension."""
    src, dst = unit(from_unit), unit(to_unit)
    if src.dimension is not dst.dimension:
        raise UnitError(
            f"cannot convert {from_unit!r} ({src.dimension}) into {to_unit!r} ({dst.dimension}) "
            "without a mass per declared unit"
        )
    if src.to_base == dst.to_base:
        return amount
    return amount * src.to_base / dst.to_base
