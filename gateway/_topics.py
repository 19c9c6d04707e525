"""The gateway's topics: the names of the one table in :mod:`contracts.topics`.

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

The two audit topics and the approvals are evidence: the table creates them with infinite
retention, and the gateway refuses to start on topics that lack it
(:func:`contracts.topics.ensure_topics`).
"""

from __future__ import annotations

from pcf_exchange.contracts.topics import TopicNames as Topics

__all__ = ["Topics", "log_id_for"]


def log_id_for(partition: int) -> str:
    """The audit chain of input partition *partition*: one writer per chain (see README)."""
    return f"gateway-p{partition}"
