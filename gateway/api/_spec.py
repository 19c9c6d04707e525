"""The normative PACT v3 OpenAPI document (a pinned copy ships beside this module) and JSON
Schema validators built from it, so incoming events are checked against the spec itself rather
than a hand-written approximation.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import yaml
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from pcf_exchange.contracts.errors import Violation

__all__ = [
    "PACT_OPENAPI_PATH",
    "PACT_SPEC_VERSION",
    "SpecValidator",
    "pact_openapi",
    "spec_validator",
]

PACT_OPENAPI_PATH: Final = Path(__file__).with_name("pact_v3_openapi.yaml")
"""Byte-for-byte copy of ``shared/pact/v3/openapi.yaml`` (a test keeps them equal)."""
PACT_SPEC_VERSION: Final = "3.0.3"

_DOC_URI: Final = "urn:pcf-exchange:pact-v3-openapi"
_DATE_TIME: Final = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)
_MAX_VIOLATIONS: Final = 20


@functools.cache
def pact_openapi() -> Mapping[str, Any]:
    """The parsed normative OpenAPI document (read once)."""
    document: Mapping[str, Any] = yaml.safe_load(PACT_OPENAPI_PATH.read_text(encoding="utf-8"))
    return document


def _format_checker() -> FormatChecker:
    """``uuid`` and RFC 3339 ``date-time``, without optional third-party format packages."""
    checker = FormatChecker(formats=())

    checker.checks("uuid", raises=ValueError)(_is_uuid)
    checker.checks("date-time", raises=ValueError)(_is_date_time)
    return checker


def _is_uuid(value: object) -> bool:
    return not isinstance(value, str) or (len(value) == 36 and bool(uuid.UUID(value)))


def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _DATE_TIME.match(value):
        return False
    datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    return True


def _path_of(parts: Any) -> str:
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


class SpecValidator:
    """Validates JSON values against schemas of the PACT v3 OpenAPI ``components.schemas``."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        resource = Resource.from_contents(dict(document), default_specification=DRAFT202012)
        self._registry: Registry[Any] = Registry().with_resource(_DOC_URI, resource)
        self._checker = _format_checker()
        self._validators: dict[str, Draft202012Validator] = {}

    def _validator(self, schema_name: str) -> Draft202012Validator:
        validator = self._validators.get(schema_name)
        if validator is None:
            ref = {"$ref": f"{_DOC_URI}#/components/schemas/{schema_name}"}
            validator = Draft202012Validator(
                ref, registry=self._registry, format_checker=self._checker
            )
            self._validators[schema_name] = validator
        return validator

    def violations(self, schema_name: str, instance: Any) -> list[Violation]:
        """Every way *instance* breaks ``components.schemas.<schema_name>`` (at most 20),
        each with the path as the sender wrote it."""
        found: list[Violation] = []
        errors = sorted(
            self._validator(schema_name).iter_errors(instance), key=lambda e: list(e.absolute_path)
        )
        for error in errors[:_MAX_VIOLATIONS]:
            found.append(
                Violation(
                    _path_of(error.absolute_path),
                    str(error.validator),
                    error.message if len(error.message) <= 200 else error.message[:197] + "...",
                )
            )
        return found


@functools.cache
def spec_validator() -> SpecValidator:
    """The shared validator over the pinned PACT v3 OpenAPI document."""
    return SpecValidator(pact_openapi())
