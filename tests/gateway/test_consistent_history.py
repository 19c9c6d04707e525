"""Recipients see a consistent history (#22): once a recipient was sent a footprint as
``Deprecated``, the gateway never sends it that footprint as ``Active`` again, within a batch,
across batches, and after a restart (the state is rebuilt from the audit chain). The sequence is
the one the pilot's notified body received: ``A`` Active, ``A`` Deprecated, ``B`` Active, then
``A`` Active again (a re-release by a restarted streams worker), ``A`` Deprecated and ``B``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pcf_exchange.gateway._pipeline import DEPRECATED_NOTE, Retired, retired_by
from pcf_exchange.gateway.audit import EntryKind
from pcf_exchange.gateway.runtime import parse_subscriptions
from pcf_exchange.streams.adapt import deprecated_record
from tests.gateway._rollups import rolled_footprint
from tests.gateway.test_runtime_kafka import (
    GB,
    GB_PURPOSE,
    Env,
    audit,
    make_env,
    open_all,
    read_values,
)

pytestmark = pytest.mark.broker

PRODUCT = "urn:pact:example-pack.cn:product-id:HISTORY-1"
A, B = "0a1b2c3d-0000-4000-8000-00000000000a", "0a1b2c3d-0000-4000-8000-00000000000b"


@pytest.fixture
def env(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Env]:
    yield from make_env(kafka_bootstrap, tmp_path, partitions=1)


def _history(env: Env) -> list[tuple[str, str]]:
    """(footprint id, status) of every message *GB* received, in order."""
    envelopes = open_all(env, GB, read_values(env.bootstrap, env.topics.outbound(GB)))
    return [(e["footprint"]["id"], e["footprint"]["status"]) for e in envelopes]


def _run(env: Env, subs: Any) -> Any:
    with env.runner(env.policy(), subs) as runner:
        return runner.run(idle_seconds=3, max_seconds=90)


def test_a_footprint_deprecated_for_a_recipient_is_never_sent_as_active_again(env: Env) -> None:
    subs = parse_subscriptions(
        {"schema_version": 1, "subscriptions": [{"recipient": GB, "purpose": GB_PURPOSE}]},
        env.policy(),
    )
    a = rolled_footprint(product_id=PRODUCT, pf_id=A, sequence=1)
    b = rolled_footprint(product_id=PRODUCT, pf_id=B, sequence=2)
    dep_a = deprecated_record(a)
    assert dep_a is not None
    # one batch: A, its deprecation, B, and A again (the re-release), then the streams catch up
    env.publish([a, dep_a, b, a, dep_a, b])
    first = _run(env, subs)
    assert (first.sent, first.reactivated, first.blocked) == (5, 1, 1)
    history = _history(env)
    assert history == [
        (A, "Active"),
        (A, "Deprecated"),
        (B, "Active"),
        (A, "Deprecated"),
        (B, "Active"),
    ]
    # after a restart the gateway still knows, from its audit chain alone
    env.publish([a])
    second = _run(env, subs)
    assert (second.sent, second.reactivated) == (0, 1)
    assert _history(env) == history
    entries, _ = audit(env)  # the chain verifies
    (chain,) = entries.values()
    blocked = [e for e in chain if e.reasons and e.reasons[0].startswith("reactivated|")]
    assert len(blocked) == 2
    assert {(e.kind, e.record_pf_id, e.recipient_id, e.outcome) for e in blocked} == {
        (EntryKind.TRANSFER_BLOCKED.value, A, GB, "blocked")
    }
    assert "already sent to" in blocked[0].reasons[1]
    # every message is audited once; the deprecations sent say so in their entries
    sent = [e for e in chain if e.kind == EntryKind.TRANSFER.value]
    assert len(sent) == 5 and len({e.message_id for e in sent}) == 5
    assert sum(DEPRECATED_NOTE in e.reasons for e in sent) == 2
    assert set(retired_by(chain)) == {(GB, A)}


def test_an_active_footprint_whose_deprecation_was_not_sent_still_goes(env: Env) -> None:
    # the deprecation went to another recipient only: GB has not seen A retired
    subs = parse_subscriptions(
        {"schema_version": 1, "subscriptions": [{"recipient": GB, "purpose": GB_PURPOSE}]},
        env.policy(),
    )
    a = rolled_footprint(product_id=PRODUCT, pf_id=A, sequence=1)
    env.publish([a, a])
    stats = _run(env, subs)
    assert (stats.sent, stats.reactivated) == (2, 0)
    assert _history(env) == [(A, "Active"), (A, "Active")]


def test_the_retired_pairs_are_exact_and_smaller_than_a_set_of_strings() -> None:
    import tracemalloc
    import uuid

    canonical = str(uuid.UUID(int=(0xABC << 116) | 7))  # (has letters: upper() is not it)
    retired = Retired([("gb", canonical), ("gb", "not-a-uuid"), ("de", canonical.upper())])
    assert ("gb", canonical) in retired and ("gb", "not-a-uuid") in retired
    # the same UUID written otherwise is another footprint id, as the strings were
    assert ("gb", canonical.upper()) not in retired and ("de", canonical) not in retired
    assert ("de", canonical.upper()) in retired and ("fr", canonical) not in retired
    assert "gb" not in retired and ("gb",) not in retired
    more = Retired([("fr", canonical)])
    retired |= more
    assert ("fr", canonical) in retired and len(retired) == 4
    assert set(retired) == {
        ("gb", canonical),
        ("gb", "not-a-uuid"),
        ("de", canonical.upper()),
        ("fr", canonical),
    }

    def pairs() -> Iterator[tuple[str, str]]:  # (as decoded: each pair's strings its own)
        for i in range(20_000):
            yield f"recipient-{i % 3}", str(uuid.UUID(int=(i + 1) * 0x9E3779B97F4A7C15))

    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    as_strings = set(pairs())
    strings_bytes = sum(
        s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename")
    )
    del as_strings
    before = tracemalloc.take_snapshot()
    compact = Retired(pairs())
    compact_bytes = sum(
        s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename")
    )
    tracemalloc.stop()
    assert len(compact) == 20_000
    assert compact_bytes < 0.6 * strings_bytes, (compact_bytes, strings_bytes)
