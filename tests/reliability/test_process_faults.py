"""Process faults (#22 item 2): kill -9 of a streams worker, and separately of the gateway,
mid-stream, several times at seeded random points, and a rebalance with a batch in flight (a
second worker joins mid-backlog and leaves mid-batch, by SIGTERM or kill -9), on the shared
broker.

What must hold after each schedule, against an uninterrupted run (the oracle):

- **streams** (kills and rebalances): the final roll-ups equal the batch roll-up of the same
  inputs (no double counting: a record applied twice would change a sum), and no legitimate
  record is on the DLQ
  (a redelivered supplier record is a duplicate or superseded, never ``replayed``: 775 and
  2 667 were before the fix);
- **gateway**: every input record reaches each subscriber exactly once (no transfer twice, none
  lost), every outbound message has exactly one audit entry and the chains verify (no transfer
  without audit), and a gateway restarted right after a kill, with a short ``--idle-seconds``,
  waits for its partitions instead of exiting with the backlog untouched.

The seed of each schedule is printed (``-s``) and part of the test id: a failure reruns with
the same kill points. ``make test`` runs one short case of each (one kill; one clean leave of
the second worker); the full schedules (three kills; a leave by SIGTERM and by kill -9, two seeds
each) run with ``PCFX_RELIABILITY=full`` (``make test-reliability``). The rows of
RELIABILITY.md ("Process faults") come from these tests.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition

from pcf_exchange.gateway._keys import load_recipient_private_key
from pcf_exchange.gateway.audit import EntryKind
from pcf_exchange.pcfx._exchange import stop_worker
from tests.gateway._rollups import policy_with_keys, rolled_footprint
from tests.gateway.test_runtime_kafka import GB, GB_PURPOSE, Env, audit, make_env, read_values
from tests.gateway.test_runtime_kafka import open_all as open_envelopes
from tests.streams._broker_world import World
from tests.streams.test_runtime_broker import batch_figures

pytestmark = [pytest.mark.reliability, pytest.mark.broker, pytest.mark.slow]

FULL = os.environ.get("PCFX_RELIABILITY") == "full"
full_only = pytest.mark.skipif(
    not FULL, reason="long fault schedule: make test-reliability (PCFX_RELIABILITY=full)"
)
SEED = int(os.environ.get("PCFX_FAULT_SEED", "2213"))
"""The schedule's seed (``PCFX_FAULT_SEED`` replays another one)."""


# --- streams -----------------------------------------------------------------------------------


@pytest.fixture
def world(kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")  # a killed worker's log keeps its last lines
    w = World(kafka_bootstrap, tmp_path)
    yield w
    w.stop()  # every worker process, killed or not, is stopped here


def _superseded_logged(world: World) -> tuple[int, int]:
    """(duplicates, superseded) the workers logged (:func:`streams._ingest_step.check_batch`)."""
    duplicates = superseded = 0
    for path in world.workdir.glob("worker-*.log"):
        for found in _REDELIVERED.finditer(path.read_text(errors="replace")):
            duplicates += int(found["duplicates"])
            superseded += int(found["superseded"])
    return duplicates, superseded


_REDELIVERED = re.compile(
    r"(?P<duplicates>\d+) redelivered duplicate\(s\) forwarded again,"
    r" (?P<superseded>\d+) superseded"
)
"""The line :func:`streams._ingest_step.check_batch` logs (after the logger's name and the
topic[partition], both of which contain ``: ``)."""


def _kill_streams(world: World, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    expected = batch_figures()
    worker = world.start_worker("w0", loglevel="info")
    held_back = world.publish_demo_chain(hold_back=3)
    world.wait_for(lambda got: len(got) >= 1, timeout_s=240, what="the first worker to produce")
    sent = 0
    for k in range(kills):
        # legitimate supplier updates in flight: several sequences per subject, so that a kill
        # between the ledger's flush and the offset commit leaves older ones to be redelivered
        traffic = world.traffic()
        sent += world.publish_footprint_versions(f"round {k}", versions=rng.randint(3, 6))
        if k < len(held_back):
            world.publish_bom(held_back[k])
        deadline = time.monotonic() + 240
        while world.traffic() == traffic:  # this worker has forwarded some of them
            assert time.monotonic() < deadline, world.worker_logs()
            time.sleep(0.2)
        time.sleep(rng.uniform(0.0, 1.5))  # the kill point
        world.kill_worker(worker)  # kill -9: no chance to flush, commit or leave the group
        worker = world.start_worker(f"w{k + 1}", loglevel="info")
    for bom in held_back[kills:]:
        world.publish_bom(bom)
    latest = world.wait_for(
        lambda got: all(
            pid in got and got[pid].pcf_excluding_biogenic_uptake == value
            for pid, value in expected.items()
        ),
        timeout_s=300,
        what=f"convergence after {kills} kill -9 (seed {seed})",
    )
    world.wait_quiet(timeout_s=120)
    rejections = world.rejections()
    duplicates, superseded = _superseded_logged(world)
    print(
        f"\nstreams kill -9 x{kills} seed {seed}: {sent} supplier updates, {len(latest)} products,"
        f" DLQ {len(rejections)}, redelivered duplicates {duplicates}, superseded {superseded}"
    )
    assert {pid: r.pcf_excluding_biogenic_uptake for pid, r in latest.items()} == expected
    assert [(r.reason, r.message) for r in rejections] == [], "a legitimate record in the DLQ"


@pytest.mark.timeout(600)
def test_streams_worker_killed_once_mid_stream_with_supplier_updates(world: World) -> None:
    _kill_streams(world, kills=1, seed=SEED)


@full_only
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("seed", [SEED, SEED + 1])
def test_streams_worker_killed_three_times_at_seeded_points(world: World, seed: int) -> None:
    _kill_streams(world, kills=3, seed=seed)


def _rebalance(world: World, leave: signal.Signals, seed: int, versions: int) -> None:
    """A second worker joins while the first works through a backlog, takes half the
    partitions, and leaves (*leave*: SIGTERM, a clean leave; SIGKILL, the group notices after
    its session times out) at a seeded point while a second backlog is in flight. The first
    worker alone finishes; the roll-ups must equal the oracle with nothing on the DLQ."""
    rng = random.Random(seed)
    expected = batch_figures()
    world.start_worker("w0", loglevel="info")
    held_back = world.publish_demo_chain(hold_back=2)
    world.wait_for(lambda got: len(got) >= 1, timeout_s=240, what="the first worker to produce")
    # the backlog: legitimate versions of every supplier footprint (same figures, higher
    # sequences), and a held-back BOM; the second worker joins while the first is on it
    traffic = world.traffic()
    sent = world.publish_footprint_versions("backlog", versions=versions)
    world.publish_bom(held_back[0])
    joiner = world.start_worker("w1", loglevel="info")
    world.wait_for_group(2, timeout_s=180)
    joined_mid_backlog = world.traffic() > traffic
    # a second backlog; the joiner leaves mid-batch: once the workers write again
    traffic = world.traffic()
    sent += world.publish_footprint_versions("in flight", versions=versions)
    world.publish_bom(held_back[1])
    deadline = time.monotonic() + 240
    while world.traffic() == traffic:
        assert time.monotonic() < deadline, world.worker_logs()
        time.sleep(0.1)
    time.sleep(rng.uniform(0.0, 1.0))  # the leave point
    world.kill_worker(joiner, leave)
    latest = world.wait_for(
        lambda got: all(
            pid in got and got[pid].pcf_excluding_biogenic_uptake == value
            for pid, value in expected.items()
        ),
        timeout_s=300,
        what=f"convergence after the second worker left ({leave.name}, seed {seed})",
    )
    world.wait_quiet(timeout_s=120)
    rejections = world.rejections()
    duplicates, superseded = _superseded_logged(world)
    print(
        f"\nrebalance, joiner left by {leave.name}, seed {seed}: {sent} supplier updates,"
        f" joined mid-backlog {joined_mid_backlog}, {len(latest)} products, DLQ"
        f" {len(rejections)}, redelivered duplicates {duplicates}, superseded {superseded}"
    )
    assert {pid: r.pcf_excluding_biogenic_uptake for pid, r in latest.items()} == expected
    assert [(r.reason, r.message) for r in rejections] == [], "a legitimate record in the DLQ"
    assert world.workers[0].poll() is None, world.worker_logs()


@pytest.mark.timeout(600)
def test_a_second_worker_joins_mid_backlog_and_leaves_mid_batch(world: World) -> None:
    _rebalance(world, signal.SIGTERM, seed=SEED, versions=12)


@full_only
@pytest.mark.timeout(900)
@pytest.mark.parametrize("leave", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
@pytest.mark.parametrize("seed", [SEED, SEED + 1])
def test_a_second_worker_joins_and_leaves_at_seeded_points(
    world: World, leave: signal.Signals, seed: int
) -> None:
    _rebalance(world, leave, seed=seed, versions=60)


# --- gateway -----------------------------------------------------------------------------------


@pytest.fixture
def env(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Env]:
    yield from make_env(kafka_bootstrap, tmp_path, partitions=2)


def _gateway_command(env: Env, idle_s: float) -> list[str]:
    policy_file = env.tmp / "policy-faults.yaml"
    if not policy_file.exists():
        keys = {rid: load_recipient_private_key(p) for rid, p in env.recipient_keys.items()}
        policy_with_keys(keys, policy_file)
        (env.tmp / "subs.yaml").write_text(
            f"schema_version: 1\nsubscriptions:\n  - {{recipient: {GB}, purpose: {GB_PURPOSE}}}\n"
        )
    return [
        sys.executable,
        "-m",
        "pcf_exchange.pcfx",
        "gateway",
        "run",
        "--policy",
        str(policy_file),
        "--gateway-key",
        str(env.key_path),
        "--operator-key",
        str(env.trust.operator.public_file),
        "--subscriptions",
        str(env.tmp / "subs.yaml"),
        "--group",
        env.group,
        "--batch-size",
        "50",
        "--checkpoint-interval",
        "0",
        "--idle-seconds",
        str(idle_s),
        "--max-seconds",
        "400",
        "--json",
        *env.args(),
    ]


def _start_gateway(env: Env, name: str, idle_s: float) -> subprocess.Popen[bytes]:
    log = (env.tmp / f"gateway-{name}.log").open("wb")
    try:  # (run from the test's folder: no 'gateway' folder there shadows the package)
        return subprocess.Popen(
            _gateway_command(env, idle_s),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=env.tmp,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    finally:
        log.close()


def _written(watch: Consumer, env: Env) -> int:
    """The end offset of the outbound topic (committed or not: any transaction written)."""
    topic = env.topics.outbound(GB)
    try:
        return int(watch.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)[1])
    except KafkaException:  # (not created yet)
        return 0


def _outbound(env: Env) -> list[dict[str, object]]:
    return open_envelopes(env, GB, read_values(env.bootstrap, env.topics.outbound(GB)))


def _kill_gateway(env: Env, kills: int, seed: int, total: int) -> None:
    rng = random.Random(seed)
    products = [
        f"urn:pact:example-pack.cn:product-id:F{uuid.uuid4().hex[:6]}-{i}" for i in range(total)
    ]
    for i in range(0, total, 200):
        env.publish([rolled_footprint(product_id=p) for p in products[i : i + 200]])
    procs: list[subprocess.Popen[bytes]] = []
    at_kill: list[int] = []
    watch = Consumer({"bootstrap.servers": env.bootstrap, "group.id": f"w-{uuid.uuid4().hex}"})
    try:
        for k in range(kills):
            procs.append(_start_gateway(env, f"g{k}", idle_s=300))
            # the kill point: a random moment after this instance wrote its first transaction
            # (for the second and later ones, after the dead one's session timed out)
            log = env.tmp / f"gateway-g{k}.log"
            written = _written(watch, env)
            deadline = time.monotonic() + 240
            while _written(watch, env) == written:
                assert procs[-1].poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"nothing written\n{log.read_text()}"
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.0))
            procs[-1].send_signal(signal.SIGKILL)
            procs[-1].wait(timeout=60)
            at_kill.append(len(read_values(env.bootstrap, env.topics.outbound(GB))))
        # the schedule tested something: the first kill left part of the backlog to do
        assert at_kill[0] < total, f"the backlog was done before the kill: {at_kill}"
        # restarted at once, before the dead instance's session times out, with a short idle
        # timer: it must wait for its partitions, then finish the backlog
        last = _start_gateway(env, "last", idle_s=3)
        procs.append(last)
        last.wait(timeout=420)
        assert last.returncode == 0, (env.tmp / "gateway-last.log").read_text()
    finally:
        watch.close()
        for proc in procs:
            stop_worker(proc)
    envelopes = _outbound(env)
    got = Counter(str(e["footprint"]["productIds"][0]) for e in envelopes)  # type: ignore[index]
    entries, _ = audit(env)  # every chain verifies
    transfers = [
        e for chain in entries.values() for e in chain if e.kind == EntryKind.TRANSFER.value
    ]
    ids = Counter(e.message_id for e in transfers)
    print(
        f"\ngateway kill -9 x{kills} seed {seed}: {total} records, {len(envelopes)} outbound,"
        f" {len(transfers)} transfer entries, sent when killed {at_kill},"
        f" lost {len(set(products) - set(got))}, twice {sum(1 for n in got.values() if n > 1)}"
    )
    assert sorted(got) == sorted(products), "a record lost"
    assert set(got.values()) == {1}, "a record sent twice"
    assert len(transfers) == len(envelopes) and set(ids.values()) == {1}
    assert {str(e["messageId"]) for e in envelopes} == set(ids), "a transfer without audit"


@pytest.mark.timeout(600)
def test_gateway_killed_once_then_restarted_with_a_short_idle_timer(env: Env) -> None:
    _kill_gateway(env, kills=1, seed=SEED, total=3000)


@full_only
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("seed", [SEED, SEED + 1])
def test_gateway_killed_three_times_mid_backlog(env: Env, seed: int) -> None:
    _kill_gateway(env, kills=3, seed=seed, total=4000)
