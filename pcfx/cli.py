"""``pcfx``: the one command line of pcf-exchange.

Every command group lives in :mod:`pcfx.commands` (one module each) and is registered here;
the options they share are in :mod:`pcfx.options`, the console, exit codes and ``--json`` in
:mod:`pcfx.console`, where the cluster is in :mod:`pcfx.settings`. The packages below
(``producers``, ``streams``, ``gateway``, ``infra``, ``contracts``) never import ``pcfx``
(``tests/pcfx/test_layering.py``).
"""

from __future__ import annotations

from typing import Annotated

import typer

from pcf_exchange.pcfx.commands.api import app as api_app
from pcf_exchange.pcfx.commands.broker import app as broker_app
from pcf_exchange.pcfx.commands.certification import bodies_app, certificates_app, label_app
from pcf_exchange.pcfx.commands.console import console_app
from pcf_exchange.pcfx.commands.declarations import declarations_app
from pcf_exchange.pcfx.commands.demo import demo_app
from pcf_exchange.pcfx.commands.factors import factors_app
from pcf_exchange.pcfx.commands.gateway import approvals_app, audit_app, gateway_app, outbound_app
from pcf_exchange.pcfx.commands.pcr import pcr_app, review_app
from pcf_exchange.pcfx.commands.publish import keys_app, publish_app
from pcf_exchange.pcfx.commands.results import results
from pcf_exchange.pcfx.commands.schemas import schemas_app
from pcf_exchange.pcfx.commands.streams import rollup, streams_app
from pcf_exchange.pcfx.commands.tenants import tenants_app
from pcf_exchange.pcfx.console import handle_errors
from pcf_exchange.pcfx.kafka_options import KafkaConfig, apply

app = typer.Typer(
    name="pcfx",
    help="pcf-exchange: signed product carbon footprints (PACT v3) on Kafka, rolled up through "
    "every tier of the supply chain, released abroad only under policy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
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


# platform operator
app.add_typer(broker_app, name="broker")
app.add_typer(tenants_app, name="tenants")
app.add_typer(factors_app, name="factors")
app.add_typer(schemas_app, name="schemas")
# suppliers and manufacturers
app.add_typer(keys_app, name="keys")
app.add_typer(publish_app, name="publish")
app.add_typer(pcr_app, name="pcr")
app.add_typer(review_app, name="review")
app.command("rollup")(rollup)
app.command("results")(results)
app.add_typer(streams_app, name="streams")
# compliance and the border
app.add_typer(gateway_app, name="gateway")
app.add_typer(approvals_app, name="approvals")
app.add_typer(audit_app, name="audit")
app.add_typer(outbound_app, name="outbound")
app.add_typer(api_app, name="api")
app.add_typer(declarations_app, name="declarations")
app.add_typer(console_app, name="console")
# certification bodies, certificates and carbon labels
app.add_typer(bodies_app, name="bodies")
app.add_typer(certificates_app, name="certificates")
app.add_typer(label_app, name="label")
# everything at once
app.add_typer(demo_app, name="demo")


def main() -> None:
    app()
