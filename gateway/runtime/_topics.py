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
``pcf.keys``               ``io.pcfexchange.SignedSupplierKey``     owner/key id (read only)
=========================  =======================================  ==========================
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Topics", "log_id_for"]

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
    def keys(self) -> str:
        """``pcf.keys``: the operator-signed key registry the gateway verifies hand-offs with."""
        return self._t("pcf.keys")

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

    def outbound(self, recipient_id: str) -> str:
        """``pcf.outbound.<recipient id>``; the id must be a legal topic-name fragment."""
        if not _RECIPIENT.match(recipient_id):
            raise ValueError(
                f"recipient id '{recipient_id}' cannot name a Kafka topic"
                " (letters, digits, '.', '_', '-' only)"
            )
        return self._t(f"pcf.outbound.{recipient_id}")
