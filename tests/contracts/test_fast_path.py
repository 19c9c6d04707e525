"""The ingestion's fast path (contracts._fast) accepts only what the models accept, and every bad
record gets the models' reasons: each bad-record case of the contract tests, sent in the v2
envelope, is run through both paths, then generated mutations of a valid footprint are (one
and two at a time). The validator is generated from rule tables (contracts._checkgen): each
kind of check is also compared with the pydantic type it stands for."""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastavro import parse_schema, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from pcf_exchange.contracts import (
    SignedFootprint,
    check_footprint,
    parse_footprint,
    sign,
    to_avro_dict,
)
from pcf_exchange.contracts._checkgen import Dec, Instant, List, Obj, Str, compile_object, source_of
from pcf_exchange.contracts._envelope import PAYLOAD_FOOTPRINT, open_signed_body
from pcf_exchange.contracts._fast import FOOTPRINT_RULES, footprint_ok, read_footprint
from pcf_exchange.contracts._schemas import expanded
from pcf_exchange.contracts._serde import from_avro_dict
from pcf_exchange.contracts._types import (
    AnyDecimal,
    DecimalOneToFive,
    NegOrZeroDecimal,
    NonNegDecimal,
    PercentDecimal,
    PositiveDecimal,
    UtcDateTime,
)
from pcf_exchange.contracts.canonical import pae
from pcf_exchange.streams.adapt import core_footprint, core_footprint_pact
from tests.contracts.conftest import FOOTPRINT_JSON
from tests.contracts.test_contracts_footprint import CROSS_CASES, DECIMAL_CASES, FIELD_CASES

SUPPLIER = FOOTPRINT_JSON["companyIds"][0]


def body_of(payload: Any, *, supplier: str = SUPPLIER, key_id: str = "k1", seq: int = 3) -> bytes:
    """Signed bytes as a (possibly careless) supplier would write them: any JSON payload."""
    body = {"keyId": key_id, "payload": payload, "sequence": seq, "supplierId": supplier}
    return pae(PAYLOAD_FOOTPRINT, orjson.dumps(body, option=orjson.OPT_SORT_KEYS))


def v2_datum(body: bytes, **envelope: Any) -> dict[str, Any]:
    """The Avro datum of a v2 record carrying *body*, as it comes off the wire (encoded and read
    back with fastavro, so types are what the consumer sees)."""
    datum = {
        "supplierId": SUPPLIER,
        "keyId": "k1",
        "sequence": 3,
        "payloadType": PAYLOAD_FOOTPRINT,
        "signature": bytes(64),
        "batchProof": None,
        "footprint": None,
        "signedBody": body,
        **envelope,
    }
    schema = parse_schema(expanded("SignedFootprint"), named_schemas={})
    buffer = io.BytesIO()
    schemaless_writer(buffer, schema, datum, disable_tuple_notation=True)
    from fastavro import schemaless_reader

    buffer.seek(0)
    read = schemaless_reader(buffer, schema, schema)
    assert isinstance(read, dict)
    return read


def both_paths(payload: Any) -> tuple[bool, Any]:
    """(fast path accepted, the model's result) for *payload* sent in the v2 envelope."""
    datum = v2_datum(body_of(payload))
    fast = read_footprint(datum)
    model = from_avro_dict(SignedFootprint, datum)
    if fast is not None:
        assert model.ok, f"the fast path accepted what the model refuses: {model.violations}"
    return fast is not None, model


def _decimal_case(value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d["pcf"].update(pcfExcludingBiogenicUptake=value)


BAD_CASES: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    *((f"decimal_{name}", _decimal_case(value)) for name, value, _ in DECIMAL_CASES),
    *((f"field_{name}", mutate) for name, mutate, _, _ in FIELD_CASES),
    *((f"cross_{name}", mutate) for name, mutate, _, _ in CROSS_CASES),
    ("bound_unit_amount_zero", lambda d: d["pcf"].update(declaredUnitAmount="0")),
    ("bound_unit_amount_neg_zero", lambda d: d["pcf"].update(declaredUnitAmount="-0.0")),
    ("bound_fossil_neg", lambda d: d["pcf"].update(fossilGhgEmissions="-0.1")),
    ("bound_fossil_neg_zero", lambda d: d["pcf"].update(fossilGhgEmissions="-0")),
    ("bound_uptake_positive", lambda d: d["pcf"].update(biogenicCO2Uptake="0.5")),
    ("bound_percent_over", lambda d: d["pcf"].update(exemptedEmissionsPercent="100.5")),
    ("bound_percent_neg_zero", lambda d: d["pcf"].update(primaryDataShare="-0")),
    ("dqr_range", lambda d: d["pcf"]["dqi"].update(temporalDQR="5.5")),
    ("dqr_missing", lambda d: d["pcf"]["dqi"].pop("temporalDQR")),
    ("unknown_top_field", lambda d: d.update(version=2)),
    ("unknown_pcf_field", lambda d: d["pcf"].update(declaredUnit="kilogram")),
    ("required_null", lambda d: d.update(companyName=None)),
    (
        "rules_repeat",
        lambda d: d["pcf"]["productOrSectorSpecificRules"].append(
            copy.deepcopy(d["pcf"]["productOrSectorSpecificRules"][0])
        ),
    ),
    ("preceding_self_upper", lambda d: d["precedingPfIds"].append(d["id"].upper())),
    ("preceding_repeat_case", lambda d: d["precedingPfIds"].append(d["precedingPfIds"][0].upper())),
    (
        "label_trade_secret_text",
        lambda d: d["extensions"][0]["data"]["fieldLabels"]["productIds[*]"].update(
            tradeSecret="yes"
        ),
    ),
    ("ext_unknown_data_field", lambda d: d["extensions"][0]["data"].update(colour="green")),
    ("ext_twice", lambda d: d["extensions"].append(copy.deepcopy(d["extensions"][0]))),
    ("ext_bad_spec_version", lambda d: d["extensions"][0].update(specVersion="2")),
    (
        "sources_missing_version",
        lambda d: d["pcf"]["secondaryEmissionFactorSources"][0].pop("version"),
    ),
    ("verification_name_empty", lambda d: d["pcf"]["verification"].update(providerName="")),
    ("not_an_object", lambda d: d.clear()),
]


@pytest.mark.parametrize("mutate", [c[1] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_every_bad_case_is_refused_with_the_models_reasons(
    mutate: Callable[[dict[str, Any]], Any],
) -> None:
    payload = copy.deepcopy(FOOTPRINT_JSON)
    mutate(payload)
    expected = check_footprint(payload)
    assert not expected.ok  # each case is a bad record for the PACT JSON rules
    accepted, model = both_paths(payload)
    assert not accepted
    # the v2 record's rejection is the PACT JSON rules' one, under "footprint."
    assert [(v.path, v.code) for v in model.violations] == [
        ("footprint." + v.path if v.path else "footprint", v.code) for v in expected.violations
    ]


def test_the_valid_footprint_takes_the_fast_path_and_reads_as_the_model_does() -> None:
    accepted, model = both_paths(copy.deepcopy(FOOTPRINT_JSON))
    assert accepted and model.ok
    datum = v2_datum(body_of(copy.deepcopy(FOOTPRINT_JSON)))
    fast = read_footprint(datum)
    assert fast is not None
    assert fast.footprint == model.value.footprint == parse_footprint(FOOTPRINT_JSON)
    assert fast.product_ids == model.value.footprint.product_ids


def test_the_envelope_must_match_the_signed_body() -> None:
    body = body_of(copy.deepcopy(FOOTPRINT_JSON))
    for change, path in (
        ({"sequence": 4}, "sequence"),
        ({"supplierId": "someone-else"}, "supplierId"),
        ({"keyId": "k2"}, "keyId"),
    ):
        datum = v2_datum(body, **change)
        assert read_footprint(datum) is None
        model = from_avro_dict(SignedFootprint, datum)
        assert [(v.path, v.code) for v in model.violations] == [(path, "body_mismatch")]


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("not_pae", lambda b: b"XX" + b),
        ("length_lies", lambda b: b.replace(b" {", b"0 {", 1)),
        ("bom_type", lambda b: pae("application/vnd.pcfx.bom+json", b.split(b" ", 4)[4])),
        ("not_json", lambda b: pae(PAYLOAD_FOOTPRINT, b"{not json")),
        ("extra_key", lambda b: pae(PAYLOAD_FOOTPRINT, b.split(b" ", 4)[4][:-1] + b',"x":1}')),
        (
            "duplicate_key",
            lambda b: pae(PAYLOAD_FOOTPRINT, b.split(b" ", 4)[4][:-1] + b',"sequence":3}'),
        ),
    ],
)
def test_a_body_that_is_not_a_signed_footprint_is_refused_at_signed_body(
    name: str, make: Callable[[bytes], bytes]
) -> None:
    datum = v2_datum(make(body_of(copy.deepcopy(FOOTPRINT_JSON))))
    assert read_footprint(datum) is None
    model = from_avro_dict(SignedFootprint, datum)
    assert not model.ok
    assert model.violations[0].path in ("signedBody", "payloadType"), model.violations


def test_a_body_out_of_canonical_form_goes_the_models_way_and_is_accepted() -> None:
    """Whitespace is legal JSON: the model reads it; only the fast path steps aside."""
    body = {"keyId": "k1", "payload": FOOTPRINT_JSON, "sequence": 3, "supplierId": SUPPLIER}
    datum = v2_datum(pae(PAYLOAD_FOOTPRINT, orjson.dumps(body, option=orjson.OPT_INDENT_2)))
    assert read_footprint(datum) is None
    assert from_avro_dict(SignedFootprint, datum).ok


def _ext(d: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = d["extensions"][0]["data"]
    return data


VALID_VARIANTS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("as_is", lambda d: None),
    ("no_primary_share", lambda d: d["pcf"].pop("primaryDataShare")),
    ("mass_zero", lambda d: d["pcf"].update(productMassPerDeclaredUnit="0")),
    ("no_uncertainty", lambda d: _ext(d).pop("uncertainty")),
    (
        "interval_only",
        lambda d: _ext(d).update(uncertainty={"lower95": "50", "upper95": "70.5"}),
    ),
    ("no_extension", lambda d: d.pop("extensions")),
    ("upper_case_id", lambda d: d.update(id=d["id"].upper())),
]


@pytest.mark.parametrize(
    "mutate", [c[1] for c in VALID_VARIANTS], ids=[c[0] for c in VALID_VARIANTS]
)
def test_the_roll_up_input_is_the_same_from_the_json_and_from_the_model(
    mutate: Callable[[dict[str, Any]], Any],
) -> None:
    data = copy.deepcopy(FOOTPRINT_JSON)
    mutate(data)
    accepted, model = both_paths(data)
    assert accepted and model.ok
    fp = parse_footprint(data)
    assert core_footprint_pact(
        data, sequence=2, content_hash="h", supplier=SUPPLIER
    ) == core_footprint(fp, sequence=2, content_hash="h", supplier=SUPPLIER)


def test_a_signed_footprint_reads_the_same_in_v1_and_v2(private_key: Ed25519PrivateKey) -> None:
    signed = sign(
        private_key, parse_footprint(FOOTPRINT_JSON), supplier_id=SUPPLIER, key_id="k", sequence=5
    )
    assert isinstance(signed, SignedFootprint) and signed.signed_body is not None
    opened = open_signed_body(signed.signed_body)
    assert not isinstance(opened, Exception) and isinstance(opened, tuple)
    v1 = signed.model_copy(update={"signed_body": None})
    v2_wire = to_avro_dict(signed)
    assert v2_wire["footprint"] is None and v2_wire["signedBody"] == signed.signed_body
    assert to_avro_dict(v1)["footprint"] is not None


# -- generated mutations ---------------------------------------------------------------------

TRICKY: list[Any] = [
    None,
    "",
    " ",
    "0",
    "-0",
    "+0",
    "-0.0",
    "1",
    "-1",
    "5",
    "5.0001",
    "100",
    "100.0",
    "100.1",
    "1e5",
    "1.",
    "٦",
    "x" * 1_001,
    "AR6",
    "AR",
    "CN",
    "CN-GD",
    "cn",
    "Other",
    "PEF",
    "Active",
    "kilogram",
    "urn:a:b",
    "urn:",
    "https://x.example/y",
    "2025-02-30T00:00:00Z",
    "2024-01-01T00:00:00Z",
    "2030-01-01T00:00:00+08:00",
    "2025-01-01T00:00:00",
    "3f7a9c1e-5b2d-4e8f-9a6b-0c1d2e3f4a5b",
    0,
    1,
    1.5,
    True,
    False,
    [],
    {},
    ["urn:a:b"],
    ["urn:a:b", "urn:a:b"],
    {"grade": "CORE"},
]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


PATHS = _paths(FOOTPRINT_JSON)


def _mutated(path: tuple[Any, ...], action: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(FOOTPRINT_JSON)
    parent: Any = data
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if action == "delete":
        del parent[last]
    elif action == "add" and isinstance(parent, dict):
        parent[f"{last}X"] = value
    else:
        parent[last] = value
    return data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.sampled_from(PATHS),
    action=st.sampled_from(["set", "set", "set", "delete", "add"]),
    value=st.sampled_from(TRICKY),
)
def test_fast_accepts_only_what_the_model_accepts(
    path: tuple[Any, ...], action: str, value: Any
) -> None:
    payload = _mutated(path, action, value)
    assert footprint_ok(payload) <= check_footprint(copy.deepcopy(payload)).ok
    accepted, model = both_paths(payload)  # asserts fast => model on the whole record
    if not model.ok:
        assert not accepted


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=st.tuples(st.sampled_from(PATHS), st.sampled_from(["set", "delete"])),
    second=st.tuples(st.sampled_from(PATHS), st.sampled_from(["set", "delete"])),
    values=st.tuples(st.sampled_from(TRICKY), st.sampled_from(TRICKY)),
)
def test_two_mutations_at_once_fast_accepts_only_what_the_model_accepts(
    first: tuple[tuple[Any, ...], str], second: tuple[tuple[Any, ...], str], values: tuple[Any, Any]
) -> None:
    """Cross-field rules (periods, geographies, packaging, CCS, uncertainty) need two changes."""
    payload = _mutated(first[0], first[1], values[0])
    try:
        payload = _apply(payload, second[0], second[1], values[1])
    except (KeyError, IndexError, TypeError):
        return  # the first change removed what the second one names
    assert footprint_ok(payload) <= check_footprint(copy.deepcopy(payload)).ok


def _apply(data: dict[str, Any], path: tuple[Any, ...], action: str, value: Any) -> dict[str, Any]:
    parent: Any = data
    for step in path[:-1]:
        parent = parent[step]
    if action == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return data


# -- the generated checks, kind by kind --------------------------------------------------------

_DECIMAL_TYPES: list[tuple[str, Any]] = [
    ("any", AnyDecimal),
    ("non_neg", NonNegDecimal),
    ("positive", PositiveDecimal),
    ("neg_or_zero", NegOrZeroDecimal),
    ("percent", PercentDecimal),
    ("one_to_five", DecimalOneToFive),
]
_DECIMAL_TEXT = st.one_of(
    st.from_regex(r"[+-]?[0-9]{1,3}(\.[0-9]{1,3})?", fullmatch=True),
    st.sampled_from(["0", "-0", "+0", "-0.0", "100", "100.0", "100.000001", "1", "5", "5.0"]),
    st.sampled_from(["0.99999", "1e2", "1.", ".5", "٣", " 1", "", "x", "9" * 65]),
    st.integers(-3, 3),
    st.floats(-2, 2, allow_nan=False),
    st.none(),
)


def _accepts(adapter: TypeAdapter[Any], value: Any) -> bool:
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(("kind", "annotated"), _DECIMAL_TYPES, ids=[k for k, _ in _DECIMAL_TYPES])
@settings(max_examples=120, deadline=None)
@given(value=_DECIMAL_TEXT)
def test_each_decimal_kind_accepts_only_what_its_pydantic_type_accepts(
    kind: str, annotated: Any, value: Any
) -> None:
    check = compile_object(Obj({"x": Dec(kind)}, required=frozenset({"x"})))
    assert check({"x": value}) <= _accepts(TypeAdapter(annotated), value)
    if isinstance(value, str) and len(value) <= 64:
        # decimal text: the two agree both ways (the fast path takes every valid decimal)
        assert check({"x": value}) == _accepts(TypeAdapter(annotated), value)


@settings(max_examples=120, deadline=None)
@given(
    value=st.one_of(
        st.from_regex(
            r"20[0-9]{2}-[01][0-9]-[0-3][0-9][Tt][0-2][0-9]:[0-5][0-9]:[0-6][0-9](\.[0-9]{1,9})?"
            r"([Zz]|[+-][01][0-9]:[0-5][0-9])",
            fullmatch=True,
        ),
        st.sampled_from(
            ["2025-01-01T00:00:00", "2025-01-01 00:00:00Z", "", "2025-02-29T00:00:00Z"]
        ),
    )
)
def test_an_instant_is_accepted_only_when_the_model_reads_it(value: str) -> None:
    check = compile_object(Obj({"at": Instant()}, required=frozenset({"at"})))
    assert check({"at": value}) == _accepts(TypeAdapter(UtcDateTime), value)


def test_an_object_rule_table_knows_required_not_null_and_unknown_fields() -> None:
    check = compile_object(
        Obj(
            {"a": Str(1, 3), "b": Str(0, 3), "c": List(Str(1, 9), 1, 3, fold_case=True)},
            required=frozenset({"a"}),
            not_null=frozenset({"b"}),
            post=lambda d: d["a"] != "no",
            name="demo",
        )
    )
    assert check({"a": "x"}) and check({"a": "x", "c": None}) and check({"a": "x", "b": ""})
    assert not check({"a": None})  # required: not null
    assert not check({"b": "x"})  # required: present
    assert not check({"a": "x", "b": None})  # not_null: absent or a value
    assert not check({"a": "x", "d": 1})  # an unknown field
    assert not check({"a": "abcd"})  # too long
    assert not check({"a": "no"})  # the cross-field rule
    assert not check({"a": "x", "c": ["A", "a"]})  # unique, ignoring case
    assert not check({"a": "x", "c": []}) and not check({"a": "x", "c": ["a", "b", "c", "d"]})
    assert not check(["a"]) and not check(None)
    with pytest.raises(ValueError, match="name no field"):
        Obj({"a": Str(0, 1)}, required=frozenset({"z"}))
    with pytest.raises(ValueError, match="Dec kind"):
        Dec("negative")


def test_the_footprint_validator_is_generated_code_from_the_rule_table() -> None:
    source = source_of(footprint_ok)
    for name in FOOTPRINT_RULES.fields:
        assert repr(name) in source
    assert "def footprint" in source and "def pcf" in source and "def extension" in source
