"""``pcfx``: the one command line of pcf-exchange.

Every command group lives in :mod:`pcfx.commands` (one module each) and is registered here,
in :data:`ENTRIES`, with its one-line help: a module is imported only when its command runs
(:class:`LazyGroup`), so ``pcfx --help`` and ``pcfx broker status`` import no FastAPI app, no
gateway and no roll-up engine (``tests/pcfx/test_lazy_cli.py``). The options they share are in
:mod:`pcfx.options`, the console, exit codes and ``--json`` in :mod:`pcfx.console`, where the
cluster is in :mod:`pcfx.settings`. The packages below (``producers``, ``streams``,
``gateway``, ``infra``, ``contracts``) never import ``pcfx`` (``tests/pcfx/test_layering.py``).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Annotated, Any

import typer
import typer.main
from typer import _click as click  # (typer 0.29 runs on its own copy of click: its types)
from typer.core import TyperCommand, TyperGroup
from typer.models import CommandInfo

from pcf_exchange.pcfx.console import handle_errors
from pcf_exchange.pcfx.kafka_options import KafkaConfig, apply


@dataclass(frozen=True, slots=True)
class _Entry:
    """One top-level command of ``pcfx``: where it lives and its one-line help for the listing
    of ``pcfx --help`` (the same text the command has: ``tests/pcfx/test_lazy_cli.py``)."""

    module: str
    """Its module, under :mod:`pcfx.commands`."""
    attr: str
    """The ``typer.Typer`` of a group, or the function of a single command."""
    help: str


# In the order ``pcfx --help`` lists them (single commands first, then groups as registered).
ENTRIES: dict[str, _Entry] = {
    "rollup": _Entry(
        "streams",
        "rollup",
        "Roll footprints up through BOMs from files (dry run / what-if); no Kafka needed.",
    ),
    "results": _Entry(
        "results",
        "results",
        "Live results from pcf.products: every product's latest figure, or one product's tree,\n"
        "hotspots and what changed since its previous version.",
    ),
    # platform operator
    "broker": _Entry(
        "broker",
        "app",
        "Run a real Apache Kafka broker (KRaft) from Maven Central jars, without Docker.",
    ),
    "tenants": _Entry(
        "tenants",
        "tenants_app",
        "Principals (SCRAM-SHA-512) and their ACLs on a secured broker (pcfx broker start"
        " --secure), by role: supplier, manufacturer, recipient, streams, gateway, api, operator,"
        " officer, certifier.",
    ),
    "factors": _Entry(
        "factors",
        "factors_app",
        "The background database: import sourced emission-factor tables, list factors, show "
        "one, and the history of its versions.",
    ),
    "schemas": _Entry(
        "schemas",
        "schemas_app",
        "The deployment's schema registry topic (<prefix>pcf._schemas): upgrade from the"
        " shared pcf._schemas.",
    ),
    # suppliers and manufacturers
    "keys": _Entry(
        "publish",
        "keys_app",
        "Ed25519 signing keys: create them, register suppliers' keys (operator), revoke them.",
    ),
    "publish": _Entry(
        "publish",
        "publish_app",
        "Validate, sign and publish footprints, bills of materials and emission factors.",
    ),
    "pcr": _Entry(
        "pcr",
        "pcr_app",
        "Product category rule packs (one per catalogue entry of the carbon-label pilots):"
        " declared unit, boundary, mandatory stages, data quality and plausible ranges.",
    ),
    "review": _Entry(
        "pcr",
        "review_app",
        "Records held for review (a figure far outside its category's plausible range):"
        " list them, and release or reject them with a compliance officer's signed decision.",
    ),
    "streams": _Entry(
        "streams",
        "streams_app",
        "The stream processors: continuous multi-tier roll-up on Kafka.",
    ),
    # compliance and the border
    "gateway": _Entry(
        "gateway",
        "gateway_app",
        "The outbound gateway: run the pipeline, check policies, manage keys.",
    ),
    "approvals": _Entry(
        "gateway_approvals",
        "approvals_app",
        "Held transfers waiting for a compliance officer.",
    ),
    "audit": _Entry(
        "gateway_audit",
        "audit_app",
        "The audit log: verify, checkpoint, show, prove, export, report.",
    ),
    "outbound": _Entry(
        "gateway_outbound",
        "outbound_app",
        "What recipients receive: verify and decrypt.",
    ),
    "api": _Entry(
        "api",
        "app",
        "The PACT v3 (WBCSD) HTTPS API: external customers pull the footprints released to them.",
    ),
    "declarations": _Entry(
        "declarations",
        "declarations_app",
        "Declarations the EU asks for (Battery Regulation Art. 7, CBAM, GB/T 24067 study"
        " report), built from a footprint and released only through the gateway.",
    ),
    "console": _Entry(
        "console",
        "console_app",
        "The compliance console: officers see what went out, drill down, approve or deny.",
    ),
    # certification bodies, certificates and carbon labels
    "bodies": _Entry(
        "certification",
        "bodies_app",
        "Certification bodies (operator): register, list, show, blacklist, unlist, export a"
        " signed registry snapshot for offline label checks.",
    ),
    "certificates": _Entry(
        "certification",
        "certificates_app",
        "Certificates a registered body signs for a footprint: issue, list, show, status,"
        " verify, revoke; watch for stale ones (operator).",
    ),
    "label": _Entry(
        "certification",
        "label_app",
        "Verifiable carbon labels: issue (text, QR code PNG/SVG, label image), verify offline"
        " or live.",
    ),
    # everything at once
    "demo": _Entry(
        "demo",
        "demo_app",
        "The whole exchange on an LFP battery supply chain (`pcfx demo stop` ends a demo left "
        "running).",
    ),
}


def load(name: str) -> click.Command:
    """The click command of the top-level command *name*, its module imported now."""
    entry = ENTRIES[name]
    target = getattr(
        importlib.import_module(f"pcf_exchange.pcfx.commands.{entry.module}"), entry.attr
    )
    command: click.Command
    if isinstance(target, typer.Typer):
        command = typer.main.get_group(target)
    else:
        command = typer.main.get_command_from_info(
            CommandInfo(name=name, callback=target),
            pretty_exceptions_short=app.pretty_exceptions_short,
            rich_markup_mode=app.rich_markup_mode,
        )
    command.name = name
    return command


class _Commands(MutableMapping[str, click.Command]):
    """The top-level commands by name, each module imported the first time its command is
    looked up (so ``pcfx broker status`` imports the broker's module only)."""

    def __init__(self) -> None:
        self._loaded: dict[str, click.Command] = {}
        self.listing = False
        """While ``pcfx --help`` is written: give each command's listing line, import nothing."""

    def __getitem__(self, name: str) -> click.Command:
        command = self._loaded.get(name)
        if command is not None:
            return command
        if name not in ENTRIES:
            raise KeyError(name)
        if self.listing:
            return TyperCommand(name, help=ENTRIES[name].help)
        command = self._loaded[name] = load(name)
        return command

    def __setitem__(self, name: str, command: click.Command) -> None:
        raise TypeError(f"pcfx's commands are listed in pcfx.cli.ENTRIES, not added ({name})")

    def __delitem__(self, name: str) -> None:
        raise TypeError(f"pcfx's commands are listed in pcfx.cli.ENTRIES ({name})")

    def __iter__(self) -> Iterator[str]:
        return iter(ENTRIES)

    def __len__(self) -> int:
        return len(ENTRIES)


class LazyGroup(TyperGroup):
    """The ``pcfx`` group: its commands come from :data:`ENTRIES`, each imported on use."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands = self.lazy = _Commands()

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self.lazy.listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self.lazy.listing = False


app = typer.Typer(
    name="pcfx",
    help="pcf-exchange: signed product carbon footprints (PACT v3) on Kafka, rolled up through "
    "every tier of the supply chain, released abroad only under policy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=LazyGroup,
)


def version() -> str:
    """The installed distribution's version (``pcf-exchange``), else the source tree's
    ``pyproject.toml`` version (a checkout run with ``PYTHONPATH``)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("pcf-exchange")
    except PackageNotFoundError:  # pragma: no cover - only outside an install
        import tomllib
        from pathlib import Path

        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"])


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"pcfx {version()}")
        raise typer.Exit()


@app.callback()
@handle_errors
def _connection(
    kafka_config: KafkaConfig = None,
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print pcfx's version and exit.",
        ),
    ] = False,
) -> None:
    """Options shared by every command: how Kafka clients connect."""
    if kafka_config is not None:
        apply(kafka_config)


def main() -> None:
    app()
