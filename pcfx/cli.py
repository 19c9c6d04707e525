"""``pcfx``: the one command line of pcf-exchange. Each component contributes a command group."""

from __future__ import annotations

import typer

from gateway.api.cli import app as api_app
from infra.kafka.cli import app as broker_app
from pcfx.demo import demo
from streams.cli import rollup, streams_app

app = typer.Typer(
    name="pcfx",
    help="pcf-exchange: signed product carbon footprints (PACT v3) on Kafka, rolled up through "
    "every tier of the supply chain, released abroad only under policy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(broker_app, name="broker")
app.add_typer(api_app, name="api")
app.command("demo")(demo)
app.add_typer(streams_app, name="streams")
app.command("rollup")(rollup)


def main() -> None:
    app()
