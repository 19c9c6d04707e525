"""Where the running system is: which Kafka cluster, which state folders.

Broker selection, in this order (ARCHITECTURE decision 1):

1. ``KAFKA_BOOTSTRAP_SERVERS`` if set (an existing cluster, or docker compose's broker);
2. else ``bootstrap.servers`` of the client config file (``--kafka-config`` /
   ``KAFKA_CLIENT_CONFIG``, see :mod:`contracts.kafka_client`);
3. else the local jar broker that ``pcfx broker start`` runs (its ``broker.json``).

Before a command hands the address to a Kafka client, :func:`bootstrap_servers` checks that
something answers there (one TCP connect per listed server, ``PCFX_CONNECT_TIMEOUT`` seconds,
5 by default): a client library would retry for its full timeout (30 s and hundreds of log
lines from librdkafka) and then fail with a trace; the check fails at once with one line and
exit code 3. Only reachability is checked; credentials and TLS are the client's.
"""

from __future__ import annotations

import os
import socket

from pcf_exchange.contracts.errors import BrokerError
from pcf_exchange.contracts.kafka_client import client_settings
from pcf_exchange.infra.kafka import launcher

__all__ = ["bootstrap_servers", "check_reachable"]

CONNECT_TIMEOUT_ENV = "PCFX_CONNECT_TIMEOUT"


def bootstrap_servers(explicit: str | None = None, *, check: bool = True) -> str:
    """The Kafka bootstrap address to use (*explicit*, a command's ``--bootstrap``, first), or a
    BrokerError saying how to get one; with *check*, also one when no server there answers."""
    servers = explicit or _configured()
    if check:
        check_reachable(servers)
    return servers


def check_reachable(servers: str, timeout_s: float | None = None) -> None:
    """Raise :class:`~contracts.errors.BrokerError` unless one of *servers* (``host:port,…``)
    accepts a TCP connection within *timeout_s* (default ``$PCFX_CONNECT_TIMEOUT`` or 5 s)."""
    if timeout_s is None:
        timeout_s = float(os.environ.get(CONNECT_TIMEOUT_ENV, "") or 5.0)
    problems: list[str] = []
    for server in (s.strip() for s in servers.split(",") if s.strip()):
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection((host.strip("[]") or "localhost", int(port)), timeout_s):
                return
        except ValueError:
            problems.append(f"{server}: not host:port")
        except OSError as exc:
            problems.append(f"{server}: {exc.strerror or exc}")
    raise BrokerError(
        f"no Kafka broker answers at {servers} ({'; '.join(problems) or 'no server listed'}):"
        " nothing was sent or read",
        hint="Start one with 'pcfx broker start', or set KAFKA_BOOTSTRAP_SERVERS (or --bootstrap)"
        " to a running cluster.",
    )


def _configured() -> str:
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
