"""The compliance console: officers log in, see what went out, drill down, approve or deny.

Server-rendered pages (FastAPI + Jinja2, no JavaScript) served over TLS only by the same uvicorn
helper as the PACT API (``pcfx console serve``). The view model (:mod:`._views`) is pure and is
shared with the offline ``pcfx audit report``; login, sessions, CSRF and lockout are in
:mod:`._auth`; the audit and approvals seams in :mod:`._sources`.

The app itself (``ConsoleSettings``, ``create_console_app``) is imported from
:mod:`gateway.console._app`, not from here: ``pcfx audit report`` imports this package for the
view model at every ``pcfx`` start-up, and FastAPI and Jinja2 stay out of that.
"""

from pcf_exchange.gateway.console._auth import (
    LoginRefused,
    Officer,
    SessionStore,
    Throttle,
    UsersFile,
    UsersFileError,
    hash_password,
    verify_password,
)
from pcf_exchange.gateway.console._sources import (
    ApprovalQueue,
    AuditSnapshot,
    AuditSource,
    FileAuditSource,
    InMemoryApprovalQueue,
    KafkaApprovalQueue,
    KafkaAuditSource,
)
from pcf_exchange.gateway.console._svg import render_chart
from pcf_exchange.gateway.console._views import (
    ChainStatus,
    Chart,
    FieldGroup,
    Filters,
    Series,
    Status,
    Totals,
    TransferView,
    build_transfers,
    chain_statuses,
    field_groups,
    filter_transfers,
    timeline,
    totals,
    verify_logs,
)

__all__ = [
    "ApprovalQueue",
    "AuditSnapshot",
    "AuditSource",
    "ChainStatus",
    "Chart",
    "FieldGroup",
    "FileAuditSource",
    "Filters",
    "InMemoryApprovalQueue",
    "KafkaApprovalQueue",
    "KafkaAuditSource",
    "LoginRefused",
    "Officer",
    "Series",
    "SessionStore",
    "Status",
    "Throttle",
    "Totals",
    "TransferView",
    "UsersFile",
    "UsersFileError",
    "build_transfers",
    "chain_statuses",
    "field_groups",
    "filter_transfers",
    "hash_password",
    "render_chart",
    "timeline",
    "totals",
    "verify_logs",
    "verify_password",
]
