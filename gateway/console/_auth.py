"""Who may use the console: officers, their passwords, sessions, CSRF tokens and lockouts.

**Officers.** A console user is a compliance officer: an officer key (the Ed25519 key the
operator registered on ``pcf.keys`` with role ``officer``, the one ``pcfx approvals approve
--key`` uses) plus a password set with ``pcfx console add-user``. The users file (JSON, mode
600) holds, per officer, the key file's path and the password's scrypt hash; never the password.
The key's owner must be the officer's name: the approver on record is the key's owner.

**Passwords.** scrypt (``cryptography``'s ``Scrypt``; n=2**15, r=8, p=1, 16-byte salt, 32-byte
hash; the parameters are stored per user so they can be raised later). A name that is not in the
file costs the same scrypt work as a wrong password, so timing does not tell them apart.

**Lockout.** :class:`Throttle` counts failed logins per officer name and per client address:
after ``max_failures`` within ``window`` the name (or address) is locked for ``lockout``, even
for the right password, and the page says until when.

**Sessions.** After a login the server keeps a :class:`Session` (the officer, the loaded key, a
CSRF token, an expiry) under a random id, and the browser gets a cookie holding that id signed
with HMAC-SHA256 under a secret made at start-up: ``HttpOnly; Secure; SameSite=Strict;
Path=/``. A cookie that is unsigned, altered, expired or from before a restart is refused.

**CSRF.** Every POST form carries the session's token (the login form carries one bound to a
pre-login cookie); a POST without the right token is refused with 403 before anything happens.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from pcf_exchange.contracts.errors import KeyStoreError, TrustError
from pcf_exchange.gateway.runtime._officer import OfficerKey

__all__ = [
    "LoginRefused",
    "Officer",
    "Session",
    "SessionStore",
    "Throttle",
    "UsersFile",
    "UsersFileError",
    "check_password",
    "hash_password",
    "verify_password",
]

_N, _R, _P = 2**15, 8, 1


class UsersFileError(KeyStoreError):
    """The console users file is missing, unreadable, not private, or malformed."""

    code = "console_users"
    hint = "Create or fix it with: pcfx console add-user OFFICER --key OFFICER.key.pem --users FILE"


class LoginRefused(TrustError):
    """A login was refused: wrong name or password, a locked account, or an unusable key."""

    code = "login_refused"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, reason="login_refused")
        self.retry_after = retry_after
        """Seconds until a locked name or address may try again (``None`` when not locked)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = _N, salt: bytes | None = None) -> dict[str, Any]:
    """The stored form of *password*: ``{"kdf": "scrypt", "n", "r", "p", "salt", "hash"}``."""
    if len(password) < 12:
        raise UsersFileError(
            f"a console password must have at least 12 characters (got {len(password)})",
            hint="Choose a longer password (a passphrase of several words).",
        )
    salt = salt or os.urandom(16)
    digest = Scrypt(salt=salt, length=32, n=n, r=_R, p=_P).derive(password.encode())
    return {"kdf": "scrypt", "n": n, "r": _R, "p": _P, "salt": _b64(salt), "hash": _b64(digest)}


def verify_password(password: str, stored: Mapping[str, Any]) -> bool:
    """Whether *password* matches *stored* (constant time in the hash comparison)."""
    kdf = Scrypt(
        salt=_unb64(str(stored["salt"])),
        length=32,
        n=int(stored["n"]),
        r=int(stored["r"]),
        p=int(stored["p"]),
    )
    try:
        kdf.verify(password.encode(), _unb64(str(stored["hash"])))
    except InvalidKey:
        return False
    return True


@dataclass(frozen=True)
class Officer:
    """One console user: the officer's name (their key's owner), key file and password hash."""

    name: str
    key: Path
    password: Mapping[str, Any]
    passphrase_file: Path | None = None
    """First line: the key file's passphrase (else *passphrase_env*, else
    ``PCFX_KEY_PASSPHRASE``, else none)."""
    passphrase_env: str | None = None
    """The environment variable of the console's process that holds the key's passphrase."""


class UsersFile:
    """The console's users file (see the module docstring), read once at start-up."""

    VERSION = 1

    def __init__(self, path: Path, officers: Mapping[str, Officer]) -> None:
        self.path = path
        self.officers = dict(officers)

    @classmethod
    def read(cls, path: Path) -> UsersFile:
        """Load and check *path*: it must exist, be private (0600) and hold valid entries; each
        problem names the field, what was expected and what came in."""
        try:
            mode = path.stat().st_mode & 0o777
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsersFileError(f"cannot read console users file '{path}': {exc}") from exc
        if mode & 0o077:
            raise UsersFileError(
                f"console users file '{path}' must be private: mode 0600 expected (got {mode:04o})",
                hint=f"chmod 600 {path}",
            )
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UsersFileError(f"'{path}' is not JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("version") != cls.VERSION:
            got = data.get("version") if isinstance(data, dict) else type(data).__name__
            raise UsersFileError(f"'{path}': 'version' must be {cls.VERSION} (got {got!r})")
        raw = data.get("officers")
        if not isinstance(raw, dict):
            raise UsersFileError(f"'{path}': 'officers' must be an object (got {raw!r:.60})")
        officers: dict[str, Officer] = {}
        for name, item in raw.items():
            where = f"'{path}': 'officers.{name}"
            if not isinstance(item, dict):
                raise UsersFileError(f"{where}' must be an object (got {item!r:.60})")
            key, password = item.get("key"), item.get("password")
            if not isinstance(key, str) or not key:
                raise UsersFileError(f"{where}.key' must be a key file path (got {key!r:.60})")
            if not isinstance(password, dict) or password.get("kdf") != "scrypt":
                raise UsersFileError(
                    f"{where}.password' must be an scrypt hash (got {password!r:.60})"
                )
            for part in ("n", "r", "p", "salt", "hash"):
                if part not in password:
                    raise UsersFileError(f"{where}.password.{part}' is missing")
            phrase = item.get("passphraseFile")
            if phrase is not None and not isinstance(phrase, str):
                raise UsersFileError(f"{where}.passphraseFile' must be a path (got {phrase!r:.60})")
            env = item.get("passphraseEnv")
            if env is not None and (not isinstance(env, str) or not env):
                raise UsersFileError(
                    f"{where}.passphraseEnv' must be a variable name (got {env!r:.60})"
                )
            base = path.parent
            officers[name] = Officer(
                name=name,
                key=(base / key) if not Path(key).is_absolute() else Path(key),
                password=password,
                passphrase_file=None if phrase is None else base / phrase,
                passphrase_env=env,
            )
        return cls(path, officers)

    @staticmethod
    def set_password(
        path: Path,
        name: str,
        *,
        key: Path,
        password: str,
        passphrase_file: Path | None = None,
        passphrase_env: str | None = None,
        n: int = _N,
    ) -> None:
        """Add *name* (or replace its entry) in the users file at *path*, written mode 0600."""
        if not name.strip():
            raise UsersFileError("an officer name is required (got an empty one)")
        data: dict[str, Any] = {"version": UsersFile.VERSION, "officers": {}}
        if path.exists():
            UsersFile.read(path)  # refuse to rewrite a file that is not ours
            data = json.loads(path.read_text(encoding="utf-8"))
        entry: dict[str, Any] = {
            "key": str(key.resolve()),
            "password": hash_password(password, n=n),
        }
        if passphrase_file is not None:
            entry["passphraseFile"] = str(passphrase_file.resolve())
        if passphrase_env:
            entry["passphraseEnv"] = passphrase_env
        data["officers"][name] = entry
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
        path.chmod(0o600)


@functools.cache
def _dummy() -> dict[str, Any]:
    """A hash to check unknown names against (made on first use: scrypt costs ~0.1 s)."""
    return hash_password("not-a-password-of-anyone", salt=b"\0" * 16)


@dataclass
class Throttle:
    """Failed logins per key (officer name, client address); see the module docstring."""

    max_failures: int = 5
    window: float = 900.0
    lockout: float = 900.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, list[float]] = field(default_factory=dict)
    _locked: dict[str, float] = field(default_factory=dict)

    def locked_for(self, *keys: str) -> float | None:
        """Seconds left on the longest lock among *keys*, or ``None``."""
        now = self.clock()
        left = [until - now for k in keys if (until := self._locked.get(k, 0.0)) > now]
        return max(left) if left else None

    def failed(self, *keys: str) -> None:
        now = self.clock()
        for key in keys:
            recent = [t for t in self._failures.get(key, []) if now - t < self.window]
            recent.append(now)
            self._failures[key] = recent
            if len(recent) >= self.max_failures:
                self._locked[key] = now + self.lockout
                self._failures[key] = []

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self._failures.pop(key, None)


@dataclass(frozen=True)
class Session:
    officer: str
    key: OfficerKey
    csrf: str
    expires: float


class SessionStore:
    """Server-side sessions behind HMAC-signed cookie values (see the module docstring)."""

    def __init__(self, *, ttl: float = 8 * 3600.0, clock: Callable[[], float] = time.time) -> None:
        self._secret = secrets.token_bytes(32)
        self._sessions: dict[str, Session] = {}
        self.ttl = ttl
        self.clock = clock

    def _sign(self, text: str) -> str:
        return _b64(hmac.new(self._secret, text.encode(), hashlib.sha256).digest())

    def open(self, officer: str, key: OfficerKey) -> str:
        """A new session; returns the cookie value ``ID.SIGNATURE``."""
        sid = secrets.token_urlsafe(24)
        self._sessions[sid] = Session(
            officer, key, secrets.token_urlsafe(24), self.clock() + self.ttl
        )
        return f"{sid}.{self._sign('session|' + sid)}"

    def get(self, cookie: str | None) -> Session | None:
        """The live session *cookie* names, or ``None`` (unsigned, altered, expired, unknown)."""
        if not cookie or "." not in cookie:
            return None
        sid, _, mac = cookie.rpartition(".")
        if not hmac.compare_digest(mac, self._sign("session|" + sid)):
            return None
        session = self._sessions.get(sid)
        if session is None:
            return None
        if self.clock() >= session.expires:
            self._sessions.pop(sid, None)
            return None
        return session

    def close(self, cookie: str | None) -> None:
        if cookie and "." in cookie:
            self._sessions.pop(cookie.rpartition(".")[0], None)

    def login_token(self, nonce: str) -> str:
        """The CSRF token of the login form bound to the pre-login cookie *nonce*."""
        return self._sign("login|" + nonce)

    def check_login_token(self, nonce: str | None, token: str | None) -> bool:
        return bool(nonce and token) and hmac.compare_digest(
            str(token), self.login_token(str(nonce))
        )


def check_password(users: UsersFile, name: str, password: str) -> Officer | None:
    """The officer if *name* and *password* match; the same scrypt work when *name* is unknown."""
    officer = users.officers.get(name)
    if officer is None:
        verify_password(password, _dummy())
        return None
    return officer if verify_password(password, officer.password) else None
