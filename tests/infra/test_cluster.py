"""The replicated cluster's pieces that need no JVM: the replication rule, each node's config,
the cluster record, and the refusals (the cluster itself runs in tests/reliability)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pcf_exchange.contracts.errors import BrokerError, InfrastructureError
from pcf_exchange.contracts.topics import Replication, replication_for
from pcf_exchange.infra.kafka import launcher


@pytest.mark.parametrize(
    ("brokers", "factor", "min_isr", "configs"),
    [
        (1, 1, 1, {}),
        (2, 2, 1, {}),
        (3, 3, 2, {"min.insync.replicas": "2"}),
        (5, 3, 2, {"min.insync.replicas": "2"}),
    ],
)
def test_topics_are_replicated_to_min_3_brokers_with_2_in_sync_at_3(
    brokers: int, factor: int, min_isr: int, configs: dict[str, str]
) -> None:
    replication = replication_for(brokers)
    assert replication == Replication(factor, min_isr)
    assert replication.configs == configs
    assert launcher.cluster_replication(brokers) == (factor, min_isr)


def test_a_cluster_without_brokers_is_refused_by_name() -> None:
    with pytest.raises(InfrastructureError, match="lists no broker \\(got 0\\)"):
        replication_for(0)


def test_each_node_is_a_voter_of_one_quorum_with_its_own_ports_and_data(tmp_path: Path) -> None:
    ports = [(9101, 9201), (9102, 9202), (9103, 9203)]
    configs = [launcher.cluster_config(i, ports, tmp_path / f"n{i}") for i in (1, 2, 3)]
    voters = "controller.quorum.voters=1@127.0.0.1:9201,2@127.0.0.1:9202,3@127.0.0.1:9203"
    for i, text in enumerate(configs, start=1):
        lines = set(text.splitlines())
        assert f"node.id={i}" in lines
        assert voters in lines
        assert f"listeners=PLAINTEXT://127.0.0.1:{9100 + i},CONTROLLER://127.0.0.1:{9200 + i}" in (
            lines
        )
        assert f"log.dirs={tmp_path / f'n{i}'}" in lines
        for setting in (
            "default.replication.factor=3",
            "min.insync.replicas=2",
            "offsets.topic.replication.factor=3",
            "transaction.state.log.replication.factor=3",
            "transaction.state.log.min.isr=2",
            "unclean.leader.election.enable=false",
        ):
            assert setting in lines, (i, setting)
    settings = [line for c in configs for line in c.splitlines() if not line.startswith("#")]
    assert not any("$" in line for line in settings), "every placeholder is filled"


def test_a_node_outside_the_cluster_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"node 4 is not one of the cluster's 1\.\.3"):
        launcher.cluster_config(4, [(1, 2), (3, 4), (5, 6)], tmp_path)


@pytest.mark.parametrize("nodes", [0, launcher.MAX_NODES + 1])
def test_a_node_count_out_of_range_is_refused_before_anything_starts(
    nodes: int, tmp_path: Path
) -> None:
    with pytest.raises(BrokerError, match=f"--nodes must be between 1 and 5 \\(got {nodes}\\)"):
        launcher.start_cluster(tmp_path, nodes=nodes)
    assert not (tmp_path / launcher.CLUSTER_RECORD).exists()


def _record(tmp_path: Path, pids: list[int]) -> launcher.ClusterInfo:
    info = launcher.ClusterInfo(
        nodes=tuple(
            launcher.NodeInfo(i, pid, 9100 + i, 9200 + i, str(tmp_path / f"node-{i}"))
            for i, pid in enumerate(pids, start=1)
        ),
        cluster_id="abc",
        kafka_version="4.1.1",
        state_dir=str(tmp_path),
        replication_factor=3,
        min_insync_replicas=2,
        started_at=0.0,
        ready_after_s=1.0,
    )
    (tmp_path / launcher.CLUSTER_RECORD).write_text(info.to_json())
    return info


def test_the_cluster_record_round_trips_and_lists_every_node_as_bootstrap(tmp_path: Path) -> None:
    info = _record(tmp_path, [11, 12, 13])
    assert launcher.ClusterInfo.load(tmp_path) == info
    assert info.bootstrap == "127.0.0.1:9101,127.0.0.1:9102,127.0.0.1:9103"
    assert info.node(2).port == 9102
    with pytest.raises(BrokerError, match="has no node 7 \\(its nodes are 1, 2, 3\\)"):
        info.node(7)


def test_stop_and_kill_never_signal_a_process_the_launcher_did_not_start(tmp_path: Path) -> None:
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _record(tmp_path, [stranger.pid, stranger.pid, stranger.pid])
        state = launcher.status(tmp_path)
        assert not state.running
        assert "every node has exited" in state.detail
        cluster = launcher.Cluster.load(tmp_path)
        assert cluster is not None
        with pytest.raises(BrokerError, match=r"node 2 .* is not running"):
            cluster.kill(2)
        with pytest.raises(BrokerError, match="not running"):
            cluster.pause(1)
        assert "no cluster is running" in launcher.stop(tmp_path).detail
        assert stranger.poll() is None, "the unrelated process must still run"
        assert not (tmp_path / launcher.CLUSTER_RECORD).exists(), "the stale record is cleared"
    finally:
        stranger.kill()
        stranger.wait()


def test_a_corrupt_cluster_record_is_named(tmp_path: Path) -> None:
    (tmp_path / launcher.CLUSTER_RECORD).write_text('{"nodes": 3}')
    with pytest.raises(InfrastructureError, match="is not a cluster record"):
        launcher.status(tmp_path)


def test_cli_refuses_nodes_with_secure_or_a_port(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from pcf_exchange.pcfx.commands.broker import app

    runner = CliRunner()
    for extra in (["--secure"], ["--port", "9999"]):
        result = runner.invoke(app, ["start", "--nodes", "3", "--state-dir", str(tmp_path), *extra])
        assert result.exit_code != 0
        assert "--nodes runs a plaintext cluster" in result.output
    result = runner.invoke(app, ["start", "--nodes", "9", "--state-dir", str(tmp_path)])
    assert result.exit_code == 2  # out of typer's range: a usage error
