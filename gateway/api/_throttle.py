"""Failed token attempts, throttled before any secret is hashed.

Every token request costs a full scrypt (16 MiB, tens of milliseconds of one core): without a
limit, a flood of wrong secrets starves the normal calls and grows the server (the issue measured
a 38 ms → 734 ms median and 114 → 515 MB under 300 bad requests). :class:`FailureThrottle`
counts failed attempts per **key**: the API keys each attempt twice, by client id
(``client:<id>``, also for ids nobody registered) and by remote address (``addr:<ip>``). Up to
``allowed`` failures in a row are free; each further one locks the key for
``base_lockout * 2**(n - 1)`` seconds, at most ``max_lockout``. While a key is locked the API
answers 429 with ``Retry-After`` at once, **before** running scrypt. A success clears the
client's and the address's counts; a key with no failure for ``forget_after`` seconds is
forgotten.

Memory is bounded: at most ``max_keys`` keys are remembered (least recently failed dropped
first), whatever the number of addresses or ids an attacker makes up. On top of that, at most
``max_pending`` secrets are hashed at once (:meth:`FailureThrottle.admit`): a request beyond that
is answered 429 too, so a flood from many addresses cannot queue unbounded scrypt work either.
The clock is injectable; the table is safe to use from several threads.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

__all__ = ["FailureThrottle", "ThrottleSettings"]

_RETRY_WHEN_BUSY_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class ThrottleSettings:
    """How failed token attempts are throttled (see the module docstring)."""

    allowed: int = 5
    base_lockout: float = 1.0
    max_lockout: float = 300.0
    forget_after: float = 900.0
    max_keys: int = 10_000
    max_pending: int = 4

    def __post_init__(self) -> None:
        if self.allowed < 0 or self.max_keys < 1 or self.max_pending < 1:
            raise ValueError("allowed must be >= 0, max_keys and max_pending >= 1")
        if not 0 < self.base_lockout <= self.max_lockout:
            raise ValueError("0 < base_lockout <= max_lockout must hold")


@dataclass(slots=True)
class _Failures:
    count: int
    last: float
    locked_until: float


class FailureThrottle:
    """Failure counts per key with exponential lockouts, and a cap on concurrent hashing.

    >>> now = [0.0]
    >>> settings = ThrottleSettings(allowed=1, base_lockout=2)
    >>> throttle = FailureThrottle(settings, clock=lambda: now[0])
    >>> throttle.failed(["client:x", "addr:1.2.3.4"]); throttle.retry_after(["client:x"])
    >>> throttle.failed(["client:x", "addr:1.2.3.4"]); throttle.retry_after(["addr:1.2.3.4"])
    2.0
    >>> now[0] = 2.5; throttle.retry_after(["client:x"])
    """

    def __init__(
        self,
        settings: ThrottleSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or ThrottleSettings()
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: OrderedDict[str, _Failures] = OrderedDict()
        self._pending = 0

    def __len__(self) -> int:
        return len(self._keys)

    def retry_after(self, keys: Iterable[str]) -> float | None:
        """Seconds until the most locked of *keys* may try again, or ``None`` if none is."""
        now = self._clock()
        wait = 0.0
        with self._lock:
            for key in keys:
                found = self._keys.get(key)
                if found is not None and found.locked_until > now:
                    wait = max(wait, found.locked_until - now)
        return wait or None

    def failed(self, keys: Iterable[str]) -> None:
        """Count one failed attempt against each of *keys* (and lock those over the limit)."""
        s, now = self.settings, self._clock()
        with self._lock:
            for key in keys:
                found = self._keys.pop(key, None)
                if found is None or now - found.last > s.forget_after:
                    found = _Failures(0, now, 0.0)
                found.count += 1
                found.last = now
                over = found.count - s.allowed
                if over > 0:
                    lockout = min(s.base_lockout * 2 ** min(over - 1, 32), s.max_lockout)
                    found.locked_until = now + lockout
                self._keys[key] = found  # most recently failed last
            while len(self._keys) > s.max_keys:
                self._keys.popitem(last=False)

    def succeeded(self, keys: Iterable[str]) -> None:
        """Forget the failures of *keys* (a client that proved its secret)."""
        with self._lock:
            for key in keys:
                self._keys.pop(key, None)

    @contextmanager
    def admit(self) -> Iterator[float | None]:
        """Hold one of the ``max_pending`` hashing slots while the block runs; yields ``None``
        when admitted, else the seconds to tell the client to wait (nothing is hashed then)."""
        with self._lock:
            admitted = self._pending < self.settings.max_pending
            if admitted:
                self._pending += 1
        if not admitted:
            yield _RETRY_WHEN_BUSY_S
            return
        try:
            yield None
        finally:
            with self._lock:
                self._pending -= 1
