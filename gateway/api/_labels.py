"""``GET /labels/verify?payload=PCFX1.…``: verify a carbon label online (public, no token).

A person who scanned a label's QR code (or the console's verification page, a later issue)
asks whether it holds. The answer is :func:`contracts.labels.check_label`'s verdict as JSON
(``valid``, ``reasons``, every numbered check, the certificate's status), against the registry
the *registry* callable returns: the certification topics folded live, or an operator-signed
snapshot file (:class:`SnapshotFile`, what ``pcfx api serve --label-snapshot`` uses: the
operator re-exports it with ``pcfx bodies export`` and the API picks the new one up).

It discloses nothing a label holder does not already have: the label's own fields and whether
its body, certificate and footprint still stand. No footprint leaves through it, so it needs no
token and writes no audit entry (decision 13 covers footprints). A malformed label is a verdict
(``valid: false``, reason ``malformed``), not an error; only a missing or oversized ``payload``
parameter is a 400.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from contracts.certification import CertRegistry, Snapshot
from contracts.errors import CertificationError
from contracts.labels import check_label

__all__ = ["MAX_PAYLOAD", "SnapshotFile", "label_router"]

MAX_PAYLOAD: Final = 2_000
"""Characters: a label is ~370; a QR code holds at most ~2 900 bytes."""


class SnapshotFile:
    """A registry snapshot file (``pcfx bodies export``), verified with the operator's keys and
    re-read when the file changes; a snapshot that does not verify is refused at start and,
    later, leaves the last good one in use."""

    def __init__(self, path: Path, operator_keys: Mapping[str, Ed25519PublicKey]) -> None:
        self.path = path
        self.operator_keys = operator_keys
        self._stamp: tuple[int, int] | None = None
        self._registry = self._load()

    def _load(self) -> CertRegistry:
        stat = self.path.stat()
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CertificationError(
                f"registry snapshot '{self.path}' is not readable JSON: {exc}",
                reason="bad_snapshot",
            ) from None
        _, registry = Snapshot.verify(data, self.operator_keys)
        self._stamp = (stat.st_mtime_ns, stat.st_size)
        return registry

    def __call__(self) -> CertRegistry:
        try:
            stat = self.path.stat()
            if (stat.st_mtime_ns, stat.st_size) != self._stamp:
                self._registry = self._load()
        except (OSError, CertificationError):
            pass  # keep serving the last snapshot that verified
        return self._registry


def label_router(
    registry: Callable[[], CertRegistry], *, clock: Callable[[], float] = time.time
) -> APIRouter:
    """The router serving ``GET /labels/verify``; *registry* is called per request (in a
    worker thread: reading Kafka blocks) and should cache what it reads."""
    router = APIRouter()

    @router.get("/labels/verify")
    async def verify_label(
        payload: Annotated[str, Query(min_length=1, max_length=MAX_PAYLOAD)],
    ) -> JSONResponse:
        current = await run_in_threadpool(registry)
        verdict = check_label(payload, current, at=datetime.fromtimestamp(clock(), UTC))
        return JSONResponse(verdict.to_json(), headers={"Cache-Control": "no-store"})

    return router
