"""What the gateway's command modules share: the broker address, the schema registry, the
gateway's serde over it (:func:`_serde`, opened and closed in one place), and the quiet
printer of ``--json`` (``pcfx/commands/gateway*.py``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from pcf_exchange.gateway.runtime._avro import GatewaySerde, kafka_registrar


def _bootstrap(explicit: str | None) -> str:
    from pcf_exchange.pcfx.settings import bootstrap_servers

    return bootstrap_servers(explicit)


def _quiet(*_: Any, **__: Any) -> None:
    """``console.print``'s stand-in under ``--json``: the JSON document is the only output."""


def _registry(
    bootstrap: str, url: str | None = None, prefix: str = "", startup_s: float = 0.0
) -> Any:
    """The schema registry: the Confluent-compatible one at *url*, else the topic on Kafka of
    the deployment *prefix*. A service's (*startup_s* > 0) refuses an un-migrated prefixed
    deployment (:func:`contracts._registry.require_migrated`)."""
    from pcf_exchange.contracts import HttpSchemaRegistry, KafkaSchemaRegistry
    from pcf_exchange.contracts._registry import require_migrated

    if url:
        return HttpSchemaRegistry(url)
    registry = KafkaSchemaRegistry(bootstrap, prefix=prefix, startup_s=startup_s)
    if startup_s > 0:
        try:
            require_migrated(bootstrap, prefix, registry=registry)
        except BaseException:
            registry.close()
            raise
    return registry


@contextlib.contextmanager
def _serde(servers: str, prefix: str, *, writes: bool = False) -> Iterator[GatewaySerde]:
    """The gateway's serde over the deployment's registry topic for one command, the registry
    closed after; ``writes``: it may register a schema it does not find (a command that
    writes records)."""
    registry = _registry(servers, prefix=prefix)
    try:
        registrar = kafka_registrar(servers, prefix=prefix) if writes else None
        yield GatewaySerde(registry, registrar=registrar)
    finally:
        registry.close()
