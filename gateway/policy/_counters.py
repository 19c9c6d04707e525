"""Yearly counters the law needs: distinct individuals whose personal information left China.

Pure state passed into :func:`evaluate`; after a commit, ``state.apply(decision.counter_delta)``.
Individuals are kept as keyed hashes (HMAC with the state's salt), never as the PI itself.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from pcf_exchange.contracts.canonical import canonical_json
from pcf_exchange.gateway.policy._model import CHINA_TIME, CounterMetric

__all__ = ["CounterDelta", "CounterState", "counting_year"]


def counting_year(now: datetime) -> int:
    """The calendar year the Provisions count in ("since 1 January"), in Beijing time."""
    return now.astimezone(CHINA_TIME).year


@dataclass(frozen=True, slots=True)
class CounterDelta:
    """What one transfer adds: the new individuals per metric, and the counts after it."""

    year: int
    added: Mapping[CounterMetric, frozenset[str]] = field(default_factory=dict)
    counts_after: Mapping[CounterMetric, int] = field(default_factory=dict)

    def added_count(self, metric: CounterMetric) -> int:
        return len(self.added.get(metric, ()))

    @property
    def empty(self) -> bool:
        return not any(self.added.values())


@dataclass(frozen=True, slots=True)
class CounterState:
    """Individuals counted so far in ``year``; a state from an earlier year counts as empty."""

    year: int
    salt: bytes = b""
    """Key for hashing individuals; keep it secret and stable for the year."""
    seen: Mapping[CounterMetric, frozenset[str]] = field(
        default_factory=lambda: MappingProxyType({})
    )

    @classmethod
    def empty(cls, year: int, salt: bytes = b"") -> CounterState:
        return cls(year=year, salt=salt)

    def for_year(self, year: int) -> CounterState:
        """This state if it is for *year*, else an empty one (counting restarts on 1 January)."""
        return self if year == self.year else CounterState(year=year, salt=self.salt)

    def count(self, metric: CounterMetric) -> int:
        return len(self.seen.get(metric, ()))

    def contains(self, metric: CounterMetric, key: str) -> bool:
        return key in self.seen.get(metric, ())

    def individual_key(self, values: Iterable[tuple[str, object]]) -> str:
        """Keyed hash of one individual's PI fields (relative path, value), order-independent."""
        body = canonical_json(sorted((path, str(value)) for path, value in values))
        return hmac.new(self.salt, body, hashlib.sha256).hexdigest()[:32]

    def apply(self, delta: CounterDelta) -> CounterState:
        """The state after a committed transfer (apply only once the transfer is committed).

        A transfer that adds no one in this state's year leaves it as it is (the same object).
        """
        if delta.year == self.year and not any(delta.added.values()):
            return self
        base = self.for_year(delta.year)
        seen = dict(base.seen)
        for metric, keys in delta.added.items():
            seen[metric] = seen.get(metric, frozenset()) | keys
        return CounterState(year=base.year, salt=base.salt, seen=MappingProxyType(seen))
