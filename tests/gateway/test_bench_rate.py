"""The scaled-out gateway bench's rate: steady state from when every process has warmed up."""

from __future__ import annotations

import pytest

from bench.bench_gateway import committed_rate


def test_rate_counts_from_when_every_process_warmed_up() -> None:
    # warm-up 1000 over 2 processes: 500 each. A is warm at t=1, B (joined late) at t=4
    a = [(1.0, 600), (2.0, 1000), (5.0, 1000), (6.0, 1000)]
    b = [(4.0, 1000), (5.5, 1000), (8.0, 1000)]
    rate, measured = committed_rate([a, b], 1000)
    # after t=4: A 1000 + 1000, B 1000 + 1000, until t=8
    assert measured == 4000
    assert rate == pytest.approx(4000 / 4.0)


def test_rate_of_one_process_is_its_records_after_warm_up() -> None:
    rate, measured = committed_rate([[(0.5, 1000), (1.0, 1000), (3.0, 1000)]], 1000)
    assert measured == 2000
    assert rate == pytest.approx(2000 / 2.5)


def test_rate_refuses_what_cannot_be_timed() -> None:
    with pytest.raises(ValueError, match="fewer than 500"):
        committed_rate([[(1.0, 1000)], [(1.0, 100)]], 1000)
    with pytest.raises(ValueError, match="no commit after"):
        committed_rate([[(1.0, 1000)], [(2.0, 1000)]], 1000)
