"""The compliance console: a FastAPI app of server-rendered pages (Jinja2), for officers only.

Pages (every one behind the officer login of :mod:`gateway.console._auth`):

- ``/``: the chain-verification status of every log with its last signed checkpoint, totals,
  two timeline charts (by decision, by destination; server-side SVG, :mod:`._svg`), the filter
  form (recipient, jurisdiction, product, decision, period; GET parameters) and the transfers
  table, short ids linking to
- ``/transfers/{log}/{seq}``: one transfer, field by field (sent, transformed, withheld; rule,
  legal basis; lineage paths grouped), the legal mechanisms, the approval (approver, reason) and
  the transfer's entries in the chain;
- ``/approvals``: the queue of held transfers with approve / deny forms. The decision is signed
  on the server with the logged-in officer's key through the same function as ``pcfx approvals
  approve`` (:func:`gateway.runtime._officer.officer_decision`) and goes to the approvals queue;
  the gateway judges it (registration, signature) before it releases anything and audits both.

Everything shown comes from the audit log as verified (:mod:`._views`): rows that fail
verification are marked and never counted. The console reads and never changes the audit log
(decision 8) and shows it only to officers on this side of the border; nothing here discloses
data to a recipient (decision 13 concerns the PACT API and releases).

Responses carry a strict Content-Security-Policy (no script at all, styles from this origin),
``no-store``, ``nosniff`` and ``frame-ancestors 'none'``. POST bodies are URL-encoded forms of
at most 16 KiB, parsed with the standard library.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.concurrency import run_in_threadpool

from pcf_exchange.contracts.errors import PcfError, ValidationFailed
from pcf_exchange.gateway._approvals_log import RowStatus
from pcf_exchange.gateway._sealing import KeyRing
from pcf_exchange.gateway.console._auth import (
    Officer,
    Session,
    SessionStore,
    Throttle,
    UsersFile,
    check_password,
)
from pcf_exchange.gateway.console._sources import ApprovalQueue, AuditSnapshot, AuditSource
from pcf_exchange.gateway.console._svg import render_chart
from pcf_exchange.gateway.console._views import (
    COUNTED,
    Filters,
    Status,
    TransferView,
    build_transfers,
    chain_statuses,
    field_groups,
    filter_transfers,
    timeline,
    totals,
    verify_logs,
)
from pcf_exchange.gateway.runtime._officer import OfficerKey, officer_decision

__all__ = ["ConsoleSettings", "create_console_app", "load_officer_key"]

SESSION_COOKIE = "pcfx_console"
LOGIN_COOKIE = "pcfx_console_login"
_MAX_FORM = 16 * 1024
_MAX_ROWS = 500
_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self';"
    " frame-ancestors 'none'; base-uri 'none'"
)


def load_officer_key(officer: Officer) -> OfficerKey:
    """The officer's key file, loaded as ``pcfx approvals approve --key`` loads it; its
    declared owner must be the officer's name."""
    from pcf_exchange.contracts.errors import PassphraseError
    from pcf_exchange.producers.keys import load_signer, read_passphrase

    phrase = read_passphrase(officer.passphrase_file)
    if officer.passphrase_file is None and officer.passphrase_env:
        value = os.environ.get(officer.passphrase_env)
        if value is None:
            raise PassphraseError(
                f"officer {officer.name}'s key passphrase is to come from"
                f" ${officer.passphrase_env}, which is not set in the console's environment",
                hint=f"export {officer.passphrase_env}=... before 'pcfx console serve'.",
            )
        phrase = value.encode("utf-8")
    return load_signer(officer.key, phrase, owner=officer.name)


@dataclass(frozen=True)
class ConsoleSettings:
    audit: AuditSource
    keys: KeyRing
    """The gateway keys whose checkpoints and seals are trusted."""
    users: UsersFile
    approvals: ApprovalQueue | None = None
    """``None``: the approvals page says the queue is not connected."""
    load_key: Callable[[Officer], OfficerKey] = load_officer_key
    authorize: Callable[[OfficerKey], str | None] | None = None
    """Checks at login that the key is registered with role officer on ``pcf.keys``
    (``None`` when fine, else why not); ``None`` leaves that check to the gateway alone."""
    rule_basis: Mapping[str, str] | None = None
    """Rule id -> its legal basis (from the policy file), for the field table."""
    throttle: Throttle | None = None
    sessions: SessionStore | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def create_console_app(settings: ConsoleSettings) -> FastAPI:
    """The console app (serve it with :func:`gateway.api._server.serve`: TLS only)."""
    env = Environment(
        loader=PackageLoader("pcf_exchange.gateway.console", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["render_chart"] = render_chart
    sessions = settings.sessions or SessionStore()
    throttle = settings.throttle or Throttle()
    css = (
        resources.files("pcf_exchange.gateway.console").joinpath("static/console.css").read_bytes()
    )
    app = FastAPI(
        title="pcf-exchange compliance console",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.middleware("http")
    async def _headers(request: Request, call_next: Callable[[Request], Any]) -> Response:
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        return response

    def page(name: str, code: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(**context), status_code=code)

    def session_of(request: Request) -> Session | None:
        return sessions.get(request.cookies.get(SESSION_COOKIE))

    def to_login(request: Request) -> RedirectResponse:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)

    async def form_of(request: Request) -> dict[str, str]:
        if request.headers.get("content-type", "").split(";")[0].strip() != (
            "application/x-www-form-urlencoded"
        ):
            raise _Refused(415, "forms must be sent as application/x-www-form-urlencoded")
        body = await request.body()
        if len(body) > _MAX_FORM:
            raise _Refused(413, f"form too large: at most {_MAX_FORM} bytes (got {len(body)})")
        parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v[0] for k, v in parsed.items()}

    def error_page(session: Session | None, status: int, message: str) -> HTMLResponse:
        return page("error.html", status, session=session, status=status, message=message)

    seen: list[tuple[AuditSnapshot, list[TransferView], dict[str, Any]]] = []

    def snapshot() -> tuple[AuditSnapshot, list[TransferView], dict[str, Any]]:
        """The logs, verified and folded; recomputed only when the source gives a new
        snapshot (a source returns the same object while its data has not changed)."""
        snap = settings.audit.load()
        if seen and seen[0][0] is snap:
            return seen[0]
        verifications = verify_logs(snap.entries, snap.checkpoints, settings.keys)
        rows = build_transfers(snap.entries, verifications)
        done = (
            snap,
            rows,
            {"chains": chain_statuses(verifications), "verifications": verifications},
        )
        seen[:] = [done]
        return done

    # ------------------------------------------------------------------------------------------
    # login

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request) -> Response:
        nonce = secrets.token_urlsafe(16)
        response = page(
            "login.html",
            session=None,
            csrf=sessions.login_token(nonce),
            next=_safe_next(request.query_params.get("next")),
            message=None,
        )
        _cookie(response, LOGIN_COOKIE, nonce, max_age=1800)
        return response

    @app.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        try:
            form = await form_of(request)
        except _Refused as exc:
            return error_page(None, exc.status, exc.message)
        nonce = request.cookies.get(LOGIN_COOKIE)
        if not sessions.check_login_token(nonce, form.get("csrf")):
            return error_page(
                None, 403, "the login form's CSRF token is missing or wrong: reload the page"
            )
        name = form.get("officer", "").strip()
        client = f"addr:{request.client.host if request.client else '?'}"
        next_url = _safe_next(form.get("next", "/"))

        def refuse(status: int, message: str) -> HTMLResponse:
            response = page(
                "login.html",
                status,
                session=None,
                csrf=form.get("csrf"),
                next=next_url,
                message=message,
            )
            return response

        locked = throttle.locked_for(f"name:{name}", client)
        if locked is not None:
            response = refuse(
                429,
                f"too many failed logins: locked for {int(locked) + 1} more seconds"
                " (the lock applies even to the right password)",
            )
            response.headers["Retry-After"] = str(int(locked) + 1)
            return response
        # scrypt, key files and Kafka block: off the event loop
        officer = await run_in_threadpool(
            check_password, settings.users, name, form.get("password", "")
        )
        if officer is None:
            throttle.failed(f"name:{name}", client)
            return refuse(401, "wrong officer name or password")
        try:
            key = await run_in_threadpool(settings.load_key, officer)
        except PcfError as exc:
            return refuse(403, f"your officer key cannot be used: {exc.message}")
        if key.owner != officer.name:
            return refuse(
                403, f"your key file belongs to {key.owner!r}, not to officer {officer.name!r}"
            )
        if settings.authorize is not None:
            problem = await run_in_threadpool(settings.authorize, key)
            if problem is not None:
                return refuse(403, f"your officer key is not authorized: {problem}")
        throttle.succeeded(f"name:{name}", client)
        done = RedirectResponse(next_url, status_code=303)
        _cookie(done, SESSION_COOKIE, sessions.open(officer.name, key))
        done.delete_cookie(LOGIN_COOKIE, path="/")
        return done

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        session = session_of(request)
        if session is None:
            return to_login(request)
        try:
            form = await form_of(request)
        except _Refused as exc:
            return error_page(session, exc.status, exc.message)
        if not _same(form.get("csrf"), session.csrf):
            return error_page(session, 403, "CSRF token missing or wrong: reload the page")
        sessions.close(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/static/console.css")
    def stylesheet() -> Response:
        return Response(css, media_type="text/css")

    # ------------------------------------------------------------------------------------------
    # dashboard, drill-down

    @app.get("/", response_class=HTMLResponse)
    def dashboard(request: Request) -> Response:
        session = session_of(request)
        if session is None:
            return to_login(request)
        query = {k: v for k, v in request.query_params.items()}
        try:
            filters = Filters.parse(query)
        except ValidationFailed as exc:
            return error_page(session, 400, exc.message)
        snap, rows, chains = snapshot()
        shown = filter_transfers(rows, filters)
        pending = _pending_count(settings.approvals, settings.clock())
        return page(
            "dashboard.html",
            session=session,
            snapshot=snap,
            chains=chains["chains"],
            filters=filters,
            query=query,
            totals=totals(shown),
            counted=COUNTED,
            statuses=list(Status),
            by_decision=timeline(shown, by="decision", since=filters.since, until=filters.until),
            by_destination=timeline(
                shown, by="destination", since=filters.since, until=filters.until
            ),
            rows=shown[-_MAX_ROWS:][::-1],
            total_rows=len(shown),
            recipients=sorted({r.entry.recipient_id for r in rows if r.entry.recipient_id}),
            jurisdictions=sorted({r.entry.jurisdiction for r in rows if r.entry.jurisdiction}),
            pending=pending,
        )

    @app.get("/transfers/{log_id}/{seq}", response_class=HTMLResponse)
    def transfer(request: Request, log_id: str, seq: int) -> Response:
        session = session_of(request)
        if session is None:
            return to_login(request)
        _, rows, chains = snapshot()
        row = next((r for r in rows if r.log_id == log_id and r.entry.seq == seq), None)
        if row is None:
            return error_page(
                session,
                404,
                f"no transfer opens at {log_id}:{seq}: expected the LOG:SEQ of a transfer,"
                " transfer_blocked or transfer_held entry (the dashboard links to each)",
            )
        verification = chains["verifications"].get(log_id)
        described = row.sent_entry or row.release or row.entry
        return page(
            "transfer.html",
            session=session,
            row=row,
            groups=field_groups(
                described, settings.rule_basis, approved=row.status is Status.RELEASED
            ),
            described=described,
            verification=verification,
        )

    # ------------------------------------------------------------------------------------------
    # approvals

    def approvals_page(
        session: Session, status: int = 200, message: str | None = None, ok: str | None = None
    ) -> HTMLResponse:
        now = settings.clock()
        rows: list[Any] = []
        problem = None
        if settings.approvals is None:
            problem = (
                "the approvals queue is not connected: start the console with a broker"
                " (pcfx console serve --bootstrap ...)"
            )
        else:
            try:
                book = settings.approvals.book()
            except PcfError as exc:
                problem = f"cannot read the approvals queue: {exc.message}"
            else:
                rows = sorted(
                    book.rows.values(),
                    key=lambda r: (r.status(now) is not RowStatus.PENDING, r.approval.requested_at),
                )
        return page(
            "approvals.html",
            status,
            session=session,
            rows=rows,
            now=now,
            pending_status=RowStatus.PENDING,
            problem=problem,
            message=message,
            ok=ok,
        )

    @app.get("/approvals", response_class=HTMLResponse)
    def approvals(request: Request, done: str | None = None) -> Response:
        session = session_of(request)
        if session is None:
            return to_login(request)
        return approvals_page(session, ok=done)

    @app.post("/approvals/{approval_id}", response_class=HTMLResponse)
    async def decide(request: Request, approval_id: str) -> Response:
        session = session_of(request)
        if session is None:
            return error_page(None, 401, "log in first: your session is missing or expired")
        try:
            form = await form_of(request)
        except _Refused as exc:
            return error_page(session, exc.status, exc.message)
        if not _same(form.get("csrf"), session.csrf):
            return error_page(session, 403, "CSRF token missing or wrong: reload the page")
        verdict = form.get("verdict")
        if verdict not in ("approve", "deny"):
            return await run_in_threadpool(
                approvals_page,
                session,
                400,
                f"'verdict' must be 'approve' or 'deny' (got {verdict!r})",
            )
        if settings.approvals is None:
            return await run_in_threadpool(approvals_page, session, 503)
        try:
            queue = settings.approvals
            row = (await run_in_threadpool(queue.book)).rows.get(approval_id)
            if row is None:
                return await run_in_threadpool(
                    approvals_page,
                    session,
                    404,
                    f"no approval {approval_id} on {settings.approvals.topic}",
                )
            conditions = [c.strip() for c in form.get("conditions", "").splitlines() if c.strip()]
            datum = officer_decision(
                row,
                approved=verdict == "approve",
                officer=session.key,
                reason=form.get("reason", "").strip(),
                now=settings.clock(),
                mechanism_ref=form.get("mechanism_ref", "").strip() or None,
                conditions=conditions,
            )
            await run_in_threadpool(queue.submit, approval_id, datum)
        except PcfError as exc:
            return await run_in_threadpool(approvals_page, session, 409, exc.message)
        done = f"{approval_id} {'approved' if verdict == 'approve' else 'denied'}"
        return RedirectResponse(f"/approvals?{urlencode({'done': done})}", status_code=303)

    return app


def _same(given: str | None, expected: str) -> bool:
    return given is not None and secrets.compare_digest(given, expected)


def _safe_next(target: str | None) -> str:
    """Only a local path (``/...``, not ``//host``): a login never redirects off the console."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _cookie(response: Response, name: str, value: str, *, max_age: int | None = None) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )


def _pending_count(queue: ApprovalQueue | None, now: datetime) -> int | None:
    if queue is None:
        return None
    try:
        book = queue.book()
    except PcfError:
        return None
    return sum(1 for r in book.rows.values() if r.status(now) is RowStatus.PENDING)
