"""OAuth2 client credentials for the PACT API (RFC 6749 §4.4): registered clients with hashed
secrets (scrypt, or PBKDF2 for imported hashes, compared in constant time), and random, opaque,
expiring bearer tokens that carry the client's recipient id and scopes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import yaml

from pcf_exchange.contracts.errors import ContractError, ValidationFailed, Violation
from pcf_exchange.gateway.api._errors import ApiError

__all__ = [
    "ALL_SCOPES",
    "SCOPE_LIST",
    "SCOPE_READ",
    "AccessToken",
    "Client",
    "EventEndpoint",
    "TokenIssuer",
    "hash_secret",
    "load_clients",
    "verify_secret",
]

SCOPE_LIST: Final = "footprint:list"
SCOPE_READ: Final = "footprint:read"
ALL_SCOPES: Final = frozenset({SCOPE_LIST, SCOPE_READ})
"""The scopes of the v3 ``BearerAuth`` security scheme."""

_SCRYPT_N: Final = 2**14
_SCRYPT_R: Final = 8
_SCRYPT_P: Final = 1
_MAX_SCRYPT_N: Final = 2**20
_MIN_PBKDF2_ITERATIONS: Final = 100_000


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_secret(secret: str) -> str:
    """A storable hash of a client secret: ``scrypt$16384$8$1$<salt>$<key>`` (base64url).

    >>> stored = hash_secret("s3cret")
    >>> stored.startswith("scrypt$16384$8$1$"), verify_secret("s3cret", stored)
    (True, True)
    """
    if not secret:
        raise ContractError("a client secret must not be empty")
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(
        secret.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(key)}"


@dataclass(frozen=True, slots=True)
class _Hash:
    scheme: str
    params: tuple[int, ...]
    salt: bytes
    key: bytes

    def derive(self, secret: str) -> bytes:
        if self.scheme == "scrypt":
            n, r, p = self.params
            return hashlib.scrypt(
                secret.encode(),
                salt=self.salt,
                n=n,
                r=r,
                p=p,
                dklen=len(self.key),
                maxmem=2**31 - 1,
            )
        (iterations,) = self.params
        return hashlib.pbkdf2_hmac("sha256", secret.encode(), self.salt, iterations, len(self.key))


def _parse_hash(stored: str) -> _Hash:
    """Parse ``scrypt$N$r$p$salt$key`` or ``pbkdf2_sha256$iterations$salt$key``."""
    parts = stored.split("$")
    try:
        if parts[0] == "scrypt" and len(parts) == 6:
            n, r, p = (int(x) for x in parts[1:4])
            if not (2 <= n <= _MAX_SCRYPT_N and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
                raise ValueError("scrypt parameters out of range")
            parsed = _Hash("scrypt", (n, r, p), _unb64(parts[4]), _unb64(parts[5]))
        elif parts[0] == "pbkdf2_sha256" and len(parts) == 4:
            iterations = int(parts[1])
            if not _MIN_PBKDF2_ITERATIONS <= iterations <= 10_000_000:
                raise ValueError("pbkdf2 iterations out of range")
            parsed = _Hash("pbkdf2_sha256", (iterations,), _unb64(parts[2]), _unb64(parts[3]))
        else:
            raise ValueError("unknown scheme")
    except ValueError as exc:
        raise ContractError(
            f"secret hash must be 'scrypt$N$r$p$salt$key' or 'pbkdf2_sha256$iterations$salt$key' "
            f"({exc}); make one with 'pcfx api hash-secret'"
        ) from None
    if len(parsed.salt) < 8 or len(parsed.key) < 16:
        raise ContractError("secret hash has a salt under 8 bytes or a key under 16 bytes")
    return parsed


def verify_secret(secret: str, stored: str) -> bool:
    """Whether *secret* matches the *stored* hash; the comparison takes constant time."""
    parsed = _parse_hash(stored)
    return hmac.compare_digest(parsed.derive(secret), parsed.key)


@dataclass(frozen=True, slots=True)
class EventEndpoint:
    """Where and how this API delivers asynchronous events to a client's own PACT host.

    ``url`` is the client's ``/3/events`` action; the ``source`` of every RequestCreatedEvent
    the client sends must name the same host, and answers go only to ``url`` (never to an
    address taken from a request). ``client_id``/``client_secret`` are the credentials the
    client's host issued to us; the token endpoint is discovered (OpenID configuration, then
    ``/auth/token``) unless ``token_url`` is given. ``ca_file`` pins a CA (self-signed demo hosts).
    """

    url: str
    client_id: str
    client_secret: str = field(repr=False)
    token_url: str | None = None
    ca_file: str | None = None


@dataclass(frozen=True, slots=True)
class Client:
    """A registered API client: who it is, the recipient whose footprints it sees, and how."""

    client_id: str
    recipient_id: str
    secret_hash: str = field(repr=False)
    scopes: frozenset[str] = ALL_SCOPES
    events: EventEndpoint | None = None

    def __post_init__(self) -> None:
        _parse_hash(self.secret_hash)
        unknown = self.scopes - ALL_SCOPES
        if unknown:
            raise ContractError(f"unknown scopes {sorted(unknown)} for client '{self.client_id}'")


def load_clients(path: Path) -> list[Client]:
    """Read clients from YAML or JSON::

        clients:
          acme-buyer:
            recipient: acme                  # recipient id whose releases it may pull
            secret_hash: "scrypt$16384$..."  # from `pcfx api hash-secret`
            scopes: [footprint:list, footprint:read]   # optional, default both
            events:                          # optional: where answers to its requests go
              url: https://pact.acme.example/3/events
              client_id: pcf-exchange        # our credentials at acme's host
              client_secret_env: ACME_PACT_SECRET      # read from the environment
              token_url: https://id.acme.example/auth/token   # optional
              ca_file: acme-ca.pem           # optional

    Every problem is reported at once, with its path in the file.
    """
    try:
        text = path.read_text(encoding="utf-8")
        document: Any = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        error = ContractError(
            f"cannot read clients file '{path}': {exc}", hint="Check the --clients path."
        )
        error.code = "unreadable_input"
        raise error from exc
    if isinstance(document, Mapping) and isinstance(document.get("clients"), Mapping):
        document = document["clients"]
    if not isinstance(document, Mapping):
        raise ValidationFailed(
            [Violation.of("clients", "type", "must map client ids to settings", document)],
            subject=str(path),
        )
    clients: list[Client] = []
    problems: list[Violation] = []
    for client_id, spec in document.items():
        where = f"clients.{client_id}"
        try:
            clients.append(_client_from(str(client_id), spec, where, path.parent))
        except ValidationFailed as exc:
            problems.extend(exc.violations)
        except ContractError as exc:
            problems.append(Violation.of(where, "invalid", exc.message))
    if problems:
        failure = ValidationFailed(problems, subject=str(path))
        failure.hint = "Fix the clients file; make secret hashes with 'pcfx api hash-secret'."
        raise failure
    return clients


def _client_from(client_id: str, spec: Any, where: str, base: Path) -> Client:
    if not isinstance(spec, Mapping):
        raise ValidationFailed([Violation.of(where, "type", "must be a mapping", spec)])
    problems = [
        Violation.of(f"{where}.{key}", "required", "must be a non-empty string", spec.get(key, ...))
        for key in ("recipient", "secret_hash")
        if not isinstance(spec.get(key), str) or not spec.get(key)
    ]
    scopes = spec.get("scopes", sorted(ALL_SCOPES))
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        problems.append(Violation.of(f"{where}.scopes", "type", "must be a list of scopes", scopes))
    events = None
    if spec.get("events") is not None:
        try:
            events = _endpoint_from(spec["events"], f"{where}.events", base)
        except ValidationFailed as exc:
            problems.extend(exc.violations)
    if problems:
        raise ValidationFailed(problems)
    return Client(
        client_id=client_id,
        recipient_id=spec["recipient"],
        secret_hash=spec["secret_hash"],
        scopes=frozenset(scopes),
        events=events,
    )


def _endpoint_from(spec: Any, where: str, base: Path) -> EventEndpoint:
    if not isinstance(spec, Mapping):
        raise ValidationFailed([Violation.of(where, "type", "must be a mapping", spec)])
    problems = [
        Violation.of(f"{where}.{key}", "required", "must be a non-empty string", spec.get(key, ...))
        for key in ("url", "client_id", "client_secret_env")
        if not isinstance(spec.get(key), str) or not spec.get(key)
    ]
    if problems:
        raise ValidationFailed(problems)
    if not str(spec["url"]).startswith("https://"):
        problems.append(
            Violation.of(f"{where}.url", "https", "must be an https:// URL", spec["url"])
        )
    secret = os.environ.get(spec["client_secret_env"], "")
    if not secret:
        problems.append(
            Violation.of(
                f"{where}.client_secret_env",
                "unset",
                f"environment variable {spec['client_secret_env']} must hold the secret",
            )
        )
    if problems:
        raise ValidationFailed(problems)
    ca_file = spec.get("ca_file")
    return EventEndpoint(
        url=spec["url"],
        client_id=spec["client_id"],
        client_secret=secret,
        token_url=spec.get("token_url"),
        ca_file=str(base / ca_file) if isinstance(ca_file, str) else None,
    )


@dataclass(frozen=True, slots=True)
class AccessToken:
    """What a bearer token stands for."""

    client_id: str
    recipient_id: str
    scopes: frozenset[str]
    expires_at: float


class TokenIssuer:
    """Authenticates clients and issues and checks opaque bearer tokens.

    Tokens are 256-bit random strings; only their SHA-256 is kept. Expired tokens are
    remembered for ``expired_grace`` seconds so that their use is answered ``TokenExpired``
    rather than "invalid". At most ``max_live_per_client`` tokens live per client (the oldest
    is dropped first), which bounds memory whatever a client does.
    """

    def __init__(
        self,
        clients: Iterable[Client],
        *,
        ttl: float = 3600.0,
        clock: Callable[[], float] = time.time,
        expired_grace: float = 86_400.0,
        max_live_per_client: int = 64,
    ) -> None:
        self._clients: dict[str, Client] = {}
        for client in clients:
            if client.client_id in self._clients:
                raise ContractError(f"client id '{client.client_id}' is registered twice")
            self._clients[client.client_id] = client
        self._clients_view = MappingProxyType(self._clients)
        if ttl <= 0:
            raise ValueError("token ttl must be positive")
        self.ttl = ttl
        self._clock = clock
        self._grace = expired_grace
        self._max_live = max_live_per_client
        self._lock = threading.Lock()
        self._tokens: dict[bytes, AccessToken] = {}
        self._per_client: dict[str, deque[bytes]] = {}
        # Unknown client ids are checked against this hash so they take as long as known ones.
        self._decoy = _parse_hash(hash_secret(secrets.token_urlsafe(16)))

    @property
    def clients(self) -> Mapping[str, Client]:
        """Registered clients by id (read-only)."""
        return self._clients_view

    def authenticate(self, client_id: str, secret: str) -> Client | None:
        """The client if *secret* is its secret, else ``None`` (same work either way)."""
        client = self._clients.get(client_id)
        if client is None:
            hmac.compare_digest(self._decoy.derive(secret), self._decoy.key)
            return None
        return client if verify_secret(secret, client.secret_hash) else None

    def issue(self, client: Client, scopes: frozenset[str]) -> tuple[str, AccessToken]:
        """A new bearer token for *client* limited to *scopes*."""
        token = secrets.token_urlsafe(32)
        digest = hashlib.sha256(token.encode()).digest()
        info = AccessToken(client.client_id, client.recipient_id, scopes, self._clock() + self.ttl)
        with self._lock:
            self._prune()
            self._tokens[digest] = info
            live = self._per_client.setdefault(client.client_id, deque())
            live.append(digest)
            while len(live) > self._max_live:
                self._tokens.pop(live.popleft(), None)
        return token, info

    def check(self, token: str) -> AccessToken:
        """What *token* stands for; 401 ``TokenExpired`` or 401 ``BadRequest`` otherwise."""
        digest = hashlib.sha256(token.encode()).digest()
        with self._lock:
            info = self._tokens.get(digest)
        if info is None or info.client_id not in self._clients:
            raise ApiError.invalid_token("invalid access token")
        if self._clock() >= info.expires_at:
            raise ApiError.token_expired()
        return info

    def revoke_client(self, client_id: str) -> int:
        """Invalidate every token of *client_id*; the number dropped."""
        with self._lock:
            digests = self._per_client.pop(client_id, deque())
            return sum(self._tokens.pop(d, None) is not None for d in digests)

    def _prune(self) -> None:
        horizon = self._clock() - self._grace
        for client_id, live in list(self._per_client.items()):
            while live and (
                live[0] not in self._tokens or self._tokens[live[0]].expires_at < horizon
            ):
                self._tokens.pop(live.popleft(), None)
            if not live:
                del self._per_client[client_id]
