"""Where the running system is: which Kafka cluster, which state folders.

Broker selection, in this order (ARCHITECTURE decision 1):

1. ``KAFKA_BOOTSTRAP_SERVERS`` if set (an existing cluster, or docker compose's broker);
2. else ``bootstrap.servers`` of the client config file (``--kafka-config`` /
   ``KAFKA_CLIENT_CONFIG``, see :mod:`contracts.kafka_client`);
3. else the local jar broker that ``pcfx broker start`` runs (its ``broker.json``).
"""

from __future__ import annotations

import os

from contracts.errors import BrokerError
from contracts.kafka_client import client_settings
from infra.kafka import launcher

__all__ = ["bootstrap_servers"]


def bootstrap_servers() -> str:
    """The Kafka bootstrap address to use, or a BrokerError saying how to get one."""
    explicit = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if explicit:
        return explicit
    configured = client_settings().bootstrap_servers
    if configured:
        return configured
    state = launcher.status()
    if state.running and state.info is not None:
        info = state.info
        if info.admin_config and not client_settings().uses_sasl:
            raise BrokerError(
                f"the local broker at {info.bootstrap} is {info.security_protocol}"
                f" ({info.sasl_mechanism}): this client has no credentials"
                f" ({client_settings().source})",
                hint=f"Connect as the operator with --kafka-config {info.admin_config} (or"
                " KAFKA_CLIENT_CONFIG=...), or as a tenant with the file 'pcfx tenants add'"
                " wrote.",
            )
        return info.bootstrap
    raise BrokerError(
        "no Kafka broker is configured: KAFKA_BOOTSTRAP_SERVERS is not set and no local "
        "broker is running",
    )
