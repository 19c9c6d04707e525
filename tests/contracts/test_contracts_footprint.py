"""PACT v3 footprint rules: every named bad input is refused with its path, code and a message."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter

from pcf_exchange.contracts import (
    PCFX_EXTENSION_SCHEMA,
    CheckResult,
    DataGrade,
    PilotCategory,
    ProductFootprint,
    ValidationFailed,
    check_footprint,
    dump_pact_json,
    parse_footprint,
    to_pact_json,
)
from pcf_exchange.contracts._jsonio import loads
from pcf_exchange.contracts._types import MAX_DECIMAL_CHARS, AnyDecimal, format_decimal

_DECIMAL: TypeAdapter[Decimal] = TypeAdapter(AnyDecimal)


def codes(result: CheckResult[Any]) -> set[tuple[str, str]]:
    return {(v.path, v.code) for v in result.violations}


def test_valid_footprint_parses_with_exact_decimals(footprint: ProductFootprint) -> None:
    assert footprint.pcf.pcf_excluding_biogenic_uptake == Decimal("61.40")
    assert str(footprint.pcf.pcf_excluding_biogenic_uptake) == "61.40"
    assert isinstance(footprint.pcf.fossil_ghg_emissions, Decimal)
    assert footprint.pcfx is not None
    assert footprint.pcfx.pilot_category is PilotCategory.LITHIUM_BATTERY
    assert footprint.pcfx.field_labels is not None
    assert footprint.pcfx.field_labels["productIds[*]"].grade is DataGrade.GENERAL
    assert footprint.extensions is None  # ours moved into .pcfx
    assert to_pact_json(footprint)["pcf"]["productMassPerDeclaredUnit"] == "5.50"


def test_records_are_frozen(footprint: ProductFootprint) -> None:
    with pytest.raises(Exception, match="frozen"):
        footprint.status = "Deprecated"  # type: ignore[misc]
    changed = footprint.model_copy(update={"status": "Deprecated"})
    assert changed.status == "Deprecated" and footprint.status == "Active"


# -- decimals ---------------------------------------------------------------------------------

DECIMAL_CASES: list[tuple[str, Any, str]] = [
    ("json_number_float", 61.4, "decimal_type"),
    ("json_number_int", 61, "decimal_type"),
    ("boolean", True, "decimal_type"),
    ("exponent", "6.14e1", "decimal_pattern"),
    ("nan_text", "NaN", "decimal_pattern"),
    ("infinity_text", "Infinity", "decimal_pattern"),
    ("comma", "61,4", "decimal_pattern"),
    ("spaces", " 61.4", "decimal_pattern"),
    ("trailing_dot", "61.", "decimal_pattern"),
    ("unicode_digits", "٦١", "decimal_pattern"),
    ("too_long", "1" * 65, "max_length"),
    ("null", None, "decimal_type"),
]


@pytest.mark.parametrize(
    ("value", "code"), [c[1:] for c in DECIMAL_CASES], ids=[c[0] for c in DECIMAL_CASES]
)
def test_bad_decimal_is_refused_with_path(
    footprint_json: dict[str, Any], value: Any, code: str
) -> None:
    footprint_json["pcf"]["pcfExcludingBiogenicUptake"] = value
    result = check_footprint(footprint_json)
    assert not result.ok
    assert ("pcf.pcfExcludingBiogenicUptake", code) in codes(result)


def test_json_number_message_tells_the_supplier_what_to_do(footprint_json: dict[str, Any]) -> None:
    footprint_json["pcf"]["fossilGhgEmissions"] = 1.5
    with pytest.raises(ValidationFailed) as info:
        parse_footprint(footprint_json)
    message = str(info.value)
    assert "'pcf.fossilGhgEmissions'" in message
    assert 'decimal string such as "1.50", not a JSON number' in message
    assert "(got 1.5)" in message


def test_nan_literal_in_json_text_is_refused() -> None:
    result = check_footprint(b'{"id": NaN}')
    assert [(v.code, v.got) for v in result.violations] == [("json_constant", "'NaN'")]


def test_json_number_from_text_is_refused(footprint_json: dict[str, Any]) -> None:
    text = dump_pact_json(parse_footprint(footprint_json)).replace(
        '"declaredUnitAmount":"1"', '"declaredUnitAmount":1'
    )
    assert ("pcf.declaredUnitAmount", "decimal_type") in codes(check_footprint(text))


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("declaredUnitAmount", "0", "min_value"),
        ("declaredUnitAmount", "-1", "min_value"),
        ("fossilGhgEmissions", "-0.1", "min_value"),
        ("fossilGhgEmissions", "-0", "min_value"),
        ("biogenicCO2Uptake", "0.5", "max_value"),
        ("exemptedEmissionsPercent", "100.5", "range"),
        ("primaryDataShare", "-1", "range"),
    ],
)
def test_decimal_bounds(footprint_json: dict[str, Any], field: str, value: str, code: str) -> None:
    footprint_json["pcf"][field] = value
    assert (f"pcf.{field}", code) in codes(check_footprint(footprint_json))


@pytest.mark.parametrize(
    "text", ["1.50", "0.000", "+2.5", "-0.10", "123456789012345678901234567890.123456789"]
)
def test_decimal_digits_survive_json_round_trip(footprint_json: dict[str, Any], text: str) -> None:
    footprint_json["pcf"]["pcfIncludingBiogenicUptake"] = text
    footprint_json["pcf"].pop("biogenicCO2Uptake")
    out = to_pact_json(parse_footprint(footprint_json))["pcf"]["pcfIncludingBiogenicUptake"]
    assert out == text.lstrip("+")


def test_dqr_range(footprint_json: dict[str, Any]) -> None:
    footprint_json["pcf"]["dqi"]["temporalDQR"] = "5.5"
    assert ("pcf.dqi.temporalDQR", "range") in codes(check_footprint(footprint_json))


# -- identifiers, enums, patterns ------------------------------------------------------------

FIELD_CASES: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    ("id_not_uuid", lambda d: d.update(id="12345"), "id", "uuid"),
    ("spec_version_pattern", lambda d: d.update(specVersion="3.0"), "specVersion", "spec_version"),
    ("spec_version_v2", lambda d: d.update(specVersion="2.3.0"), "specVersion", "spec_version"),
    ("status_enum", lambda d: d.update(status="Retired"), "status", "enum"),
    ("company_ids_empty", lambda d: d.update(companyIds=[]), "companyIds", "min_items"),
    ("company_id_not_urn", lambda d: d.update(companyIds=["uscc:9135"]), "companyIds[0]", "urn"),
    (
        "product_ids_repeat",
        lambda d: d.update(productIds=["urn:a:1", "urn:a:1"]),
        "productIds",
        "unique_items",
    ),
    ("company_name_empty", lambda d: d.update(companyName=""), "companyName", "min_length"),
    (
        "created_naive",
        lambda d: d.update(created="2025-03-01T08:00:00"),
        "created",
        "datetime_format",
    ),
    ("created_date_only", lambda d: d.update(created="2025-03-01"), "created", "datetime_format"),
    (
        "created_bad_day",
        lambda d: d.update(created="2025-02-30T00:00:00Z"),
        "created",
        "datetime_format",
    ),
    ("missing_pcf", lambda d: d.pop("pcf"), "pcf", "required"),
    (
        "declared_unit_enum",
        lambda d: d["pcf"].update(declaredUnitOfMeasurement="ton"),
        "pcf.declaredUnitOfMeasurement",
        "enum",
    ),
    (
        "ipcc_pattern",
        lambda d: d["pcf"].update(ipccCharacterizationFactors=["AR6", "SAR"]),
        "pcf.ipccCharacterizationFactors[1]",
        "ipcc_report",
    ),
    (
        "ipcc_empty",
        lambda d: d["pcf"].update(ipccCharacterizationFactors=[]),
        "pcf.ipccCharacterizationFactors",
        "min_items",
    ),
    (
        "country_code",
        lambda d: d["pcf"].update(geographyCountrySubdivision="cn-fj"),
        "pcf.geographyCountrySubdivision",
        "subdivision_code",
    ),
    (
        "packaging_bool_string",
        lambda d: d["pcf"].update(packagingEmissionsIncluded="true"),
        "pcf.packagingEmissionsIncluded",
        "type",
    ),
    (
        "rule_operator",
        lambda d: d["pcf"]["productOrSectorSpecificRules"][0].update(operator="PCR"),
        "pcf.productOrSectorSpecificRules[0].operator",
        "enum",
    ),
    (
        "ccu_uri",
        lambda d: d["pcf"].update(ccuCreditCertification="not a uri"),
        "pcf.ccuCreditCertification",
        "uri",
    ),
    (
        "verification_coverage",
        lambda d: d["pcf"]["verification"].update(coverage="corporate level"),
        "pcf.verification.coverage",
        "enum",
    ),
    ("comment_too_long", lambda d: d.update(comment="x" * 20_001), "comment", "max_length"),
]


@pytest.mark.parametrize(
    ("mutate", "path", "code"), [c[1:] for c in FIELD_CASES], ids=[c[0] for c in FIELD_CASES]
)
def test_field_rule(
    footprint_json: dict[str, Any], mutate: Callable[[dict[str, Any]], None], path: str, code: str
) -> None:
    mutate(footprint_json)
    result = check_footprint(footprint_json)
    assert (path, code) in codes(result), result.violations


def test_oversized_string_reports_length_not_content(footprint_json: dict[str, Any]) -> None:
    footprint_json["productDescription"] = "x" * 10_000_000
    (violation,) = check_footprint(footprint_json).violations
    assert violation.got == "10000000 characters"
    assert len(str(violation)) < 200


# -- cross-field rules -----------------------------------------------------------------------

CROSS_CASES: list[tuple[str, Callable[[dict[str, Any]], Any], str, str]] = [
    (
        "two_geographies",
        lambda d: d["pcf"].update(geographyCountry="CN"),
        "pcf.geographyCountrySubdivision",
        "geography_one_of",
    ),
    (
        "region_and_country",
        lambda d: (
            d["pcf"].pop("geographyCountrySubdivision"),
            d["pcf"].update(geographyRegionOrSubregion="Eastern Asia", geographyCountry="CN"),
        ),
        "pcf.geographyCountry",
        "geography_one_of",
    ),
    (
        "reference_period_order",
        lambda d: d["pcf"].update(referencePeriodEnd="2023-12-31T00:00:00Z"),
        "pcf.referencePeriodEnd",
        "period_order",
    ),
    (
        "validity_order",
        lambda d: d.update(validityPeriodEnd="2024-12-01T00:00:00Z"),
        "validityPeriodEnd",
        "period_order",
    ),
    (
        "validity_start_before_reference_end",
        lambda d: d.update(validityPeriodStart="2024-06-01T00:00:00Z"),
        "validityPeriodStart",
        "validity_window",
    ),
    (
        "validity_end_after_three_years",
        lambda d: d.update(validityPeriodEnd="2028-01-01T00:00:01Z"),
        "validityPeriodEnd",
        "validity_window",
    ),
    (
        "preceding_self",
        lambda d: d["precedingPfIds"].append(d["id"]),
        "precedingPfIds[1]",
        "self_reference",
    ),
    (
        "packaging_excluded_but_given",
        lambda d: d["pcf"].update(packagingEmissionsIncluded=False),
        "pcf.packagingGhgEmissions",
        "forbidden_if",
    ),
    (
        "ccs_excluded_but_given",
        lambda d: d["pcf"].update(ccsTechnologicalCO2Capture="-1"),
        "pcf.ccsTechnologicalCO2Capture",
        "forbidden_if",
    ),
    (
        "other_operator_missing",
        lambda d: d["pcf"]["productOrSectorSpecificRules"][0].pop("otherOperatorName"),
        "pcf.productOrSectorSpecificRules[0].otherOperatorName",
        "required_if",
    ),
    (
        "uncertainty_bounds",
        lambda d: d["extensions"][0]["data"]["uncertainty"].update(lower95="80"),
        "extensions[0].data.uncertainty.upper95",
        "range",
    ),
    (
        "uncertainty_half_interval",
        lambda d: d["extensions"][0]["data"]["uncertainty"].pop("upper95"),
        "extensions[0].data.uncertainty.upper95",
        "required_if",
    ),
    (
        "pilot_category",
        lambda d: d["extensions"][0]["data"].update(pilotCategory="BATTERY"),
        "extensions[0].data.pilotCategory",
        "enum",
    ),
    (
        "stage_name",
        lambda d: d["extensions"][0]["data"]["stageBreakdown"].update({"End of life": "1"}),
        'extensions[0].data.stageBreakdown["End of life"]',
        "stage_name",
    ),
    (
        "field_label_grade",
        lambda d: d["extensions"][0]["data"]["fieldLabels"]["productIds[*]"].update(grade="SECRET"),
        'extensions[0].data.fieldLabels["productIds[*]"].grade',
        "enum",
    ),
    ("top_level_pcfx", lambda d: d.update(pcfx={}), "pcfx", "unknown_field"),
]


@pytest.mark.parametrize(
    ("mutate", "path", "code"), [c[1:] for c in CROSS_CASES], ids=[c[0] for c in CROSS_CASES]
)
def test_cross_field_rule(
    footprint_json: dict[str, Any], mutate: Callable[[dict[str, Any]], Any], path: str, code: str
) -> None:
    mutate(footprint_json)
    result = check_footprint(footprint_json)
    assert (path, code) in codes(result), result.violations


def test_validity_end_exactly_three_years_is_allowed(footprint_json: dict[str, Any]) -> None:
    footprint_json["validityPeriodEnd"] = "2028-01-01T00:00:00Z"
    assert check_footprint(footprint_json).ok


def test_all_violations_reported_at_once(footprint_json: dict[str, Any]) -> None:
    footprint_json["id"] = "not-a-uuid"
    footprint_json["pcf"]["pcfExcludingBiogenicUptake"] = 1.5
    footprint_json["pcf"]["declaredUnitAmount"] = "0"
    footprint_json["pcf"]["geographyCountry"] = "CN"
    footprint_json["pcf"]["pCfExcludingBiogenicUptake"] = "1"
    footprint_json["extensions"][0]["data"]["pilotCategory"] = "X"
    with pytest.raises(ValidationFailed) as info:
        parse_footprint(footprint_json)
    got = {(v.path, v.code) for v in info.value.violations}
    assert got == {
        ("id", "uuid"),
        ("pcf.pcfExcludingBiogenicUptake", "decimal_type"),
        ("pcf.declaredUnitAmount", "min_value"),
        ("pcf.geographyCountrySubdivision", "geography_one_of"),
        ("pcf.pCfExcludingBiogenicUptake", "unknown_field"),
        ("extensions[0].data.pilotCategory", "enum"),
    }
    assert "did you mean 'pcfExcludingBiogenicUptake'?" in str(info.value)
    assert info.value.to_dict()["violations"][0]["path"] == "id"


def test_unknown_field_suggests_the_right_name(footprint_json: dict[str, Any]) -> None:
    footprint_json["pcf"]["fossilGHGEmissions"] = footprint_json["pcf"].pop("fossilGhgEmissions")
    messages = {v.path: v.message for v in check_footprint(footprint_json).violations}
    assert "did you mean 'fossilGhgEmissions'?" in messages["pcf.fossilGHGEmissions"]
    assert messages["pcf.fossilGhgEmissions"] == "is required"


def test_foreign_extension_paths_keep_sender_indices(footprint_json: dict[str, Any]) -> None:
    foreign = {"specVersion": "2.0.0", "dataSchema": "not a uri", "data": {"w": 1}}
    footprint_json["extensions"].insert(0, foreign)
    footprint_json["extensions"][1]["data"]["pilotCategory"] = "X"
    assert codes(check_footprint(footprint_json)) == {
        ("extensions[0].dataSchema", "uri"),
        ("extensions[1].data.pilotCategory", "enum"),
    }


# -- warnings (legal but suspicious) ----------------------------------------------------------


def test_sum_mismatch_is_a_warning_not_a_rejection(footprint_json: dict[str, Any]) -> None:
    footprint_json["pcf"]["biogenicCO2Uptake"] = "-1.5"
    result = check_footprint(footprint_json)
    assert result.ok
    assert {(w.path, w.code) for w in result.warnings} == {
        ("pcf.pcfIncludingBiogenicUptake", "sum_mismatch")
    }


def test_sum_compared_at_stated_precision(footprint_json: dict[str, Any]) -> None:
    footprint_json["pcf"]["pcfIncludingBiogenicUptake"] = "59.9"  # 61.40 - 1.46 = 59.94 -> 59.9
    footprint_json["pcf"]["biogenicCO2Uptake"] = "-1.46"
    assert check_footprint(footprint_json).warnings == ()


def test_sum_of_figures_with_many_digits_is_checked_not_crashed(
    footprint_json: dict[str, Any],
) -> None:
    # 41 significant digits: the contract allows 64 characters, decimal's default context
    # rounds to 28 (and raised InvalidOperation here before)
    long = "61.400000000000000000000000000000000000001"
    footprint_json["pcf"]["pcfExcludingBiogenicUptake"] = long
    footprint_json["pcf"]["pcfIncludingBiogenicUptake"] = long
    footprint_json["extensions"][0]["data"]["stageBreakdown"]["production"] = (
        "13.200000000000000000000000000000000000001"  # and the stages add up to it
    )
    assert check_footprint(footprint_json).warnings == ()
    footprint_json["pcf"]["pcfIncludingBiogenicUptake"] = long[:-1] + "2"
    assert {(w.path, w.code) for w in check_footprint(footprint_json).warnings} == {
        ("pcf.pcfIncludingBiogenicUptake", "sum_mismatch")
    }


@given(st.integers(-(10**50), 10**50), st.integers(-90, 5))
def test_a_decimal_is_written_in_at_most_64_characters(digits: int, exponent: int) -> None:
    value = Decimal(digits).scaleb(exponent)  # up to 50 significant digits, as a roll-up keeps
    text = format_decimal(value)
    assert len(text) <= MAX_DECIMAL_CHARS
    assert Decimal(text) == value or len(format(value, "f")) > MAX_DECIMAL_CHARS
    # only digits that do not fit are rounded: at most half a unit of the last one written
    last = Decimal(text).as_tuple().exponent
    assert isinstance(last, int)
    assert abs(Decimal(text) - value) <= Decimal(5).scaleb(last - 1)
    assert _DECIMAL.validate_python(text) == Decimal(text)  # what every reader accepts


def test_a_decimal_too_big_for_64_characters_is_refused() -> None:
    with pytest.raises(ValueError, match="64 characters"):
        format_decimal(Decimal("1e70"))


def test_extension_warnings(footprint_json: dict[str, Any]) -> None:
    data = footprint_json["extensions"][0]["data"]
    data["stageBreakdown"]["distribution"] = "1.00"
    data["uncertainty"].update(lower95="62", upper95="70")
    result = check_footprint(footprint_json)
    assert {(w.path, w.code) for w in result.warnings} == {
        ("extensions[0].data.stageBreakdown", "sum_mismatch"),
        ("extensions[0].data.uncertainty", "interval_excludes_value"),
    }


def test_other_operator_name_with_pef_is_a_warning(footprint_json: dict[str, Any]) -> None:
    footprint_json["pcf"]["productOrSectorSpecificRules"][0]["operator"] = "PEF"
    result = check_footprint(footprint_json)
    assert result.ok
    assert [(w.path, w.code) for w in result.warnings] == [
        ("pcf.productOrSectorSpecificRules[0].otherOperatorName", "ignored_field")
    ]


# -- instants -----------------------------------------------------------------------------


def test_offsets_are_normalised_to_utc(footprint_json: dict[str, Any]) -> None:
    footprint_json["created"] = "2025-03-01T16:00:00+08:00"
    footprint_json["pcf"]["referencePeriodStart"] = "2024-01-01T08:00:00.123456789+08:00"
    fp = parse_footprint(footprint_json)
    assert to_pact_json(fp)["created"] == "2025-03-01T08:00:00Z"
    assert to_pact_json(fp)["pcf"]["referencePeriodStart"] == "2024-01-01T00:00:00.123456Z"


def test_pcfx_extension_is_written_back(footprint: ProductFootprint) -> None:
    out = to_pact_json(footprint)
    (ext,) = out["extensions"]
    assert ext["dataSchema"] == PCFX_EXTENSION_SCHEMA
    assert ext["data"]["stageBreakdown"] == {
        "raw_material_acquisition": "48.20",
        "production": "13.20",
    }
    assert loads(dump_pact_json(footprint)) == out


def test_foreign_extension_numbers_stay_exact(footprint_json: dict[str, Any]) -> None:
    text = (
        b'{"specVersion": "2.0.0", "dataSchema": "https://example.org/s.json",'
        b' "data": {"weight": 10.50, "count": 3, "big": 1e400}}'
    )
    footprint_json["extensions"].append(loads(text))
    fp = parse_footprint(footprint_json)
    assert '"data":{"weight":10.50,"count":3,"big":1E+400}' in dump_pact_json(fp)


def test_valid_until_defaults_to_three_years(footprint_json: dict[str, Any]) -> None:
    footprint_json.pop("validityPeriodEnd")
    assert parse_footprint(footprint_json).valid_until.isoformat() == "2028-01-01T00:00:00+00:00"


def test_kilogram_footprint_mass_is_checked(footprint_json: dict[str, Any]) -> None:
    footprint_json["pcf"].update(declaredUnitOfMeasurement="kilogram", declaredUnitAmount="2")
    footprint_json["pcf"]["productMassPerDeclaredUnit"] = "2.0"
    assert check_footprint(footprint_json).warnings == ()
    footprint_json["pcf"]["productMassPerDeclaredUnit"] = "1"
    (warning,) = check_footprint(footprint_json).warnings
    assert (warning.path, warning.code) == ("pcf.productMassPerDeclaredUnit", "mass_mismatch")
