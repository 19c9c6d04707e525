"""The internal-topic codec rebuilds every message and state exactly (digits and types)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from pcf_exchange.streams.codec import (
    CodecError,
    decode,
    decode_message,
    decode_pack,
    encode,
    encode_layout0,
    encode_message,
    encode_message_layout0,
    encode_pack,
)
from pcf_exchange.streams.rollup import (
    ComponentState,
    Network,
    OwnProcess,
    ProductRolledUp,
    Ref,
    Subscribe,
    offered,
)
from tests.streams._rollup_scenarios import Scenario, scenarios


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(max_tiers=5))
def test_every_message_and_state_round_trips(scenario: Scenario) -> None:
    network = Network()
    seen: list[Any] = []
    original_apply = network.apply

    def apply(message: Any) -> Any:
        seen.append(message)
        step = original_apply(message)
        seen.extend(step.outputs)
        seen.extend(offered(m) for m in step.outputs if isinstance(m, ProductRolledUp))
        return step

    network.apply = apply  # type: ignore[method-assign]
    network.submit(*scenario.messages())
    network.run(max_messages=100_000)
    seen.extend(network.components.values())
    seen.extend(network.products.values())
    for item in seen:
        again = decode_message(encode_message(item))
        assert again == item
        assert encode_message(again) == encode_message(item), "stable bytes"
        # what workers wrote before layout 1 (a changelog from before the upgrade) reads the same
        assert decode_message(encode_message_layout0(item)) == item


def test_decimals_keep_their_exponent() -> None:
    value = (Decimal("1.50"), Decimal("0E-7"), Decimal("-12345678901234567890.123456789"))
    assert decode(tuple[Decimal, ...], encode(value)) == value
    assert [str(d) for d in decode(tuple[Decimal, ...], encode(value))] == [str(d) for d in value]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "not JSON"),
        (b'{"@type": "os.system"}', r"'\$\.@type' must be one of"),
        (
            b'{"@type": "Subscribe", "child": {"kind": "product", "id": 7}}',
            r"'\$\.child\.id' must be str \(got 7\)",
        ),
        (b'{"@type": "ChildValue", "parent": "p"}', r"'\$\.child' is required"),
        (
            b'{"@type": "Subscribe", "child": {"kind": "bogus", "id": "x"},'
            b' "parent": "p", "revision": 1}',
            r"'\$\.child\.kind' must be one of 'product', 'factor' \(got 'bogus'\)",
        ),
    ],
)
def test_bad_bytes_raise_codec_error_naming_the_field(data: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        decode_message(data)


def test_a_value_its_class_refuses_is_a_codec_error_naming_the_field() -> None:
    with pytest.raises(CodecError, match=r"'\$' is not a valid OwnProcess: .*directKgCO2e"):
        decode(OwnProcess, b'{"direct_kgco2e": "-1"}')


def test_a_plain_value_round_trips() -> None:
    assert decode(Ref, encode(Ref.factor("bg:cn-grid-2022"))) == Ref.factor("bg:cn-grid-2022")


def test_bytes_travel_as_base64_and_bad_base64_names_the_field() -> None:
    value = (b"\x00\xff framed Avro", b"")
    assert encode(value) == b'\x01["AP8gZnJhbWVkIEF2cm8=",""]'
    assert decode(tuple[bytes, ...], encode(value)) == value
    for layout in (b"", b"\x01"):
        with pytest.raises(CodecError, match=r"'\$\[1\]' must be base64 text \(got '!!'\)"):
            decode(tuple[bytes, ...], layout + b'["AA==","!!"]')
        with pytest.raises(CodecError, match=r"'\$\[0\]' must be base64 text \(got 7\)"):
            decode(tuple[bytes, ...], layout + b"[7]")


def test_layout_1_has_no_field_names_and_writes_a_long_string_once() -> None:
    ref = Ref.product("urn:pact:product:cell-2170")
    data = encode(Subscribe(ref, "urn:pact:product:cell-2170", 3))
    assert data == b'\x01[["product","urn:pact:product:cell-2170"],0,3]'
    assert decode(Subscribe, data) == Subscribe(ref, "urn:pact:product:cell-2170", 3)
    # trailing fields equal to their defaults are left out, and read back as the defaults
    assert encode(ComponentState(Ref.factor("bg:x"))) == b'\x01[["factor","bg:x"]]'
    assert decode(ComponentState, b'\x01[["factor","bg:x"]]') == ComponentState(Ref.factor("bg:x"))


@pytest.mark.parametrize(
    ("data", "message", "path"),
    [
        (b"\x01[70,[]]", r"'\$\[0\]' must be one of \[.*\] \(got 70\)", "$[0]"),
        (b"\x01[5,[]]", r"'\$\[1\]\.child' is required", "$[1].child"),
        (b'\x01[5,[["product",7],"p",1]]', r"'\$\[1\]\.child\.id' must be str \(got 7\)",
         "$[1].child.id"),
        (b'\x01[5,[["bogus","x"],"p",1]]',
         r"'\$\[1\]\.child\.kind' must be one of 'product', 'factor' \(got 'bogus'\)",
         "$[1].child.kind"),
        (b'\x01[5,[["product","x"],5,1]]', r"'\$\[1\]\.parent' must be str \(got 5\)",
         "$[1].parent"),
        (b'\x01[5,[["product","x"],"p",1,2]]', r"'\$\[1\]' must have at most 3 fields",
         "$[1]"),
        (b'\x01[[5,[["factor","x"],"p",1]],[5,[["product","x"],"p","one"]]]',
         r"'\$\[1\]\[1\]\.revision' must be int \(got 'one'\)", "$[1][1].revision"),
        (b"\x01{}", r"'\$' must be a list", "$"),
        (b"\x01[1", "not JSON", ""),
    ],
)  # fmt: skip
def test_bad_layout_1_bytes_name_the_field(data: bytes, message: str, path: str) -> None:
    with pytest.raises(CodecError, match=message) as caught:
        decode_pack(data)
    assert caught.value.path == path


def test_a_value_its_class_refuses_in_layout_1_names_the_field() -> None:
    with pytest.raises(CodecError, match=r"'\$' is not a valid OwnProcess: .*directKgCO2e"):
        decode(OwnProcess, b'\x01["-1"]')
    with pytest.raises(CodecError, match=r"'\$\.dqr' must be a list of keys and values"):
        decode(OwnProcess, b'\x01["1","0",null,null,["x"]]')
    with pytest.raises(CodecError, match=r"'\$\.direct_kgco2e' must be a decimal string"):
        decode(OwnProcess, b'\x01["x1"]')


def test_a_pack_round_trips_its_messages_in_order() -> None:
    messages = [
        ComponentState(Ref.product("urn:a")),
        Subscribe(Ref.factor("bg:x"), "urn:p", 2),
        ComponentState(Ref.factor("bg:y")),
    ]
    data = encode_pack(encode_message(m) for m in messages)
    assert decode_pack(data) == messages
    assert decode_pack(encode_pack([])) == []


def test_one_message_reads_as_a_pack_of_one() -> None:
    # what workers wrote before they packed messages: a worker upgraded mid-stream reads them
    message = Subscribe(Ref.factor("bg:x"), "urn:p", 2)
    assert decode_pack(encode_message(message)) == [message]
    assert decode_pack(encode_message_layout0(message)) == [message]


@pytest.mark.parametrize(
    ("data", "message", "path"),
    [
        (b"[1", "not JSON", ""),
        (b'{"@type": "ChildValue", "parent": "p"}', r"'\$\.child' is required", "$.child"),
        (b"7", r"'\$\.@type' must be one of", "$.@type"),
        (b'[{"@type": "Subscribe", "child": {"kind": "factor", "id": "x"}, "parent": "p",'
         b' "revision": 1}, {"@type": "nope"}]', r"'\$\[1\]\.@type' must be one of", "$[1].@type"),
        (b'[{"@type": "ChildValue", "parent": "p"}]', r"'\$\[0\]\.child' is required",
         "$[0].child"),
    ],
)  # fmt: skip
def test_a_bad_pack_names_the_message_and_field(data: bytes, message: str, path: str) -> None:
    with pytest.raises(CodecError, match=message) as caught:
        decode_pack(data)
    assert caught.value.path == path


def test_rows_written_before_identities_were_lazy_still_read() -> None:
    """A value's identity used to be two fields; a row an earlier worker wrote reads the same."""
    from pcf_exchange.streams.rollup import ProductState, compute_result

    network = Network()
    network.submit(*scenarios_example())
    network.run()
    for state in network.products.values():
        data = orjson.loads(encode_layout0(state))
        for _, slot in data["children"]:
            footprint_id, content_hash = slot["value"].pop("identity")
            slot["value"]["footprint_id"] = footprint_id
            slot["value"]["content_hash"] = content_hash
        data.pop("value")
        data["result"] = None  # (what old rows had; no longer read)
        again = decode(ProductState, orjson.dumps(data))
        assert again.children == state.children
        assert again.value is None  # (old rows kept the result instead: republished once)
        assert again.bom is not None
        values = {ref: slot.value for ref, slot in again.children.items()}
        assert compute_result(again.bom, values) == state.result  # lineage hashes as before


def scenarios_example() -> list[Any]:
    from pcf_exchange.streams.rollup import (
        Bom,
        BomDeclared,
        BomLine,
        ComponentFootprint,
        FootprintDeclared,
    )

    figures = {
        "pcfExcludingBiogenicUptake": Decimal("2.5"),
        "pcfIncludingBiogenicUptake": Decimal("2.5"),
        "fossilGhgEmissions": Decimal("2.5"),
    }
    return [
        FootprintDeclared(ComponentFootprint("cell", "fp-1", 1, "piece", Decimal(1), figures)),
        BomDeclared(Bom("module", 1, (BomLine("cell", Decimal(12), "piece"),))),
        BomDeclared(Bom("pack", 1, (BomLine("module", Decimal(8), "piece"),))),
    ]


def test_a_value_met_again_in_a_record_is_written_once_and_reads_back_as_one_object() -> None:
    from pcf_exchange.streams._rollup_step import NodeRecord, ProductRecord
    from pcf_exchange.streams.rollup import ProductState

    network = Network()
    network.submit(*scenarios_example())
    network.run()
    state = network.products["module"]
    component = network.components[Ref.product("module")]
    assert component.value is state.value  # the same object, three times in the row
    row = NodeRecord(component, ProductRecord(state))
    data = encode(row)
    assert data.count(b'"rolled_up"') == 1
    again = decode(NodeRecord, data)
    assert again == row
    assert again.component is not None and again.product is not None
    assert again.component.value is again.product.state.value
    assert encode(again) == data
    # a number that names no value read before is refused, naming the field
    bad = orjson.loads(data[1:])
    bad[0][6] = 7  # (the component's value field; 0 is the first value written)
    with pytest.raises(CodecError, match=r"'\$\.component\.value' must be a SourceValue or the"):
        decode(NodeRecord, b"\x01" + orjson.dumps(bad))
    assert isinstance(again.product.state, ProductState)
