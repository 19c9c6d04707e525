"""A randomized nemesis, the Jepsen way: a seeded schedule of faults against the whole exchange
under load, then a checker.

``python -m tests.reliability.nemesis [--seed N] [--minutes M]`` starts a private 3-node
cluster, the exchange on it (:class:`~tests.reliability._exchange.Exchange`: the demo chain, one
streams worker, the gateway releasing to the EU OEM, a steady load of new supplier versions),
and plays :func:`schedule` for *M* minutes, one fault at a time:

=================  ===========================================================================
``kill-broker``    kill -9 one node, restart it on its data after the fault's duration
``pause-broker``   SIGSTOP one node for the duration (it answers nothing), then SIGCONT
``pause-worker``   SIGSTOP the streams worker (longer than its session: the group moves on)
``pause-gateway``  SIGSTOP the gateway (its transaction times out, its partitions move)
``kill-worker``    kill -9 the streams worker, start a new one after the duration
``kill-gateway``   kill -9 the gateway, start a new one after the duration
=================  ===========================================================================

One fault at a time keeps the cluster within what replication 3 / ``min.insync.replicas`` 2
promises (one node down). After the schedule, everything is healed, the load stops, and
:meth:`~tests.reliability._exchange.Exchange.check` compares the final roll-ups with the
oracle and the outbound topic with the audit chains. The seed is printed first and last: the
same seed replays the same schedule (the timing of the processes around it differs, as on any
real machine). Exit code 0 when the verdict is clean, 1 when it is not.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pcf_exchange.infra.kafka.launcher import Cluster, start_cluster
from tests.reliability._exchange import Exchange, Verdict, signal_process

KINDS = (
    "kill-broker",
    "pause-broker",
    "pause-worker",
    "pause-gateway",
    "kill-worker",
    "kill-gateway",
)


@dataclass(frozen=True)
class Fault:
    """One fault of a schedule: what, against whom, when (seconds from the start), how long."""

    at_s: float
    kind: str
    target: str
    """``node-<id>`` for a broker fault, ``worker`` or ``gateway`` for a process."""
    duration_s: float

    def describe(self) -> str:
        return f"t+{self.at_s:5.1f}s {self.kind:<13} {self.target:<8} for {self.duration_s:4.1f}s"


@dataclass(frozen=True)
class NemesisResult:
    seed: int
    minutes: float
    faults: tuple[Fault, ...]
    verdict: Verdict
    load_sent: int
    send_failures: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.verdict.ok and not self.send_failures


def schedule(seed: int, minutes: float, nodes: Sequence[int] = (1, 2, 3)) -> tuple[Fault, ...]:
    """The faults of a run, from *seed* alone: 4–25 s each, 3–12 s of calm between two."""
    if minutes <= 0:
        raise ValueError(f"--minutes must be positive (got {minutes})")
    rng = random.Random(seed)
    total = minutes * 60
    faults: list[Fault] = []
    at = rng.uniform(5, 10)
    while at < total:
        kind = rng.choice(KINDS)
        target = (
            f"node-{rng.choice(list(nodes))}" if kind.endswith("broker") else kind.split("-")[1]
        )
        duration = round(rng.uniform(4, 25), 1)
        faults.append(Fault(round(at, 1), kind, target, duration))
        at += duration + rng.uniform(3, 12)
    return tuple(faults)


def _apply(fault: Fault, cluster: Cluster, exchange: Exchange, generation: list[int]) -> None:
    """Inject *fault*, wait its duration, heal it."""
    if fault.kind.endswith("broker"):
        node = int(fault.target.split("-")[1])
        if fault.kind == "kill-broker":
            cluster.kill(node)
            time.sleep(fault.duration_s)
            cluster.restart(node)
        else:
            cluster.pause(node)
            try:
                time.sleep(fault.duration_s)
            finally:
                cluster.resume(node)
        return
    procs = exchange.workers if fault.target == "worker" else exchange.gateways
    current = procs[-1]
    if fault.kind.startswith("pause"):
        signal_process(current, signal.SIGSTOP)
        try:
            time.sleep(fault.duration_s)
        finally:
            signal_process(current, signal.SIGCONT)
        return
    signal_process(current, signal.SIGKILL)
    current.wait(timeout=60)
    time.sleep(fault.duration_s)
    generation[0] += 1
    name = f"{fault.target[0]}{generation[0]}"
    if fault.target == "worker":
        exchange.start_worker(name)
    else:
        exchange.start_gateway(name)


def run(
    cluster: Cluster,
    workdir: Path,
    *,
    seed: int,
    minutes: float,
    log: Callable[[str], None] = print,
) -> NemesisResult:
    """Play the schedule of *seed* for *minutes* against a fresh exchange on *cluster*."""
    faults = schedule(seed, minutes, cluster.node_ids)
    exchange = Exchange(cluster.bootstrap, workdir)
    try:
        exchange.prepare_gateway()
        exchange.start_worker("w0")
        exchange.publish_demo_chain()
        exchange.start_gateway("g0")
        exchange.wait_for(lambda got: len(got) >= 1, what="the first roll-up", timeout_s=180)
        load = exchange.load_in_background(1_000_000, interval_s=0.25)
        load.start()
        began = time.monotonic()
        generation = [0]
        try:
            for fault in faults:
                time.sleep(max(0.0, fault.at_s - (time.monotonic() - began)))
                log(f"nemesis: {fault.describe()}")
                _apply(fault, cluster, exchange, generation)
        finally:
            load.stop()
        log(f"nemesis: healed; {load.sent} versions published; waiting for the oracle")
        converged = exchange.wait_converged(timeout_s=300)
        if converged:
            exchange.wait_quiet(settle_s=8, timeout_s=180)
        time.sleep(10)  # the gateway's last transaction commits
        verdict = exchange.check()
        if not verdict.ok:
            log(exchange.logs())
        return NemesisResult(
            seed, minutes, faults, verdict, load.sent, tuple(exchange.send_failures)
        )
    finally:
        exchange.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.reliability.nemesis",
        description="Seeded faults against the exchange on a private 3-node cluster, then a"
        " checker (oracle, outbound against audit). Prints the seed to replay a failure.",
    )
    parser.add_argument("--seed", type=int, default=None, help="replay this schedule")
    parser.add_argument("--minutes", type=float, default=2.0, help="how long to inject faults")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    print(f"nemesis: seed {seed} ({args.minutes} min); replay: --seed {seed}", flush=True)
    # stopped by SIGTERM (a supervisor, a CI timeout): unwind, so that the cluster this run
    # started and every process of the exchange are stopped by the ``finally`` blocks
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="pcfx-nemesis-") as tmp:
        cluster = start_cluster(Path(tmp) / "cluster", nodes=3)
        try:
            result = run(
                cluster,
                Path(tmp) / "exchange",
                seed=seed,
                minutes=args.minutes,
                log=lambda line: print(line, flush=True),
            )
        finally:
            cluster.stop()
    kinds = sorted({f.kind for f in result.faults})
    print(
        f"nemesis: {len(result.faults)} faults ({', '.join(kinds)}); {result.verdict.summary()};"
        f" send failures {len(result.send_failures)}"
    )
    for line in (*result.verdict.rejected[:10], *result.verdict.mismatched[:10]):
        print(f"nemesis:   {line}")
    for line in result.send_failures[:10]:
        print(f"nemesis:   not acknowledged: {line}")
    print(f"nemesis: {'OK' if result.ok else 'FAILED'} — seed {seed} (replay: --seed {seed})")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
