"""The roll-up topic's records: messages for nodes, packed per partition of their nodes.

A message goes to the partition of the node it is for (:func:`node_key`, :func:`partition`), so
a node's messages and its row (in the ``nodes`` table, co-partitioned) stay together whichever
worker sent them. A batch's messages for one partition travel as one record (:func:`packs`):
a record and a faust event cost about as much as a roll-up step, and one update fans out into
several messages. A pack the sending app applied itself (local delivery, see
:mod:`streams.runtime`) carries :data:`ECHO_HEADER` with :func:`echo_stamp`.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Iterable

from aiokafka.partitioner import murmur2

from pcf_exchange.streams import codec
from pcf_exchange.streams.rollup import Message, node_of

__all__ = [
    "ECHO_HEADER",
    "PACK_MAX_BYTES",
    "Keyed",
    "echo_stamp",
    "keyed",
    "node_key",
    "packs",
    "partition",
    "unpack",
]

Keyed = list[tuple[bytes, Message]]
"""Messages, each with the key of the node it is for, in order."""

PACK_MAX_BYTES = 256 * 1024
"""Most bytes of messages in one record on the roll-up topic (the broker's default limit for
a batch of records is 1 MiB); a single larger message travels alone."""

ECHO_HEADER = "echo"
"""Header of a roll-up pack whose messages the sending app applied itself (local delivery):
:func:`echo_stamp` of the app and its consumer generation when it sent them."""


def node_key(message: Message) -> bytes:
    """The Kafka key of the node *message* is for (:func:`~streams.rollup.node_of`)."""
    return str(node_of(message)).encode()


@functools.lru_cache(maxsize=1 << 16)
def partition(key: bytes, partitions: int) -> int:
    """The partition of the roll-up topic for a node's *key*: Kafka's default partitioner
    (murmur2, as aiokafka's and the Java client's), so the node's rows stay in that partition
    of the table, whichever client sent its messages. (Cached: murmur2 is pure Python, about
    5 µs, and a node's key recurs with every message for it.)"""
    home: int = (murmur2(key) & 0x7FFFFFFF) % partitions
    return home


def keyed(messages: Iterable[Message]) -> Keyed:
    """*messages*, each with the key of the node it is for."""
    return [(node_key(message), message) for message in messages]


def echo_stamp(incarnation: bytes, generation: int) -> bytes:
    """What marks a pack as already applied: by this app (*incarnation*, random per start) in
    this consumer *generation*. A pack with it needs no decoding when it comes back, since its
    messages are already in the rows this app keeps; after a restart (new incarnation) or a
    rebalance (new generation) the same pack is applied like any other, as ``DUPLICATE``
    no-ops where the rows have them."""
    return incarnation + generation.to_bytes(8, "big", signed=True)


def packs(messages: Iterable[tuple[bytes, Message]], partitions: int) -> list[tuple[int, bytes]]:
    """Messages (:func:`keyed`) packed per partition of their nodes, in order: (partition,
    pack), each pack at most :data:`PACK_MAX_BYTES` unless one message is larger."""
    by_partition: dict[int, list[bytes]] = {}
    for key, message in messages:
        home = partition(key, partitions)
        by_partition.setdefault(home, []).append(codec.encode_message(message))
    out: list[tuple[int, bytes]] = []
    for home, encoded in by_partition.items():
        chunk: list[bytes] = []
        # the pack's bytes (codec.encode_pack): its layout byte, "[", and per message its bytes
        # without their own layout byte, then a comma or (after the last) "]"
        size = 2
        for data in encoded:
            if chunk and size + len(data) > PACK_MAX_BYTES:
                out.append((home, codec.encode_pack(chunk)))
                chunk, size = [], 2
            chunk.append(data)
            size += len(data)
        out.append((home, codec.encode_pack(chunk)))
    return out


def unpack(value: bytes, arrived: int, topic: str, partitions: int) -> Keyed:
    """The messages of a pack that *arrived* on that partition of *topic* (or its one bare
    message, as workers wrote before they packed), each with its node's key, else a
    :class:`~streams.codec.CodecError` naming the message and field: a table row is no
    message, and every message must be for a node of the partition the pack came on (the one
    whose changelog its node's row is written to)."""
    out: Keyed = []
    for i, message in enumerate(codec.decode_pack(value)):
        if not isinstance(message, Message):
            names = ", ".join(k.__name__ for k in typing.get_args(Message))
            raise codec.CodecError(
                f"'$[{i}].@type' must be one of {names} on {topic} (got {type(message).__name__})",
                path=f"$[{i}].@type",
            )
        key = node_key(message)
        if (home := partition(key, partitions)) != arrived:
            raise codec.CodecError(
                f"'$[{i}]' is for {key.decode()}, whose partition of {topic} is {home}"
                f" (got it on partition {arrived})",
                path=f"$[{i}]",
            )
        out.append((key, message))
    return out
