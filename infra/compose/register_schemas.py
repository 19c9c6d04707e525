"""``python -m pcf_exchange.infra.compose.register_schemas``: register, as the operator, every
schema the compose services write (the streams' topics, the gateway's own records for the
recipients of the shipped subscriptions), so that each service, under its own principal, only
reads the
schema registry. Registers only what is missing (:func:`contracts.register_missing`); prints
what it registered. The cluster is ``KAFKA_BOOTSTRAP_SERVERS``, the principal
``KAFKA_CLIENT_CONFIG``'s, the topic prefix ``PCFX_TOPIC_PREFIX`` (default none), which names
the registry topic too (``<prefix>pcf._schemas``).
"""

from __future__ import annotations

import os

from pcf_exchange.contracts import register_missing, topic_schemas
from pcf_exchange.gateway import default_policy_path
from pcf_exchange.gateway._subscriptions import (
    default_subscriptions_path,
    load_subscriptions,
)
from pcf_exchange.gateway._topics import Topics
from pcf_exchange.gateway.policy import load_policy
from pcf_exchange.gateway.runtime._runner import gateway_schemas

__all__ = ["compose_schemas", "main"]


def compose_schemas(prefix: str) -> list[tuple[str, str]]:
    """(subject, schema text) of every record the compose services write under *prefix*."""
    policy = load_policy(default_policy_path())
    recipients = load_subscriptions(default_subscriptions_path(), policy).recipients
    pairs = [*topic_schemas(prefix), *gateway_schemas(Topics(prefix), recipients)]
    return list(dict.fromkeys(pairs))  # (both name pcf.rejected's)


def main() -> None:
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    prefix = os.environ.get("PCFX_TOPIC_PREFIX", "")
    registered = register_missing(bootstrap, compose_schemas(prefix), prefix=prefix)
    print(f"registered {len(registered)} schema(s): {', '.join(registered) or 'none missing'}")


if __name__ == "__main__":
    main()
