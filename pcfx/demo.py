"""``pcfx demo``: the main job, played end to end on a real broker.

Until the demo issue lands this is a placeholder that proves the plumbing: it publishes one
record to a fresh topic on the broker in use and reads it back.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated

import typer
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from contracts.errors import BrokerError
from pcfx.console import console, handle_errors
from pcfx.settings import bootstrap_servers


@handle_errors
def demo(
    keep_running: Annotated[
        bool, typer.Option("--keep-running", help="Leave the services up afterwards.")
    ] = False,
) -> None:
    """Play the whole exchange on a real broker (placeholder: one record round trip)."""
    bootstrap = bootstrap_servers()
    console.print(
        "[yellow]PLACEHOLDER[/]: the full battery supply-chain demo is not built yet; this run "
        "only publishes one record and reads it back."
    )
    topic = f"demo-{uuid.uuid4().hex[:8]}"
    payload = b"hello from pcf-exchange"
    try:
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        meta = producer.send(topic, value=payload).get(timeout=30)
        producer.close()
        consumer = KafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
        )
        deadline = time.monotonic() + 30
        got = None
        while got is None and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got = records[0].value
        consumer.close()
    except KafkaError as exc:
        raise BrokerError(f"the broker at {bootstrap} failed the round trip: {exc}") from exc
    if got != payload:
        raise BrokerError(f"published to {topic} but could not read it back within 30 s")
    console.print(
        f"[green]OK[/]: published to {topic}[{meta.partition}]@{meta.offset} and read it back."
    )
    if keep_running:
        console.print("The broker stays up: `pcfx broker status`, `pcfx broker stop`.")
