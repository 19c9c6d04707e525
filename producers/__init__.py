"""What a supplier's or manufacturer's IT team runs: validate, sign and publish records.

The SDK in one page (``producers/README.md`` has a runnable example)::

    signer = load_signer(Path("acme.key.pem"), owner="acme")
    with Publisher(bootstrap, signer=signer) as publisher:
        report = publisher.publish(footprint)            # one record, waits for the broker
        summary = publisher.publish_many(records)        # batch-signed, one outcome per record
        future = publisher.submit(footprint)             # concurrent.futures.Future
        publisher.publish_update(old, new)               # PACT v3 lifecycle

``pcfx keys`` and ``pcfx publish`` (:mod:`pcfx.commands.publish`) are thin commands over the
same calls.
"""

from pcf_exchange.producers._input import (
    FOOTPRINT_CSV_DEFAULTS,
    Item,
    footprint_csv_columns,
    load_items,
)
from pcf_exchange.producers._keydir import KeyDirectory, KeyState, KeyStatus
from pcf_exchange.producers._keyops import registration, revocation
from pcf_exchange.producers._lifecycle import deprecated, supersede, superseding
from pcf_exchange.producers._parallel import load_items_jobs
from pcf_exchange.producers._publisher import DEFAULT_BATCH_SIZE, Publisher, Topics, record_key
from pcf_exchange.producers._sequence import (
    Ledger,
    LedgerEntry,
    default_ledger_path,
    footprint_sequence,
    next_sequence,
)
from pcf_exchange.producers._summary import PublishSummary, RecordOutcome, Status
from pcf_exchange.producers.delivery import DeliveryReport, KafkaSink, Outgoing
from pcf_exchange.producers.keys import (
    DEFAULT_OPERATOR_ID,
    KeyInfo,
    KeyPairFiles,
    KeyRole,
    Signer,
    key_id_of,
    load_private_key,
    load_public_key,
    load_signer,
    new_key_pair,
    read_key_info,
    read_passphrase,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_OPERATOR_ID",
    "FOOTPRINT_CSV_DEFAULTS",
    "DeliveryReport",
    "Item",
    "KafkaSink",
    "KeyDirectory",
    "KeyInfo",
    "KeyPairFiles",
    "KeyRole",
    "KeyState",
    "KeyStatus",
    "Ledger",
    "LedgerEntry",
    "Outgoing",
    "PublishSummary",
    "Publisher",
    "RecordOutcome",
    "Signer",
    "Status",
    "Topics",
    "default_ledger_path",
    "deprecated",
    "footprint_csv_columns",
    "footprint_sequence",
    "key_id_of",
    "load_items",
    "load_items_jobs",
    "load_private_key",
    "load_public_key",
    "load_signer",
    "new_key_pair",
    "next_sequence",
    "read_key_info",
    "read_passphrase",
    "record_key",
    "registration",
    "revocation",
    "supersede",
    "superseding",
]
