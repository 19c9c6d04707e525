"""The nemesis: its schedule is a pure function of the seed (tested here without a broker), and
a short run on a private cluster ends with a clean verdict (``PCFX_RELIABILITY=full``)."""

from __future__ import annotations

import itertools
import os
import random
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from pcf_exchange.infra.kafka.launcher import Cluster
from tests.reliability import nemesis
from tests.reliability._exchange import (
    SCALED,
    SUPPLIERS_FILE,
    Verdict,
    parse_footprint,
    version_of,
)

CLEAN = Verdict(
    acknowledged=10,
    lost=0,
    rejected=(),
    converged=True,
    mismatched=(),
    gateway_lag=0,
    outbound=4,
    transfers=4,
    outbound_without_audit=0,
    audit_without_outbound=0,
    outbound_twice=0,
    transfers_twice=0,
)


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    first, again = nemesis.schedule(7, 3.0), nemesis.schedule(7, 3.0)
    assert first == again
    assert nemesis.schedule(8, 3.0) != first
    assert all(f.kind in nemesis.KINDS for f in first)
    assert all(f.at_s < 180 for f in first)


def test_faults_never_overlap_and_broker_faults_name_a_node() -> None:
    for seed in range(40):
        faults = nemesis.schedule(seed, 10.0)
        for a, b in itertools.pairwise(faults):
            assert b.at_s >= a.at_s + a.duration_s, (seed, a, b)
        for fault in faults:
            if fault.kind.endswith("broker"):
                assert fault.target in {"node-1", "node-2", "node-3"}
            else:
                assert fault.target == fault.kind.split("-")[1]
    kinds = {f.kind for seed in range(40) for f in nemesis.schedule(seed, 10.0)}
    assert kinds == set(nemesis.KINDS)


def test_a_schedule_needs_a_positive_duration() -> None:
    with pytest.raises(ValueError, match="--minutes must be positive"):
        nemesis.schedule(1, 0)


@pytest.mark.parametrize(
    "change",
    [
        {"lost": 1},
        {"rejected": ("replayed: pcf.declared: sequence 3 is not above 3",)},
        {"converged": False, "mismatched": ("pack: 1 != 2",)},
        {"gateway_lag": 3},
        {"outbound_without_audit": 1},
        {"audit_without_outbound": 1},
        {"outbound_twice": 1},
        {"transfers_twice": 1},
    ],
)
def test_the_verdict_fails_on_any_single_problem(change: dict[str, object]) -> None:
    assert CLEAN.ok
    bad = replace(CLEAN, **change)  # type: ignore[arg-type]
    assert not bad.ok
    assert "acknowledged 10" in bad.summary()


def test_a_new_version_scales_the_figures_exactly_and_still_parses() -> None:
    import json

    base = json.loads(SUPPLIERS_FILE.read_text())[0]
    for n in range(1, 12):
        doc = version_of(base, n)
        scale = Decimal(95 + n % 11) / 100
        for name in SCALED:
            assert Decimal(doc["pcf"][name]) == Decimal(base["pcf"][name]) * scale
        assert doc["id"] != base["id"]
        assert parse_footprint(doc).product_ids == parse_footprint(base).product_ids
    assert version_of(base, 3)["id"] == version_of(base, 3)["id"]


@pytest.mark.reliability
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_a_short_nemesis_run_ends_with_a_clean_verdict(healthy: Cluster, tmp_path: Path) -> None:
    seed = int(os.environ.get("PCFX_NEMESIS_SEED") or random.SystemRandom().randrange(2**31))
    minutes = float(os.environ.get("PCFX_NEMESIS_MINUTES", "2"))
    result = nemesis.run(healthy, tmp_path, seed=seed, minutes=minutes)
    summary = f"seed {seed} (replay: PCFX_NEMESIS_SEED={seed}): {result.verdict.summary()}"
    print(summary)
    assert result.send_failures == (), summary
    assert result.verdict.ok, summary
