"""Exact arithmetic for the roll-up: one explicit :class:`decimal.Context` and input checks.

Every figure is a :class:`decimal.Decimal`, never a binary float (ARCHITECTURE decision 3). All
roll-up arithmetic runs inside :func:`rollup_context`, a copy of :data:`ROLLUP_CONTEXT` with 50
significant digits. Additions and multiplications of the decimal figures suppliers send are exact
at that precision; the only operations that can round are divisions (a declared unit amount of 3,
a conversion from megajoule into kilowatt hour, a mass per declared unit). Because the core always
performs the same operations in the same order for the same inputs (lines in BOM order, metrics
in sorted order), a result has the same digits whatever order its inputs arrived in, even when a
division rounds. Whether anything rounded is recorded on each result (``RollupResult.exact``).

Sums are different: they run in :func:`exact_context` (:data:`EXACT_CONTEXT`, the "unlimited
precision" recipe of the :mod:`decimal` docs: ``MAX_PREC`` digits, ``Inexact`` trapped), where an
addition or subtraction is always exact. That is what lets a product keep *running* sums and apply
a new input by the difference it makes (subtract the line's old part, add its new one) and still
hold exactly the digits a from-scratch sum gives: the value is exact either way, and its exponent
is put back to the from-scratch one (:func:`canonical_sum`). ``Inexact`` cannot happen there; were
it to, the trap raises: a loud bug, never a rounded figure.

>>> with rollup_context():
...     Decimal(1) / Decimal(3)
Decimal('0.33333333333333333333333333333333333333333333333333')
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import (
    MAX_EMAX,
    MAX_PREC,
    MIN_EMIN,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)

from pcf_exchange.contracts.errors import RollupError

__all__ = [
    "EXACT_CONTEXT",
    "PRECISION",
    "ROLLUP_CONTEXT",
    "ZERO",
    "canonical_sum",
    "check_decimal",
    "check_mapping",
    "exact_context",
    "rollup_context",
]

PRECISION = 50
"""Significant digits of every roll-up operation."""

ROLLUP_CONTEXT = Context(
    prec=PRECISION,
    rounding=ROUND_HALF_EVEN,
    Emin=-999_999,
    Emax=999_999,
    capitals=1,
    clamp=0,
    flags=[],
    traps=[InvalidOperation, DivisionByZero, Overflow],
)
"""The context all roll-up arithmetic runs in (copied per use, so flags never leak)."""

ZERO = Decimal(0)

EXACT_CONTEXT = Context(
    prec=MAX_PREC,
    rounding=ROUND_HALF_EVEN,
    Emin=MIN_EMIN,
    Emax=MAX_EMAX,
    capitals=1,
    clamp=0,
    flags=[],
    traps=[Inexact, InvalidOperation, DivisionByZero, Overflow],
)
"""The context of every sum: additions and subtractions are exact, ``Inexact`` is trapped."""

_UNIT_AT: dict[int, Decimal] = {}


def canonical_sum(total: Decimal, exponent: int) -> Decimal:
    """*total* written with *exponent*: the digits ``ZERO + part + part ...`` gives from scratch.

    An exact sum of decimals has the smallest exponent of its operands (``ZERO``'s 0 included).
    A running sum that had a part with a smaller exponent subtracted again still carries that
    exponent (``1.50 - 1.50 = 0.00``); written with the exponent of the parts it holds *now*
    (a multiple of ``10**exponent``, so exact) it is digit for digit the from-scratch sum.
    """
    if total.as_tuple().exponent == exponent:
        return total
    unit = _UNIT_AT.get(exponent)
    if unit is None:
        unit = _UNIT_AT[exponent] = Decimal((0, (1,), exponent))
    return total.quantize(unit, context=EXACT_CONTEXT)


@contextmanager
def rollup_context() -> Iterator[Context]:
    """Run the body with a fresh copy of :data:`ROLLUP_CONTEXT` (flags cleared)."""
    with localcontext(ROLLUP_CONTEXT) as ctx:
        ctx.clear_flags()
        yield ctx


@contextmanager
def exact_context() -> Iterator[Context]:
    """Run the body with a fresh copy of :data:`EXACT_CONTEXT` (for sums, see the docstring)."""
    with localcontext(EXACT_CONTEXT) as ctx:
        ctx.clear_flags()
        yield ctx


def check_decimal(
    value: object,
    path: str,
    *,
    minimum: Decimal | None = None,
    positive: bool = False,
    maximum: Decimal | None = None,
) -> Decimal:
    """Return *value* if it is a finite Decimal within the bounds, else raise :class:`RollupError`.

    Binary floats are refused outright: ``0.1`` is not a decimal and would break exact sums.
    """
    if isinstance(value, bool) or not isinstance(value, Decimal):
        kind = type(value).__name__
        raise RollupError(
            f"'{path}' must be a decimal.Decimal (got {value!r} that is a {kind})", path=path
        )
    if not value.is_finite():
        raise RollupError(f"'{path}' must be a finite decimal (got {value})", path=path)
    if positive and not value > 0:
        raise RollupError(f"'{path}' must be a decimal > 0 (got '{value}')", path=path)
    if minimum is not None and value < minimum:
        raise RollupError(f"'{path}' must be a decimal >= {minimum} (got '{value}')", path=path)
    if maximum is not None and value > maximum:
        raise RollupError(f"'{path}' must be a decimal <= {maximum} (got '{value}')", path=path)
    return value


def check_mapping(value: object, path: str) -> dict[str, Decimal]:
    """A sorted plain-dict copy of a ``str -> Decimal`` mapping (values checked for finiteness)."""
    if not isinstance(value, Mapping):
        raise RollupError(f"'{path}' must be a mapping (got {type(value).__name__})", path=path)
    out: dict[str, Decimal] = {}
    for key in sorted(value):
        if not isinstance(key, str) or not key:
            raise RollupError(f"'{path}' keys must be non-empty strings (got {key!r})", path=path)
        out[key] = check_decimal(value[key], f"{path}.{key}")
    return out
