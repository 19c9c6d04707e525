"""The schema registry as the worker's agents see it: answers from memory, never blocks the loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

from pcf_exchange.contracts import (
    AvroSerde,
    CompatibilityLevel,
    RegisteredSchema,
    SchemaRegistry,
    UnknownSchemaError,
)

__all__ = ["Schemas"]


class Schemas:
    """The schema registry as the agents see it: answers from memory, never blocks the loop.

    :class:`~contracts.KafkaSchemaRegistry` answers a miss by reading its topic with blocking
    kafka-python calls. The ids a worker encodes with are resolved when it starts
    (:meth:`warm`), and a schema id an incoming record names is fetched in a thread
    (:meth:`resolve`) before the record is decoded on the loop; an id still unknown then is an
    :class:`~contracts.UnknownSchemaError`, as before (the record goes to the DLQ).
    """

    def __init__(self, registry: SchemaRegistry) -> None:
        self.registry = registry
        self.schemas: dict[int, str] = {}

    def warm(self, serde: AvroSerde, encodes: Iterable[tuple[str, type[Any]]]) -> None:
        """Resolve, at start-up, the ids of the schemas the worker encodes with, and keep their
        texts (it also decodes what it wrote: :mod:`streams._publish`)."""
        for topic, model in encodes:
            schema_id = serde.schema_id(topic, model)
            self.schemas[schema_id] = self.registry.get_schema(schema_id)

    async def resolve(self, data: bytes | None) -> None:
        """Fetch the schema that the Confluent frame of *data* names, unless known or unknown."""
        if data is None or len(data) < 5 or data[0] != 0:
            return  # not framed: decoding says why
        schema_id = int.from_bytes(data[1:5], "big")
        if schema_id in self.schemas:
            return
        with contextlib.suppress(UnknownSchemaError):
            text = await asyncio.to_thread(self.registry.get_schema, schema_id)
            self.schemas[schema_id] = text

    # -- SchemaRegistry (what AvroSerde calls; lookups and registration happen at start-up)

    def get_schema(self, schema_id: int) -> str:
        text = self.schemas.get(schema_id)
        if text is None:
            raise UnknownSchemaError(f"schema id {schema_id} is not in the schema registry")
        return text

    def register(self, subject: str, schema: str) -> int:
        return self.registry.register(subject, schema)

    def lookup(self, subject: str, schema: str) -> int:
        return self.registry.lookup(subject, schema)

    def latest(self, subject: str) -> RegisteredSchema:
        return self.registry.latest(subject)

    def versions(self, subject: str) -> list[int]:
        return self.registry.versions(subject)

    def subjects(self) -> list[str]:
        return self.registry.subjects()

    def compatibility(self, subject: str | None = None) -> CompatibilityLevel:
        return self.registry.compatibility(subject)

    def set_compatibility(self, level: CompatibilityLevel, subject: str | None = None) -> None:
        self.registry.set_compatibility(level, subject)

    def test_compatibility(self, subject: str, schema: str) -> list[str]:
        return self.registry.test_compatibility(subject, schema)
