"""``GET /labels/verify?payload=PCFX1.…``: verify a carbon label online (public, no token).

A person who scanned a label's QR code (or the console's verification page, a later issue)
asks whether it holds. The answer is :func:`contracts.labels.check_label`'s verdict as JSON
(``valid``, ``reasons``, every numbered check, the certificate's status), against the registry
the *registry* callable returns: the certification topics folded live, or a verified snapshot.

It discloses nothing a label holder does not already have: the label's own fields and whether
its body, certificate and footprint still stand. No footprint leaves through it, so it needs no
token and writes no audit entry (decision 13 covers footprints). A malformed label is a verdict
(``valid: false``, reason ``malformed``), not an error; only a missing or oversized ``payload``
parameter is a 400.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Final

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from contracts.certification import CertRegistry
from contracts.labels import check_label

__all__ = ["MAX_PAYLOAD", "label_router"]

MAX_PAYLOAD: Final = 2_000
"""Characters: a label is ~330; a QR code holds at most ~2 900 bytes."""


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
