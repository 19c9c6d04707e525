"""The Kafka connection options every ``pcfx`` command shares.

``pcfx --kafka-config FILE <command> ...`` (or ``KAFKA_CLIENT_CONFIG=FILE``) makes every Kafka
client the command builds (confluent-kafka, kafka-python, aiokafka, faust) connect with that
Java-style client properties file's security settings; the single ``KAFKA_SECURITY_PROTOCOL``,
``KAFKA_SASL_*`` and ``KAFKA_SSL_*`` variables do the same without a file. See
:mod:`contracts.kafka_client`. Commands that also take the option after their name
(``pcfx tenants add --kafka-config FILE``) apply it the same way, through :func:`apply`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pcf_exchange.contracts.kafka_client import KafkaClientSettings, use_config_file

__all__ = ["KafkaConfig", "apply"]

KafkaConfig = Annotated[
    Path | None,
    typer.Option(
        "--kafka-config",
        help="Kafka client properties file (security.protocol, sasl.*, ssl.*, bootstrap.servers;"
        " the file Kafka's tools take with --command-config). Default: $KAFKA_CLIENT_CONFIG,"
        " then the KAFKA_SECURITY_PROTOCOL / KAFKA_SASL_* / KAFKA_SSL_* variables.",
        show_default=False,
    ),
]


def apply(path: Path | None) -> KafkaClientSettings:
    """Use *path* (if given) for every Kafka client of this process and the processes it starts;
    return the settings in force. Raises :class:`~contracts.errors.BrokerError` if the file
    cannot be read or its settings are incomplete."""
    return use_config_file(path)
