"""The gateway's topics, under one optional prefix (so tests and tenants do not collide).

=========================  =======================================  ==========================
topic                      value (Confluent-framed Avro)            key
=========================  =======================================  ==========================
``pcf.products``           ``io.pcfexchange.RolledUpFootprint``     product id (in)
``pcf.outbound.<id>``      ``io.pcfexchange.gateway.SealedMessage``  per-recipient pseudonym of
                                                                    the product id
``pcf.audit``              ``...gateway.AuditLogEntry``             log id (``gateway-p<n>``)
``pcf.audit.checkpoints``  ``...gateway.AuditLogCheckpoint``        log id
``pcf.approvals``          ``...gateway.ApprovalEvent``             approval id
``pcf.gateway.counters``   ``...gateway.PiCounterEntry`` (compact)  year|metric|individual
``pcf.rejected``           ``io.pcfexchange.Rejection``             the input's key
=========================  =======================================  ==========================

The two audit topics are evidence: they are created with infinite retention
(:data:`AUDIT_TOPIC_CONFIG`) and the gateway refuses to start on audit topics that lack it
(:meth:`Topics.required_configs`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = ["AUDIT_TOPIC_CONFIG", "Topics", "log_id_for"]

AUDIT_TOPIC_CONFIG: Final[Mapping[str, str]] = {"retention.ms": "-1", "retention.bytes": "-1"}
"""Topic configs of ``pcf.audit`` and ``pcf.audit.checkpoints``: never delete audit evidence
(the broker's default deletes records after 7 days)."""

_RECIPIENT = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


def log_id_for(partition: int) -> str:
    """The audit chain of input partition *partition*: one writer per chain (see README)."""
    return f"gateway-p{partition}"


@dataclass(frozen=True)
class Topics:
    """Topic names; ``prefix`` is prepended to every one (``"t1."`` -> ``t1.pcf.audit``)."""

    prefix: str = ""

    def _t(self, name: str) -> str:
        return f"{self.prefix}{name}"

    @property
    def products(self) -> str:
        return self._t("pcf.products")

    @property
    def audit(self) -> str:
        return self._t("pcf.audit")

    @property
    def checkpoints(self) -> str:
        return self._t("pcf.audit.checkpoints")

    @property
    def approvals(self) -> str:
        return self._t("pcf.approvals")

    @property
    def counters(self) -> str:
        return self._t("pcf.gateway.counters")

    @property
    def rejected(self) -> str:
        return self._t("pcf.rejected")

    def required_configs(self) -> dict[str, Mapping[str, str]]:
        """The topic configs the gateway checks at start-up, by topic name."""
        return {self.audit: AUDIT_TOPIC_CONFIG, self.checkpoints: AUDIT_TOPIC_CONFIG}

    def outbound(self, recipient_id: str) -> str:
        """``pcf.outbound.<recipient id>``; the id must be a legal topic-name fragment."""
        if not _RECIPIENT.match(recipient_id):
            raise ValueError(
                f"recipient id '{recipient_id}' cannot name a Kafka topic"
                " (letters, digits, '.', '_', '-' only)"
            )
        return self._t(f"pcf.outbound.{recipient_id}")
