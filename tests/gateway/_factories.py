"""Factories shared by the gateway tests: a rolled-up battery footprint with lineage."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pcf_exchange.gateway.examples import example_record

NOW = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
PSEUDONYM_SECRET = b"p" * 32


def battery_record() -> dict[str, Any]:
    """A fresh copy of a rolled-up battery footprint with lineage (safe to mutate)."""
    return example_record()
