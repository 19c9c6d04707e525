"""``GET /labels/verify?payload=PCFX1.…``: verify a carbon label online (public, no token).

A person who scanned a label's QR code, or a program, asks whether it holds. The answer is
:func:`contracts.labels.check_label`'s verdict, against the registry
the *registry* callable returns: the certification topics folded live, or an operator-signed
snapshot file (:class:`SnapshotFile`, what ``pcfx api serve --label-snapshot`` uses: the
operator re-exports it with ``pcfx bodies export`` and the API picks the new one up). One
address serves both readers (content negotiation, :func:`wants_html`): a browser, whose
``Accept`` puts ``text/html`` first, gets a page a person reads at a glance (the verdict in
green or red, what the label says, each check); anything else gets the verdict as JSON
(``valid``, ``reasons``, every numbered check, the certificate's status). The page is rendered
on the server with autoescaping (every field of a label is attacker-chosen text), carries no
script and loads nothing: its CSP allows only its own inline style.

It discloses nothing a label holder does not already have: the label's own fields and whether
its body, certificate and footprint still stand. No footprint leaves through it, so it needs no
token and writes no audit entry (decision 13 covers footprints). A malformed label is a verdict
(``valid: false``, reason ``malformed``), not an error; only a missing or oversized ``payload``
parameter is a 400.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from pcf_exchange.contracts.certification import CertRegistry, Snapshot
from pcf_exchange.contracts.errors import CertificationError
from pcf_exchange.contracts.labels import LabelVerdict, check_label

__all__ = ["MAX_PAYLOAD", "SnapshotFile", "label_router", "render_label_page", "wants_html"]

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
        request: Request,
        payload: Annotated[str, Query(min_length=1, max_length=MAX_PAYLOAD)],
    ) -> Response:
        current = await run_in_threadpool(registry)
        verdict = check_label(payload, current, at=datetime.fromtimestamp(clock(), UTC))
        headers = {"Cache-Control": "no-store", "Vary": "Accept"}
        if wants_html(request.headers.get("accept", "")):
            return HTMLResponse(render_label_page(verdict), headers={**headers, **_PAGE_HEADERS})
        return JSONResponse(verdict.to_json(), headers=headers)

    return router


_PAGE_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline';"
    " frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def wants_html(accept: str) -> bool:
    """Whether an ``Accept`` header asks for the page: ``text/html`` listed with a weight above
    zero and at least that of ``application/json`` (a browser's header; ``*/*``, what HTTP
    libraries send, and an empty header get JSON)."""
    weights: dict[str, float] = {}
    for part in accept.split(","):
        kind, _, params = part.strip().partition(";")
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[kind.strip().lower()] = weight
    html = weights.get("text/html", 0.0)
    return html > 0 and html >= weights.get("application/json", 0.0)


def render_label_page(verdict: LabelVerdict) -> str:
    """The verdict as a self-contained HTML page (``templates/label.html``, autoescaped)."""
    label = verdict.label
    page: str = _template().render(
        verdict=verdict,
        label=label,
        figure=format(label.figure, "f") if label else "",
        valid_from=_day(label.valid_from) if label else "",
        valid_until=_day(label.valid_until) if label else "",
        verified_at=verdict.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    return page


def _day(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


@functools.cache
def _template() -> Any:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("pcf_exchange.gateway.api", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    return env.get_template("label.html")
