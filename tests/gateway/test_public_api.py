"""The public surface is what ``__all__`` says, sorted and complete (as httpx pins its own)."""

from __future__ import annotations

from types import ModuleType

import pytest

from pcf_exchange import gateway
from pcf_exchange.gateway import audit, policy


@pytest.mark.parametrize("module", [gateway, policy, audit])
def test_all_is_sorted_and_importable(module: ModuleType) -> None:
    names = list(module.__all__)
    assert names == sorted(names, key=lambda n: (not n.isupper(), n))
    for name in names:
        assert hasattr(module, name), name


@pytest.mark.parametrize("module", [policy, audit])
def test_nothing_public_is_left_out(module: ModuleType) -> None:
    public = {
        n
        for n, v in vars(module).items()
        if not n.startswith("_") and not isinstance(v, ModuleType)
    }
    assert public == set(module.__all__)


def test_gateway_top_level_names() -> None:
    expected = {
        "load_policy",
        "parse_policy",
        "evaluate",
        "apply",
        "prepare_transfer",
        "seal",
        "seal_batch",
        "OutboundBatch",
        "open_message",
        "approve",
        "deny",
        "expire",
        "request_approval",
        "Gateway",
        "InMemoryTransferSink",
        "TransferSink",
        "PolicyFileInvalid",
        "TransferBlocked",
        "TransferHeld",
        "CommitFailed",
        "default_policy_path",
    }
    assert expected <= set(gateway.__all__)
