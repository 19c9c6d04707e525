"""Fixtures for gateway tests: the shipped policy with keys we hold, gateway keys, counters."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pcf_exchange.gateway import (
    GatewayKey,
    GatewaySecrets,
    KeyRing,
    Policy,
    default_policy_path,
    load_policy,
)
from pcf_exchange.gateway.policy import CounterState
from tests.gateway._factories import PSEUDONYM_SECRET, battery_record


@pytest.fixture(scope="session")
def shipped_policy() -> Policy:
    return load_policy(default_policy_path())


@pytest.fixture(scope="session")
def recipient_keys(shipped_policy: Policy) -> dict[str, X25519PrivateKey]:
    """One fresh X25519 key per recipient of the shipped policy."""
    return {rid: X25519PrivateKey.generate() for rid in shipped_policy.recipients}


@pytest.fixture(scope="session")
def policy(shipped_policy: Policy, recipient_keys: dict[str, X25519PrivateKey]) -> Policy:
    """The shipped policy with each recipient's key replaced by one whose private half we hold."""
    recipients = {
        rid: replace(
            r,
            encryption_key=recipient_keys[rid]
            .public_key()
            .public_bytes(Encoding.Raw, PublicFormat.Raw),
        )
        for rid, r in shipped_policy.recipients.items()
    }
    return replace(shipped_policy, recipients=recipients)


@pytest.fixture(scope="session")
def gateway_key() -> GatewayKey:
    return GatewayKey.generate()


@pytest.fixture(scope="session")
def keyring(gateway_key: GatewayKey) -> KeyRing:
    return KeyRing.of(gateway_key.public_key)


@pytest.fixture
def secrets(gateway_key: GatewayKey) -> GatewaySecrets:
    return GatewaySecrets(signer=gateway_key, pseudonym_secret=PSEUDONYM_SECRET, log_id="test-log")


@pytest.fixture
def counters() -> CounterState:
    return CounterState.empty(2026, salt=b"s" * 32)


@pytest.fixture
def record() -> Iterator[dict[str, Any]]:
    yield battery_record()
