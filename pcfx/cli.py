"""``pcfx``: the one command line of pcf-exchange. Each component contributes a command group."""

from __future__ import annotations

import typer

from gateway.api.cli import app as api_app
from gateway.cli import approvals_app, audit_app, gateway_app, outbound_app
from infra.kafka.cli import app as broker_app
from pcfx.certification import bodies_app, certificates_app, label_app
from pcfx.commands.results import results
from pcfx.console import handle_errors
from pcfx.declarations import declarations_app
from pcfx.demo import demo_app
from pcfx.factors import factors_app
from pcfx.kafka_options import KafkaConfig, apply
from pcfx.pcr import pcr_app, review_app
from pcfx.tenants import tenants_app
from producers.cli import keys_app, publish_app
from streams.cli import rollup, streams_app

app = typer.Typer(
    name="pcfx",
    help="pcf-exchange: signed product carbon footprints (PACT v3) on Kafka, rolled up through "
    "every tier of the supply chain, released abroad only under policy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
@handle_errors
def _connection(kafka_config: KafkaConfig = None) -> None:
    """Options shared by every command: how Kafka clients connect."""
    if kafka_config is not None:
        apply(kafka_config)


# platform operator
app.add_typer(broker_app, name="broker")
app.add_typer(tenants_app, name="tenants")
app.add_typer(factors_app, name="factors")
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
# certification bodies, certificates and carbon labels
app.add_typer(bodies_app, name="bodies")
app.add_typer(certificates_app, name="certificates")
app.add_typer(label_app, name="label")
# everything at once
app.add_typer(demo_app, name="demo")


def main() -> None:
    app()
