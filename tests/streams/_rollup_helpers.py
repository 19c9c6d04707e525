"""Factories for roll-up tests: short constructors with sensible defaults (Decimal from str)."""

from __future__ import annotations

from decimal import Decimal

from pcf_exchange.streams.rollup import (
    Bom,
    BomLine,
    ComponentFootprint,
    Factor,
    OwnProcess,
)

E = "pcfExcludingBiogenicUptake"
I = "pcfIncludingBiogenicUptake"  # noqa: E741
F = "fossilGhgEmissions"


def D(value: str | int) -> Decimal:
    return Decimal(str(value))


def figs(e: str | int, i: str | int | None = None, f: str | int | None = None, **extra: str):
    out = {E: D(e), I: D(e if i is None else i), F: D(e if f is None else f)}
    out.update({k: D(v) for k, v in extra.items()})
    return out


def fp(
    product_id: str,
    e: str | int = "1",
    *,
    seq: int = 1,
    unit: str = "piece",
    amount: str | int = "1",
    mass: str | None = None,
    share: str | None = None,
    std: str | None = None,
    dqr: dict[str, str] | None = None,
    stages: dict[str, str] | None = None,
    fid: str | None = None,
    **extra: str,
) -> ComponentFootprint:
    return ComponentFootprint(
        product_id=product_id,
        footprint_id=fid or f"fp-{product_id}-{seq}",
        sequence=seq,
        declared_unit=unit,
        declared_unit_amount=D(amount),
        figures=figs(e, **extra),
        product_mass_per_declared_unit=None if mass is None else D(mass),
        primary_data_share=None if share is None else D(share),
        dqr={k: D(v) for k, v in (dqr or {}).items()},
        std_dev=None if std is None else D(std),
        stages={k: D(v) for k, v in (stages or {}).items()},
    )


def factor(
    factor_id: str,
    e: str | int = "1",
    *,
    seq: int = 1,
    unit: str = "kilogram",
    std: str | None = None,
    mass: str | None = None,
    source: str = "",
    **extra: str,
) -> Factor:
    return Factor(
        factor_id=factor_id,
        sequence=seq,
        unit=unit,
        figures=figs(e, **extra),
        std_dev=None if std is None else D(std),
        mass_per_unit=None if mass is None else D(mass),
        source=source,
    )


def line(component: str, qty: str | int = "1", unit: str = "piece", fallback: str | None = None):
    return BomLine(component, D(qty), unit, fallback)


def bom(
    product_id: str,
    *lines: BomLine,
    rev: int = 1,
    direct: str | int = "0",
    kwh: str | int = "0",
    grid: str | None = None,
    unit: str = "piece",
    amount: str | int = "1",
    mass: str | None = None,
) -> Bom:
    return Bom(
        product_id=product_id,
        revision=rev,
        components=tuple(lines),
        own=OwnProcess(D(direct), D(kwh), grid),
        declared_unit=unit,
        declared_unit_amount=D(amount),
        product_mass_per_declared_unit=None if mass is None else D(mass),
    )
