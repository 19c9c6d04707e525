"""Sequence numbers: monotonic per key, and the same again for the same content.

The streams keep, per Kafka key, the record with the highest envelope ``sequence`` and treat one
at or below it as a no-op (ARCHITECTURE decision 4). So a producer must (a) give a newer record a
higher sequence and (b) give the *same* record the *same* sequence, so that re-running a file is a
duplicate rather than an update. How each record kind gets its sequence:

===============  =========================================================================
footprint        ``2 × created`` in microseconds since 1970, ``+ 1`` when ``Deprecated``.
                 Stateless and deterministic: PACT v3 footprints are immutable, a change is a
                 new footprint with a later ``created``, and deprecating the old one lands
                 between the two (``2c+1 < 2c'``). Works from any machine, without a ledger.
bill of          the file's ``revision`` when it gives one (> 0); otherwise assigned: the
materials        ledger's revision when the content is unchanged, else a new one,
                 ``max(now in µs, last + 1)``, written into ``revision`` before signing.
factor, key      as an unnumbered bill of materials (the ledger, else the clock in µs).
===============  =========================================================================

The **ledger** (``$XDG_STATE_HOME/pcf-exchange/ledger.json``, i.e.
``~/.local/state/pcf-exchange/ledger.json``) remembers, per signer and key, the content hash
and sequence last *acknowledged* by the broker. It makes re-runs exact duplicates for the kinds
whose sequence is assigned, and lets the producer refuse locally what the streams would only
put into the DLQ: a footprint id republished with changed content under the same sequence
(PACT v3 footprints are immutable), or a reactivated deprecated footprint. Without the ledger
(a lost file, another machine) nothing breaks: an unchanged record gets a newer sequence and
the streams apply it as an update that changes nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

from pcf_exchange.contracts import MAX_SEQUENCE, ProductFootprint
from pcf_exchange.contracts.errors import KeyStoreError

if TYPE_CHECKING:
    from pcf_exchange.producers._fastpath import PactFootprint

__all__ = [
    "Ledger",
    "LedgerEntry",
    "clock_sequence",
    "default_ledger_path",
    "footprint_sequence",
    "next_sequence",
]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_FORMAT_VERSION: Final = 1


def _micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def footprint_sequence(footprint: ProductFootprint | PactFootprint) -> int:
    """``2 × created (µs since 1970) + (1 if Deprecated)``: see the module docstring.

    Raises ``ValueError`` for a ``created`` before 1970 or after 2112 (outside 0..2^53-1).
    """
    sequence = 2 * _micros(footprint.created) + (footprint.status == "Deprecated")
    if not 0 <= sequence <= MAX_SEQUENCE:
        raise ValueError(
            f"'created' must be between 1970 and 2112 to derive a sequence "
            f"(got {footprint.created.isoformat()})"
        )
    return sequence


def clock_sequence() -> int:
    """Microseconds since 1970, now."""
    return time.time_ns() // 1_000


def next_sequence(last: int | None, *, floor: int = 0) -> int:
    """A sequence above *last* (and at least *floor*), from the clock when the clock is ahead."""
    candidate = max(clock_sequence(), floor)
    return candidate if last is None or candidate > last else last + 1


def default_ledger_path() -> Path:
    """``$PCFX_LEDGER`` if set, else ``$XDG_STATE_HOME/pcf-exchange/ledger.json``."""
    explicit = os.environ.get("PCFX_LEDGER", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    state = os.environ.get("XDG_STATE_HOME", "").strip() or str(Path.home() / ".local" / "state")
    return Path(state) / "pcf-exchange" / "ledger.json"


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """What the broker last acknowledged for one (signer, kind, key)."""

    hash: str
    """Footprints: the content hash (signed bytes); other kinds: the payload's hash."""
    sequence: int
    key_id: str = ""
    status: str | None = None
    """Footprints only: ``Active`` or ``Deprecated``."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"hash": self.hash, "sequence": self.sequence}
        if self.key_id:
            data["keyId"] = self.key_id
        if self.status is not None:
            data["status"] = self.status
        return data

    @classmethod
    def from_json(cls, data: Any) -> LedgerEntry | None:
        if not isinstance(data, dict):
            return None
        digest, sequence = data.get("hash"), data.get("sequence")
        if not isinstance(digest, str) or not isinstance(sequence, int):
            return None
        key_id = data.get("keyId")
        status = data.get("status")
        return cls(
            digest,
            sequence,
            key_id if isinstance(key_id, str) else "",
            status if isinstance(status, str) else None,
        )


class Ledger:
    """Per (signer, kind, key): the last acknowledged content hash and sequence.

    ``Ledger(path)`` reads *path* (a missing file is an empty ledger); ``Ledger(None)`` keeps
    everything in memory. :meth:`record` is thread-safe (delivery callbacks call it);
    :meth:`save` merges with whatever another process wrote meanwhile (under ``flock``, the
    higher sequence wins) and replaces the file atomically.

    File layout: ``{"version": 1, "signers": {signer: {kind: {key: entry}}}}``.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str, str], LedgerEntry] = {}
        self._dirty: dict[tuple[str, str, str], LedgerEntry] = {}
        if path is not None:
            self._entries = self._read(path)

    @classmethod
    def default(cls) -> Ledger:
        return cls(default_ledger_path())

    @classmethod
    def in_memory(cls) -> Ledger:
        return cls(None)

    @staticmethod
    def _read(path: Path) -> dict[tuple[str, str, str], LedgerEntry]:
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise KeyStoreError(f"cannot read the ledger '{path}': {exc.strerror}") from exc
        try:
            data = orjson.loads(text)  # (invalid UTF-8 is invalid JSON here too)
        except ValueError as exc:
            raise KeyStoreError(
                f"the ledger '{path}' is not valid JSON ({exc})",
                hint="Move it aside: without it, re-published records just get newer sequences.",
            ) from exc
        entries: dict[tuple[str, str, str], LedgerEntry] = {}
        signers = data.get("signers") if isinstance(data, dict) else None
        for signer, kinds in (signers or {}).items():
            for kind, keys in (kinds if isinstance(kinds, dict) else {}).items():
                for key, raw in (keys if isinstance(keys, dict) else {}).items():
                    entry = LedgerEntry.from_json(raw)
                    if entry is not None:
                        entries[(signer, kind, key)] = entry
        return entries

    def get(self, signer: str, kind: str, key: str) -> LedgerEntry | None:
        with self._lock:
            return self._entries.get((signer, kind, key))

    def record(self, signer: str, kind: str, key: str, entry: LedgerEntry) -> None:
        """Remember *entry* unless an entry with a higher sequence is already known."""
        slot = (signer, kind, key)
        with self._lock:
            known = self._entries.get(slot)
            if known is not None and known.sequence > entry.sequence:
                return
            self._entries[slot] = entry
            self._dirty[slot] = entry

    def __len__(self) -> int:
        return len(self._entries)

    @contextlib.contextmanager
    def _file_lock(self, path: Path) -> Iterator[None]:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def save(self) -> None:
        """Write the entries recorded since the last save (no-op in memory or when clean)."""
        if self.path is None:
            return
        with self._lock:
            dirty, self._dirty = self._dirty, {}
        if not dirty:
            return
        try:
            with self._file_lock(self.path):
                merged = self._read(self.path)
                for slot, entry in dirty.items():
                    known = merged.get(slot)
                    if known is None or known.sequence <= entry.sequence:
                        merged[slot] = entry
                tree: dict[str, dict[str, dict[str, Any]]] = {}
                for (signer, kind, key), entry in merged.items():
                    tree.setdefault(signer, {}).setdefault(kind, {})[key] = entry.to_json()
                # keys sorted at every level, compact UTF-8 (orjson: ~10x json.dumps; a ledger
                # holds two entries per footprint ever published, so this is per-record time)
                text = orjson.dumps(
                    {"version": _FORMAT_VERSION, "signers": tree}, option=orjson.OPT_SORT_KEYS
                )
                fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".ledger-")
                try:
                    with os.fdopen(fd, "wb") as handle:
                        handle.write(text)
                    os.replace(tmp, self.path)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                    raise
                with self._lock:
                    for slot, entry in merged.items():
                        known = self._entries.get(slot)
                        if known is None or known.sequence < entry.sequence:
                            self._entries[slot] = entry
        except OSError as exc:
            with self._lock:  # keep them for the next attempt
                for slot, entry in dirty.items():
                    self._dirty.setdefault(slot, entry)
            raise KeyStoreError(
                f"cannot write the ledger '{self.path}': {exc.strerror or exc}"
            ) from exc
