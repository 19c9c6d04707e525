"""The publish path's fast lane (producers._fastpath) takes a footprint only when the model path
would accept it without a warning and sign the same bytes: checked on named cases and on
generated mutations of a valid footprint, against ``check_footprint`` and ``signing_bytes``."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcf_exchange.contracts import check_footprint
from pcf_exchange.contracts._envelope import signing_bytes
from pcf_exchange.producers import Ledger, Publisher, Signer, load_items
from pcf_exchange.producers._fastpath import (
    PactFootprint,
    accept,
    canonical_payload,
    no_repeated_key,
)
from pcf_exchange.producers._input import Item
from tests.contracts.conftest import FOOTPRINT_JSON
from tests.contracts.test_fast_path import PATHS, TRICKY, _mutated
from tests.producers.conftest import SUPPLIER as CONFTEST_SUPPLIER
from tests.producers.conftest import footprint_json

SUPPLIER = FOOTPRINT_JSON["companyIds"][0]


def _same_as_the_model(payload: dict[str, Any]) -> bool:
    """Whether the lane took *payload*; when it did, assert the model path agrees in full."""
    value = orjson.loads(orjson.dumps(payload))
    fast = accept(value)
    # the file reader passes the canonical writing it made for no_repeated_key: the same answer
    assert (accept(value, canonical_payload(value)) is None) is (fast is None)
    if fast is None:
        return False
    result = check_footprint(copy.deepcopy(payload))
    assert result.value is not None, f"the lane took what the model refuses: {result.violations}"
    assert result.warnings == (), f"the lane took a record the model warns about: {result.warnings}"
    for sequence in (0, 7, 2**53 - 1):
        assert fast.signing_bytes(
            supplier_id=SUPPLIER, key_id="k1", sequence=sequence
        ) == signing_bytes(result.value, supplier_id=SUPPLIER, key_id="k1", sequence=sequence)
    assert str(result.value.id) == fast.id and result.value.created == fast.created
    assert result.value.status == fast.status
    assert result.value.product_ids == fast.product_ids
    assert result.value.company_ids == fast.company_ids
    return True


def _pcf(**changes: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d["pcf"].update(changes)


def _data(d: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = d["extensions"][0]["data"]
    return data


TAKEN: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("as_is", lambda d: None),
    ("no_extension", lambda d: d.pop("extensions")),
    ("other_figures", _pcf(fossilGhgEmissions="12.5", productMassPerDeclaredUnit="0")),
    ("no_uncertainty", lambda d: _data(d).pop("uncertainty")),
    ("fractional_instant", lambda d: d.update(created="2025-03-01T08:00:00.250000Z")),
]

DECLINED: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("upper_case_id", lambda d: d.update(id=d["id"].upper())),
    ("decimal_plus", _pcf(fossilGhgEmissions="+61.10")),
    ("decimal_leading_zero", _pcf(fossilGhgEmissions="061.10")),
    ("instant_offset", lambda d: d.update(created="2025-03-01T16:00:00+08:00")),
    ("instant_lower_z", lambda d: d.update(created="2025-03-01T08:00:00z")),
    ("instant_short_fraction", lambda d: d.update(created="2025-03-01T08:00:00.5Z")),
    ("null_optional", lambda d: d.update(comment=None)),
    ("empty_extensions", lambda d: d.update(extensions=[])),
    ("old_extension_version", lambda d: d["extensions"][0].update(specVersion="1.0.0")),
    (
        "extension_documentation",
        lambda d: d["extensions"][0].update(documentation="https://x.example/doc"),
    ),
    (
        "label_default_trade_secret",
        lambda d: _data(d)["fieldLabels"]["productIds[*]"].update(tradeSecret=False),
    ),
    (
        "label_default_personal",
        lambda d: _data(d)["fieldLabels"]["productIds[*]"].update(personalInfo="NONE"),
    ),
    # warnings: the model path gives them
    (
        "warn_stage_sum",
        _pcf(pcfExcludingBiogenicUptake="60.00", pcfIncludingBiogenicUptake="60.00"),
    ),
    ("warn_uptake_sum", _pcf(biogenicCO2Uptake="-1", pcfIncludingBiogenicUptake="61.40")),
    ("warn_interval", lambda d: _data(d)["uncertainty"].update(lower95="62", upper95="70")),
    ("warn_ccu", _pcf(ccuCreditCertification="https://x.example/c")),
    (
        "warn_mass",
        _pcf(declaredUnitOfMeasurement="kilogram", productMassPerDeclaredUnit="2"),
    ),
    (
        "warn_rule_other_name",
        lambda d: d["pcf"]["productOrSectorSpecificRules"][0].update(operator="PEF"),
    ),
    ("bad_rule", _pcf(fossilGhgEmissions="-1")),
]


@pytest.mark.parametrize("mutate", [c[1] for c in TAKEN], ids=[c[0] for c in TAKEN])
def test_a_record_in_the_models_form_takes_the_lane(
    mutate: Callable[[dict[str, Any]], Any],
) -> None:
    payload = copy.deepcopy(FOOTPRINT_JSON)
    mutate(payload)
    assert _same_as_the_model(payload)


@pytest.mark.parametrize("mutate", [c[1] for c in DECLINED], ids=[c[0] for c in DECLINED])
def test_what_the_model_would_write_otherwise_or_warn_about_takes_the_model_path(
    mutate: Callable[[dict[str, Any]], Any],
) -> None:
    payload = copy.deepcopy(FOOTPRINT_JSON)
    mutate(payload)
    assert not _same_as_the_model(payload)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.sampled_from(PATHS),
    action=st.sampled_from(["set", "set", "set", "delete", "add"]),
    value=st.sampled_from(
        [*TRICKY, "61.4", "61.400", "0.0", "2025-03-01T08:00:00.000001Z", "NONE", "2.0.0"]
    ),
)
def test_the_lane_takes_only_what_the_model_accepts_without_warnings_with_the_same_bytes(
    path: tuple[Any, ...], action: str, value: Any
) -> None:
    _same_as_the_model(_mutated(path, action, value))


def test_a_repeated_key_is_seen_and_colons_in_strings_are_not() -> None:
    clean = orjson.dumps(FOOTPRINT_JSON)
    assert no_repeated_key(clean, orjson.loads(clean))
    spaced = orjson.dumps(FOOTPRINT_JSON, option=orjson.OPT_INDENT_2)
    assert no_repeated_key(spaced, orjson.loads(spaced))
    colon = orjson.dumps({**FOOTPRINT_JSON, "comment": 'a: "b": c'})
    assert no_repeated_key(colon, orjson.loads(colon))
    repeated = clean[:-1] + b',"comment":"again"}'
    assert not no_repeated_key(repeated, orjson.loads(repeated))
    escaped = clean[:-1] + b',"comment":"x\\u003a","comment":"y"}'
    assert not no_repeated_key(escaped, orjson.loads(escaped))
    upper = clean[:-1] + b',"comment":"x\\u003A","comment":"y"}'
    assert not no_repeated_key(upper, orjson.loads(upper))
    ascii_only = json.dumps(FOOTPRINT_JSON).encode()  # non-ASCII written as \u escapes
    assert b"\\u" in ascii_only and no_repeated_key(ascii_only, orjson.loads(ascii_only))
    # given the compact writing the reader made already (keys sorted or not), the same answers
    for raw, answer in ((clean, True), (spaced, True), (repeated, False), (upper, False)):
        value = orjson.loads(raw)
        assert no_repeated_key(raw, value, orjson.dumps(value)) is answer
        assert no_repeated_key(raw, value, canonical_payload(value)) is answer


# -- through the publisher: the same bytes on the topic ------------------------------------------


def _wire_values(items: list[Item], signer: Signer, batch_size: int) -> list[bytes]:
    """The framed Avro values a dry run would send for *items* (in order)."""
    with Publisher(
        signer=signer, dry_run=True, ledger=Ledger.in_memory(), batch_size=batch_size
    ) as publisher:
        values: list[bytes] = []
        encode = publisher._encode

        def capture(topic: str, signed: Any) -> bytes:
            values.append(encode(topic, signed))
            return values[-1]

        publisher._encode = capture  # type: ignore[method-assign]
        summary = publisher.publish_many(items)
    assert summary.ok, summary.by_error()
    return values


@pytest.mark.parametrize("batch_size", [1, 64])
def test_the_fast_lane_sends_the_bytes_the_model_path_sends(
    tmp_path: Path, batch_size: int
) -> None:
    signer = Signer.from_private_key(
        Ed25519PrivateKey.from_private_bytes(bytes(32)), CONFTEST_SUPPLIER
    )
    records = [footprint_json(n) for n in range(70)]
    source = tmp_path / "footprints.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    fast = list(load_items("footprints", source))
    assert all(isinstance(item.record, PactFootprint) for item in fast)
    modelled = [Item(check_footprint(r).unwrap(), f"m{n}") for n, r in enumerate(records)]
    if batch_size == 1:
        fast, modelled = fast[:3], modelled[:3]
    sent = _wire_values(fast, signer, batch_size)
    assert len(sent) == len(fast) and sent == _wire_values(modelled, signer, batch_size)
