"""PACT v3 error responses: the ``{"code", "message"}`` body, and how our one error tree
(:class:`~contracts.errors.PcfError`) maps onto the HTTP statuses and v3 ``Error`` codes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from enum import StrEnum
from typing import Final

from fastapi.responses import JSONResponse

from pcf_exchange.contracts.errors import ContractError, InfrastructureError, PcfError, PolicyDenied

__all__ = ["ApiError", "PactErrorCode", "error_response", "error_response_for"]

log = logging.getLogger("gateway.api")


class PactErrorCode(StrEnum):
    """The ``Error.code`` enum of PACT v3 (``components.schemas.Error``)."""

    BAD_REQUEST = "BadRequest"
    ACCESS_DENIED = "AccessDenied"
    TOKEN_EXPIRED = "TokenExpired"
    NOT_FOUND = "NotFound"
    INTERNAL_ERROR = "InternalError"
    NOT_IMPLEMENTED = "NotImplemented"


BEARER_CHALLENGE: Final = 'Bearer realm="pact"'


class ApiError(PcfError):
    """A failure the API answers with its own HTTP status and v3 error code.

    The status/code pairs used: 400 ``BadRequest`` (malformed request), 400 ``NotImplemented``
    (a feature we do not offer, as the v2 error table has it), 401 ``BadRequest`` (missing or
    invalid token; the conformance tool expects this code), 401 ``TokenExpired``,
    403 ``AccessDenied`` (a token without the scope), 404 ``NotFound``, 500 ``InternalError``,
    503 ``InternalError`` (the disclosure could not be audited, so nothing was sent).
    """

    code = "api"

    def __init__(
        self,
        status: int,
        pact_code: PactErrorCode,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.pact_code = pact_code
        self.headers: dict[str, str] = dict(headers or {})

    @classmethod
    def bad_request(cls, message: str) -> ApiError:
        return cls(400, PactErrorCode.BAD_REQUEST, message)

    @classmethod
    def not_implemented(cls, message: str) -> ApiError:
        return cls(400, PactErrorCode.NOT_IMPLEMENTED, message)

    @classmethod
    def not_found(cls, message: str = "The requested footprint could not be found.") -> ApiError:
        return cls(404, PactErrorCode.NOT_FOUND, message)

    @classmethod
    def access_denied(cls, message: str = "Access denied") -> ApiError:
        return cls(403, PactErrorCode.ACCESS_DENIED, message)

    @classmethod
    def unavailable(cls) -> ApiError:
        """503: the audit log could not record the disclosure; the client may retry."""
        return cls(
            503,
            PactErrorCode.INTERNAL_ERROR,
            "The service cannot serve footprints right now; retry later",
            headers={"Retry-After": "5"},
        )

    @classmethod
    def invalid_token(cls, message: str, *, error: str | None = "invalid_token") -> ApiError:
        """401 for a missing or unusable bearer token (RFC 6750 §3 challenge included)."""
        challenge = BEARER_CHALLENGE + (f', error="{error}"' if error else "")
        return cls(401, PactErrorCode.BAD_REQUEST, message, headers={"WWW-Authenticate": challenge})

    @classmethod
    def token_expired(cls) -> ApiError:
        challenge = BEARER_CHALLENGE + ', error="invalid_token", error_description="token expired"'
        return cls(
            401,
            PactErrorCode.TOKEN_EXPIRED,
            "The specified access token has expired",
            headers={"WWW-Authenticate": challenge},
        )


def error_response(
    status: int,
    code: PactErrorCode,
    message: str,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A v3 ``Error`` body with the given status (``application/json``)."""
    return JSONResponse(
        {"code": code.value, "message": message}, status, headers=dict(headers or {})
    )


def error_response_for(exc: PcfError) -> JSONResponse:
    """Map one error of the tree onto the v3 error table.

    ``PolicyDenied`` → 404 ``NotFound`` (a footprint not released to this client is answered
    as an unknown one: nothing discloses that it exists); ``ContractError`` → 400 ``BadRequest``;
    infrastructure and every other ``PcfError`` → 500 ``InternalError`` with a generic message
    (details go to the log, never to the client).
    """
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.pact_code, exc.message, exc.headers)
    if isinstance(exc, PolicyDenied):
        return error_response(
            404, PactErrorCode.NOT_FOUND, "The requested footprint could not be found."
        )
    if isinstance(exc, ContractError):
        return error_response(400, PactErrorCode.BAD_REQUEST, exc.message)
    if isinstance(exc, InfrastructureError):
        log.error("infrastructure unavailable while serving a PACT request: %s", exc.message)
    else:
        log.error("unexpected %s while serving a PACT request: %s", type(exc).__name__, exc.message)
    return error_response(
        500, PactErrorCode.INTERNAL_ERROR, "An internal or unexpected error has occurred"
    )
