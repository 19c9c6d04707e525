"""Fuzzing (#22 item 4): every entry point that takes outside bytes, fed random and mutated
inputs, answers with a typed result or an error of our tree (:class:`contracts.errors.PcfError`,
naming what is wrong), never another exception: no ``KeyError``, ``TypeError``,
``RecursionError``, ``OverflowError``... escaping from a parser is a crash.

The inputs are of two kinds: bytes with no structure at all, and a valid document of each kind
with a few of its values replaced by random JSON values, or its text cut, spliced or bit-flipped
(what a broken exporter or a hostile supplier sends). ``PCFX_FUZZ_EXAMPLES`` sets how many
examples each test runs (``make test``: the default, 40; ``make test-reliability``: more).
Every crash found becomes a test of its own below the fuzzers (none so far: see RELIABILITY.md).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcf_exchange.contracts import (
    AvroSerde,
    InMemorySchemaRegistry,
    parse_footprint,
    register_all,
    sign,
)
from pcf_exchange.contracts._files import (
    read_boms,
    read_factors_csv,
    read_factors_json,
    read_footprints,
)
from pcf_exchange.contracts.errors import PcfError
from pcf_exchange.contracts.labels import decode_label
from pcf_exchange.gateway.policy._loader import parse_policy
from pcf_exchange.producers._input import read_footprints_csv
from pcf_exchange.streams.ingest import (
    IngestOutcome,
    KeyRegistry,
    SequenceLedger,
    SourceRef,
    check_record,
)
from tests.contracts.conftest import BOM_JSON, FACTOR_JSON, FOOTPRINT_JSON

pytestmark = pytest.mark.fuzz

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("PCFX_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["", "1e999", "-0", "NaN", "2025-13-40T25:61:00Z", "kg", "\x00", "9" * 80]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside *doc* (dict keys and list indexes)."""
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out += _paths(value, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, base: Any) -> Any:
    """*base* with one to three of its values (at any depth) replaced, or deleted."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            return draw(JSON)
        path = draw(st.sampled_from(paths))
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(JSON)
    return doc


@st.composite
def damaged(draw: st.DrawFn, data: bytes) -> bytes:
    """*data* cut, with a slice repeated, or with bits flipped."""
    kind = draw(st.sampled_from(["cut", "splice", "flip", "insert"]))
    if not data:
        return draw(st.binary(max_size=64))
    i = draw(st.integers(0, len(data) - 1))
    if kind == "cut":
        return data[:i]
    if kind == "splice":
        j = draw(st.integers(i, len(data)))
        return data[:j] + data[i:j] + data[j:]
    if kind == "insert":
        return data[:i] + draw(st.binary(min_size=1, max_size=16)) + data[i:]
    flipped = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        k = draw(st.integers(0, len(data) - 1))
        flipped[k] ^= 1 << draw(st.integers(0, 7))
    return bytes(flipped)


def _never_crashes(read: Callable[[bytes], Any], data: bytes) -> None:
    with contextlib.suppress(PcfError):  # a clear error of our tree: what bad input must get
        read(data)


def _json_bytes(doc: Any) -> bytes:
    return json.dumps(doc, allow_nan=True, default=str).encode()


# --- files: PACT JSON, BOM JSON, factor tables (JSON and CSV), footprint CSV ------------------

READERS: dict[str, tuple[Callable[[bytes], Any], Any]] = {
    "pact-json": (read_footprints, FOOTPRINT_JSON),
    "bom-json": (read_boms, BOM_JSON),
    "factors-json": (read_factors_json, [FACTOR_JSON]),
}


@pytest.mark.parametrize("name", sorted(READERS))
@FUZZ
@given(data=st.data())
def test_json_files_never_crash_on_mutated_documents(name: str, data: st.DataObject) -> None:
    read, base = READERS[name]
    doc = data.draw(mutated(base))
    records = read(_json_bytes(doc))
    for record in records:  # a refused record says why, with field paths
        assert record.value is not None or record.error is not None


@pytest.mark.parametrize("name", sorted(READERS))
@FUZZ
@given(data=st.data())
def test_json_files_never_crash_on_damaged_bytes(name: str, data: st.DataObject) -> None:
    read, base = READERS[name]
    _never_crashes(read, data.draw(damaged(_json_bytes(base))))


def _csv(header: list[str], rows: list[list[str]]) -> bytes:
    lines = [",".join(header), *(",".join(row) for row in rows)]
    return "\n".join(lines).encode()


FACTOR_COLUMNS = ["factorId", "name", "unit", "value", "source", "version", "geography"]
CELL = st.text(max_size=12) | st.sampled_from(["1.5", "-1", "1e999", "NaN", '"', '""', "0x10"])


@FUZZ
@given(
    st.lists(st.sampled_from(FACTOR_COLUMNS), min_size=1, max_size=8),
    st.lists(st.lists(CELL, max_size=9), max_size=4),
)
def test_factor_csv_never_crashes(header: list[str], rows: list[list[str]]) -> None:
    _never_crashes(read_factors_csv, _csv(header, rows))


@FUZZ
@given(st.binary(max_size=300))
def test_csv_readers_never_crash_on_random_bytes(data: bytes) -> None:
    _never_crashes(read_factors_csv, data)
    _never_crashes(read_footprints_csv, data)


@FUZZ
@given(st.lists(st.lists(CELL, max_size=8), min_size=1, max_size=4))
def test_footprint_csv_never_crashes(rows: list[list[str]]) -> None:
    from pcf_exchange.producers._input import footprint_csv_columns

    header = footprint_csv_columns()[:8]
    _never_crashes(read_footprints_csv, _csv(header, rows))


# --- Avro decode of our records, and the ingestion checks on outside bytes ---------------------

OPERATOR, SUPPLIER_KEY = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()


def _serde() -> AvroSerde:
    registry = InMemorySchemaRegistry()
    register_all(registry)
    return AvroSerde(registry)


SERDE = _serde()
VALID = SERDE.encode(
    "pcf.declared",
    sign(
        SUPPLIER_KEY,
        parse_footprint(copy.deepcopy(FOOTPRINT_JSON)),
        supplier_id=FOOTPRINT_JSON["companyIds"][0],
        key_id="s-1",
        sequence=1,
    ),
)


@FUZZ
@given(st.binary(max_size=200) | damaged(VALID))
def test_avro_decode_never_crashes(data: bytes) -> None:
    _never_crashes(SERDE.decode_datum, data)


@FUZZ
@given(st.binary(max_size=200) | damaged(VALID))
def test_ingestion_checks_answer_every_record(data: bytes) -> None:
    # what a worker does with a record from pcf.declared: an outcome, never an exception
    result = check_record(
        data,
        SourceRef("pcf.declared", 0, 0, datetime(2025, 6, 1, tzinfo=UTC)),
        serde=SERDE,
        keys=KeyRegistry(operator_keys={"op-1": OPERATOR.public_key()}),
        ledger=SequenceLedger(),
    )
    assert result.outcome in (IngestOutcome.REJECTED, IngestOutcome.PENDING_KEY)
    if result.outcome is IngestOutcome.REJECTED:
        assert isinstance(result.error, PcfError) and result.error.message


# --- policy YAML, label payloads -----------------------------------------------------------------

POLICY = (ROOT / "gateway/policies/default.yaml").read_text()


@st.composite
def policy_text(draw: st.DrawFn) -> str:
    """The default policy with a few lines dropped, repeated or with a character replaced."""
    lines = POLICY.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["drop", "repeat", "char", "indent"]))
        if kind == "drop":
            del lines[i]
        elif kind == "repeat":
            lines.insert(i, lines[i])
        elif kind == "indent":
            lines[i] = " " * draw(st.integers(1, 3)) + lines[i]
        elif lines[i]:
            j = draw(st.integers(0, len(lines[i]) - 1))
            lines[i] = (
                lines[i][:j]
                + draw(st.sampled_from(list(":-[]{}&*!|>'\"%@`#, x0")))
                + lines[i][j + 1 :]
            )
    return "\n".join(lines)


@settings(max_examples=max(10, EXAMPLES // 4), deadline=None)
@given(policy_text() | st.text(max_size=200))
def test_policy_yaml_never_crashes(text: str) -> None:
    _never_crashes(lambda data: parse_policy(data.decode(), source="fuzz"), text.encode())


LABEL_CHARS = st.text(
    alphabet=st.sampled_from(
        "PCFX1.-_=abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    ),
    max_size=400,
)


@FUZZ
@given(LABEL_CHARS | st.text(max_size=100) | st.builds(lambda s: "PCFX1." + s, LABEL_CHARS))
def test_label_payloads_never_crash(text: str) -> None:
    _never_crashes(lambda data: decode_label(data.decode()), text.encode())


@FUZZ
@given(mutated({"v": 1, "certificateId": "c-1", "pcfId": "x", "figure": "1.0"}))
def test_label_payloads_with_a_well_formed_frame_never_crash(body: Any) -> None:
    import base64

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    text = f"PCFX1.{b64(_json_bytes(body))}.{b64(b'x' * 64)}"
    _never_crashes(lambda data: decode_label(data.decode()), text.encode())
