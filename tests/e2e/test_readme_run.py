"""The README's shell blocks, run exactly as written, in order, on the real broker.

Every ```` ```sh ```` block of the README runs, unless the line before it is a
``<!-- readme-test: not run (...) -->`` comment naming the test that runs those commands
instead (``make``, a second broker, Docker); :func:`test_every_block_runs_or_names_its_mirror`
checks that the named test exists. The blocks of one ``## `` section run in one bash session
(``set -euo pipefail``, so a failing command fails the test), in a temporary directory holding
what the README refers to (``demo/``, ``producers/data/``, ``gateway/policies/``), with the
venv on PATH, ``KAFKA_BOOTSTRAP_SERVERS`` the test broker and a fresh ``PCFX_TOPIC_PREFIX``.
Between blocks the test checks what each block promises (a footprint acknowledged, the
what-if figure, an approval approved, the audit log verified, the API answering over TLS, the
services the demo left running alive and then stopped).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from pcf_exchange.contracts import load_factors
from pcf_exchange.pcfx._services import Services, is_running
from pcf_exchange.pcfx.commands.demo import DEMO_DIR, FACTORS_FILE, PACK, records_on

pytestmark = [pytest.mark.broker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
NOT_RUN = re.compile(r"<!-- readme-test: not run \((?P<why>.*)\) -->")
MIRROR = re.compile(r"(tests/[\w/]+\.py)::(\w+)")
RUN_SECTIONS = ("Walkthroughs", "Your own exchange (platform operator)")


@dataclass(frozen=True)
class Block:
    section: str
    text: str
    not_run: str | None


def readme_blocks() -> list[Block]:
    blocks: list[Block] = []
    section = ""
    lines = (ROOT / "README.md").read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section = line[3:].strip()
        if line.strip() in ("```sh", "```bash"):
            previous = next((p for p in reversed(lines[:i]) if p.strip()), "")
            marker = NOT_RUN.search(previous)
            end = lines.index("```", i + 1)
            text = "\n".join(lines[i + 1 : end]) + "\n"
            blocks.append(Block(section, text, marker.group("why") if marker else None))
            i = end
        i += 1
    return blocks


BLOCKS = readme_blocks()


def test_every_block_runs_or_names_its_mirror() -> None:
    run = [b for b in BLOCKS if b.not_run is None]
    assert {b.section for b in run} == set(RUN_SECTIONS)
    for block in BLOCKS:
        if block.not_run is None:
            continue
        for path, name in MIRROR.findall(block.not_run):
            assert re.search(rf"^def {name}\(", (ROOT / path).read_text(), flags=re.M), name
        if "make " not in block.text:  # `make test` is the suite itself
            assert MIRROR.search(block.not_run), f"name the test that mirrors:\n{block.text}"


class Shell:
    """One bash session fed block by block (each block ``source``d with stdin from /dev/null,
    so variables carry over, as when a user pastes them into one terminal)."""

    def __init__(self, cwd: Path, env: dict[str, str], name: str) -> None:
        self.cwd = cwd
        self.log = cwd / f".readme-{name}.log"
        self.count = 0
        self.out = self.log.open("ab")
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=self.out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._send("set -euo pipefail\n")

    def _send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def run(self, script: str, timeout_s: float = 240.0) -> str:
        """Run *script*; return its output. Fails the test if bash exits (a command failed)."""
        self.count += 1
        path = self.cwd / f".readme-block-{self.count}.sh"
        path.write_text(script)
        start = self.log.stat().st_size
        done = f"__readme_block_{self.count}_done__"
        self._send(f"source {path.name} < /dev/null\necho {done}\n")
        deadline = time.monotonic() + timeout_s
        while True:
            text = self.log.read_bytes()[start:].decode(errors="replace")
            if done in text:
                return text.split(done, 1)[0]
            if self.proc.poll() is not None:
                pytest.fail(f"exit code {self.proc.returncode} in:\n{script}\noutput:\n{text}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout_s:.0f} s in:\n{script}\noutput:\n{text}")
            time.sleep(0.3)

    def close(self) -> None:
        """End the session and everything it started in the background."""
        if self.proc.poll() is None:
            try:
                self._send("exit 0\n")
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not _group_alive(self.proc.pid):
                break
            os.killpg(self.proc.pid, sig)
            deadline = time.monotonic() + 3
            while _group_alive(self.proc.pid) and time.monotonic() < deadline:
                time.sleep(0.1)  # up to 3 s for the group to end (not 3 s whatever happens)
        self.out.close()


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group *pgid* is left (signal 0 probes, sends nothing)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    """A stand-in for the repository root with the files the README refers to."""
    shutil.copytree(ROOT / "demo", tmp_path / "demo")
    shutil.copytree(ROOT / "producers" / "data", tmp_path / "producers" / "data")
    shutil.copytree(ROOT / "gateway" / "policies", tmp_path / "gateway" / "policies")
    yield tmp_path
    from pcf_exchange.pcfx._services import stop_services

    stop_services(tmp_path / ".pcfx" / "demo")  # a failed run leaves nothing behind


def shell_env(bootstrap: str, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PCFX_")}
    return {
        **env,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "PCFX_TOPIC_PREFIX": f"readme-{uuid.uuid4().hex[:10]}.",
        "PCFX_LEDGER": str(workdir / ".ledger.json"),
        "PCFX_KEY_DIR": str(workdir / ".keydir"),
        "COLUMNS": "200",
        "PYTHONUNBUFFERED": "1",
    }


def section(name: str) -> list[str]:
    return [b.text for b in BLOCKS if b.section == name and b.not_run is None]


def expected_what_if_pack() -> Decimal:
    from pcf_exchange.streams.batch import run_rollup

    outcome = run_rollup(
        [DEMO_DIR / "suppliers-footprints.json"],
        [DEMO_DIR / "manufacturers-boms.json", DEMO_DIR / "cell-green-electricity.json"],
        [FACTORS_FILE],
    )
    return next(r.pcf_excluding_biogenic_uptake for r in outcome.records if r.product_id == PACK)


@pytest.mark.timeout(1200)  # the demo, then eleven blocks (three of them certification's)
def test_the_walkthroughs_run_on_the_demo_left_running(kafka_bootstrap: str, workdir: Path) -> None:
    blocks = section("Walkthroughs")
    assert len(blocks) == 11, "update this test with the README's walkthrough blocks"
    start, supplier, broken, update, manufacturer, officer = blocks[:6]
    certify, stale, blacklist, api, stop = blocks[6:]
    shell = Shell(workdir, shell_env(kafka_bootstrap, workdir), "walkthroughs")
    try:
        # pcfx demo --keep-running: the demo, then the broker, worker and gateway stay up
        out = shell.run(start, timeout_s=600)  # the demo's certification and Art. 7 acts too
        assert "Demo complete." in out and "Try next" in out and "pcfx demo stop" in out
        services = Services.load(workdir / ".pcfx" / "demo")
        assert services is not None and services.bootstrap == kafka_bootstrap
        assert {s.name for s in services.processes} == {"streams worker w1", "gateway"}
        assert all(is_running(s) for s in services.processes)
        env_sh = (workdir / ".pcfx" / "demo" / "env.sh").read_text()
        assert f"export KAFKA_BOOTSTRAP_SERVERS={kafka_bootstrap}\n" in env_sh
        assert f"export PCFX_TOPIC_PREFIX={services.prefix}\n" in env_sh

        out = shell.run(supplier)
        assert re.search(r"OK: key \w+ of '\S+qh-lithium' registered", out), out
        assert "OK: 1 footprints valid" in out
        assert f"OK: 1 footprints acknowledged on {services.prefix}pcf.declared" in out

        out = shell.run(broken)
        assert "FAIL broken.json#0" in out
        assert "'pcf.pcfExcludingBiogenicUptake': must be a decimal string" in out
        assert out.rstrip().endswith("exit code 1: nothing sent"), out

        out = shell.run(update)
        assert "supersedes c2532e91-7302-521b-8d33-5f24e27cbce7 (precedingPfIds)" in out
        assert f"OK: 2 footprints acknowledged on {services.prefix}pcf.declared" in out

        out = shell.run(manufacturer)
        assert f"OK: 1 boms acknowledged on {services.prefix}pcf.bom" in out
        assert f"Hotspots of {PACK}" in out
        assert "Wrote 6 results to what-if.json" in out
        assert Decimal(out.strip().splitlines()[-1]) == expected_what_if_pack()

        out = shell.run(officer, timeout_s=300)
        assert "OK: policy pcfx-default" in out
        approved = re.search(
            r"OK: approval ([0-9a-f-]{36}) approved by li-wei \(key [0-9a-f]{32}\)", out
        )
        assert approved, out
        assert re.search(r"gateway-p\d+: OK: \d+ entries, \d+ checkpoints", out), out
        assert "FAIL" not in out
        report = (workdir / "audit-report.html").read_text()
        assert "Every audit log verified" in report and approved.group(1)[:8] in report
        assert re.fullmatch(r'"\d+\.\d+"', out.strip().splitlines()[-1]), out

        # a certification body: register, certify, label, verify offline
        out = shell.run(certify, timeout_s=300)
        assert "OK: body 'cqc' registered for LITHIUM_BATTERY" in out, out
        assert (
            "OK: certificate CQC-2026-0001 for urn:pact:qh-lithium.cn:product-id:LI2CO3-BG" in out
        )
        assert "OK: label for CQC-2026-0001" in out and "(8) footprint current" in out
        assert out.rstrip().endswith("VALID") and "NOT VALID" not in out, out
        assert (workdir / "labels" / "CQC-2026-0001.qr.png").read_bytes().startswith(b"\x89PNG")

        out = shell.run(stale, timeout_s=300)
        assert "STALE: certificate CQC-2026-0001" in out and "exit code 1: stale" in out, out
        assert out.rstrip().endswith("exit code 1: the label is stale"), out

        out = shell.run(blacklist, timeout_s=300)
        assert "OK: body 'cqc' blacklisted from" in out and "exit code 1: refused" in out, out
        assert "body 'cqc' is blacklisted since" in out, out
        assert '"status": "flagged"' in out, out

        out = shell.run(api, timeout_s=180)
        assert '"pcf": "' in out and PACK in out, out
        assert "PACT v3 API" in (workdir / "api.log").read_text()
        # the footprints it served are disclosure entries on its own chain, which verifies
        assert re.search(r"pcfx-api: OK: \d+ entries, \d+ checkpoints", out), out
        assert "FAIL" not in out

        # pcfx demo stop: what the demo left running is alive until now, then gone
        assert all(is_running(s) for s in services.processes)
        out = shell.run(stop, timeout_s=120)
        for service in services.processes:
            assert f"stopped {service.name} (pid {service.pid})" in out
            assert not is_running(service)
        assert f"The broker at {kafka_bootstrap} was not started by the demo" in out
        assert not (workdir / ".pcfx" / "demo" / "services.json").exists()
    finally:
        shell.close()


def test_your_own_exchange_runs_the_services(kafka_bootstrap: str, workdir: Path) -> None:
    start, stop = section("Your own exchange (platform operator)")
    env = shell_env(kafka_bootstrap, workdir)
    prefix = env["PCFX_TOPIC_PREFIX"]
    shell = Shell(workdir, env, "own-exchange")
    try:
        out = shell.run(start)
        assert f"factors acknowledged on {prefix}pcf.factors" in out, out
        assert "OK: policy pcfx-default" in out
        pids = [int(p) for p in shell.run('echo "$STREAMS_PID $GATEWAY_PID"\n').split()]
        # the worker and the gateway are up: their topics appear, and they keep running
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="readme-test")
        try:
            deadline = time.monotonic() + 120
            wanted = {f"{prefix}pcf.products", f"{prefix}pcf.audit"}
            while not wanted <= set(admin.list_topics()) and time.monotonic() < deadline:
                time.sleep(1)
            assert wanted <= set(admin.list_topics())
        finally:
            admin.close()
        # and the worker ingests the factors: one ledger record each
        factors = sum(1 for r in load_factors(FACTORS_FILE) if r.value)
        ledger = f"{prefix}pcfx-streams-ingest-ledger-changelog"
        deadline = time.monotonic() + 120
        while records_on(kafka_bootstrap, ledger) < factors and time.monotonic() < deadline:
            time.sleep(1)
        log = (workdir / "streams.log").read_text()
        assert records_on(kafka_bootstrap, ledger) >= factors, log[-2000:]
        for pid in pids:
            assert Path(f"/proc/{pid}").exists(), (workdir / "streams.log").read_text()[-2000:]
        shell.run(stop)
        deadline = time.monotonic() + 60
        while any(Path(f"/proc/{p}").exists() for p in pids) and time.monotonic() < deadline:
            shell.run("sleep 1\n")  # bash reaps its background jobs
        assert not any(Path(f"/proc/{p}").exists() for p in pids)
    finally:
        shell.close()
