"""``pcfx publish footprints --jobs``: a JSON Lines file read and checked in other processes gives
exactly what the in-process reader gives: the same records on the topic (byte for byte), the same
rejections and reasons, the same ledger, the same summary and exit code; a checking process that
fails ends the run with a clear error, and Ctrl-C ends it without hanging."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from pcf_exchange.contracts.errors import InfrastructureError
from pcf_exchange.infra.kafka.launcher import free_port
from pcf_exchange.pcfx.commands.publish import publish_app
from pcf_exchange.producers import KeyPairFiles, Ledger, Publisher, Signer, Topics, _parallel
from pcf_exchange.producers._input import Item, read_footprints_jsonl
from pcf_exchange.producers._parallel import (
    AUTO_MIN_LINES,
    Compact,
    Line,
    _chunks,
    _expand,
    check_chunk,
    jobs_for,
    read_footprints_jsonl_parallel,
)
from tests.producers.conftest import SUPPLIER, Cluster, footprint_json
from tests.producers.test_pcr_publish import cathode, cement_in_litres

runner = CliRunner()


def _mixed_file(path: Path, padding: int = 0) -> Path:
    """Good fast-lane footprints around every kind of bad or unusual line (after *padding*
    more good ones)."""
    docs: list[bytes] = [orjson.dumps(footprint_json(n)) for n in range(12)]
    upper = footprint_json(20)
    upper["id"] = upper["id"].upper()  # the model path: accepted, written in lower case
    stages = footprint_json(21)
    stages["extensions"][0]["data"]["stageBreakdown"]["production"] = "1.00"  # a warning
    missing = footprint_json(22)
    del missing["pcf"]
    other = footprint_json(23, companyIds=["urn:pact:company:someone-else"])
    odd: list[bytes] = [
        b"",  # blank lines are skipped, not counted
        b"{not json",
        orjson.dumps(missing),
        orjson.dumps(cement_in_litres(24)),  # a broken category rule (PCR)
        orjson.dumps(cathode(25)),  # out of the plausible range: a warning, refused by --strict
        orjson.dumps(upper),
        orjson.dumps(stages),
        orjson.dumps(other),  # the producer's check: not the signing supplier
        docs[3],  # the same footprint again
        b'{"id": "a", "id": "b"}',  # a repeated key
    ]
    lines = [orjson.dumps(footprint_json(100 + n)) for n in range(padding)]
    lines += docs[:4] + odd[:5] + docs[4:8] + odd[5:] + docs[8:]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _items(path: Path, jobs: int, *, start_here: bool = False) -> list[Item]:
    if jobs == 1:
        return list(read_footprints_jsonl(path))
    return list(
        read_footprints_jsonl_parallel(
            path, jobs=jobs, strict=False, chunk_lines=3, start_here=start_here, share=start_here
        )
    )


def _outcomes(summary: Any) -> list[dict[str, Any]]:
    rows = summary.to_dict()["records"]
    for row in rows:
        row.pop("topic", None)  # each run has its own topic
    return list(rows)


@pytest.mark.broker
@pytest.mark.parametrize("start_here", [False, True])
def test_two_processes_publish_what_one_does(
    tmp_path: Path, cluster: Cluster, signer: Signer, new_topic: Any, start_here: bool
) -> None:
    """*start_here*: False, every chunk is checked by the other process; True, the first ones
    here while it starts, and slices here whenever it is behind."""
    path = _mixed_file(tmp_path / "footprints.jsonl")
    runs = {}
    for jobs in (1, 2):
        topics = Topics(**{**cluster.topics.__dict__, "declared": new_topic(partitions=3)})
        ledger_path = tmp_path / f"ledger-{jobs}.json"
        with Publisher(
            cluster.bootstrap,
            signer=signer,
            topics=topics,
            ledger=Ledger(ledger_path),
            schemas_topic=cluster.schemas_topic,
        ) as publisher:
            summary = publisher.publish_many(_items(path, jobs, start_here=start_here))
        messages = cluster.read(topics.declared, summary.sent)
        runs[jobs] = (
            _outcomes(summary),
            [(m.partition(), m.offset(), m.key(), m.value()[0], m.value()[5:]) for m in messages],
            json.loads(ledger_path.read_text()),
            summary.ok,
        )
    one, two = runs[1], runs[2]
    assert two[0] == one[0]  # every outcome: status, reasons, sequences, offsets, warnings
    assert two[1] == one[1]  # the records on the wire (past the schema id of each topic)
    assert two[2] == one[2]  # the ledger
    assert two[3] == one[3] is False  # some lines are refused
    statuses = [row["status"] for row in one[0]]
    assert statuses.count("sent") >= 14 and statuses.count("rejected") >= 5
    assert len(one[1]) == statuses.count("sent")


@pytest.mark.parametrize("strict", [False, True])
def test_cli_jobs_2_gives_the_summary_and_exit_code_of_jobs_1(
    tmp_path: Path, supplier_files: KeyPairFiles, strict: bool
) -> None:
    # the odd lines at the end: checked by the other process (this one checks the first
    # chunks of 2,000 lines itself while it starts)
    path = _mixed_file(tmp_path / "footprints.jsonl", padding=8_000)
    results = []
    for jobs in ("1", "2"):
        args = ["footprints", path, "--key", supplier_files.private_key, "--supplier", SUPPLIER]
        args += ["--dry-run", "--json", "--bootstrap", f"127.0.0.1:{free_port()}", "--jobs", jobs]
        args += ["--strict"] if strict else []
        result = runner.invoke(publish_app, [str(a) for a in args])
        results.append((result.exit_code, json.loads(result.stdout)))
    assert results[1] == results[0]
    exit_code, summary = results[0]
    assert exit_code == 1
    cathode_row = next(r for r in summary["records"] if r["ref"].endswith(":8009"))
    assert cathode_row["status"] == ("rejected" if strict else "valid")


def test_auto_starts_a_process_for_a_large_file_only(tmp_path: Path) -> None:
    small = tmp_path / "small.jsonl"
    small.write_bytes(b"{}\n" * 10)
    large = tmp_path / "large.jsonl"
    large.write_bytes(b"{}\n" * AUTO_MIN_LINES)
    assert jobs_for(small, 0) == 1
    assert jobs_for(large, 0) == 2
    assert jobs_for(small, 3) == 3
    assert jobs_for(tmp_path / "missing.jsonl", 0) == 1  # the reader reports it
    with pytest.raises(ValueError, match="jobs must be >= 0"):
        jobs_for(small, -1)


# -- a checking process that fails (module level: the spawned process imports them)


def _crash_from_line_7(name: str, lines: list[Line]) -> Sequence[Item | Compact]:
    if any(number >= 7 for number, _, _ in lines):
        os._exit(3)
    return check_chunk(name, lines, False)


def _raise_from_line_7(name: str, lines: list[Line]) -> Sequence[Item | Compact]:
    if any(number >= 7 for number, _, _ in lines):
        raise RuntimeError("a bug in the checks")
    return check_chunk(name, lines, False)


def _slow_from_line_2(name: str, lines: list[Line]) -> Sequence[Item | Compact]:
    if lines[0][0] >= 2:
        time.sleep(0.25)
    return check_chunk(name, lines, False)


def test_while_the_checking_process_is_behind_this_one_checks_slices_in_their_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _mixed_file(tmp_path / "footprints.jsonl", padding=60)
    here: list[int] = []

    def counted(name: str, lines: list[Line], strict: bool | None = None) -> Any:
        here.extend(number for number, _, _ in lines)
        return check_chunk(name, lines, strict)

    monkeypatch.setattr(_parallel, "check_chunk", counted)  # (this process only)
    shared = list(
        read_footprints_jsonl_parallel(
            path, jobs=2, strict=False, chunk_lines=10, check=_slow_from_line_2, start_here=False
        )
    )
    with open(path, "rb") as handle:
        expected = [i for c in _chunks(handle, 10) for i in _expand(str(path), check_chunk(
            str(path), c, False))]  # fmt: skip
    assert [_key(i) for i in shared] == [_key(i) for i in expected]
    # some lines were checked here (a slice: a tenth of a chunk), the rest by the other process
    assert here and len(here) < len(expected), here
    assert len(here) == len(set(here))


def _key(item: Item) -> tuple[Any, ...]:
    record = item.record
    body = getattr(record, "canonical", None) if record is not None else None
    if body is None and record is not None:
        body = record.model_dump(mode="json", by_alias=True)  # type: ignore[union-attr]
    error = None if item.error is None else item.error.violations
    return (body, item.ref, item.index, item.line, error, item.warnings, item.pcr)


@pytest.mark.parametrize(
    ("check", "cause"),
    [
        (_crash_from_line_7, "the checking process ended abruptly"),
        (_raise_from_line_7, "checking raised RuntimeError: a bug in the checks"),
    ],
)
def test_a_failing_checker_ends_the_run_with_a_clear_error(
    tmp_path: Path, signer: Signer, check: Any, cause: str
) -> None:
    path = _mixed_file(tmp_path / "footprints.jsonl")
    items = read_footprints_jsonl_parallel(
        path, jobs=2, strict=False, chunk_lines=3, check=check, start_here=False, share=False
    )
    started = time.monotonic()
    publisher = Publisher(dry_run=True, signer=signer, ledger=Ledger.in_memory())
    with publisher, pytest.raises(InfrastructureError) as raised:
        publisher.publish_many(items)
    assert time.monotonic() - started < 60
    assert raised.value.message.startswith(cause)
    # the chunk holding line 7 (lines 4, 6 and 7: the blank line 5 is no record)
    assert f"{path}:4-7;" in raised.value.message and "--jobs 1" in raised.value.hint


def test_ctrl_c_stops_the_checking_process_and_the_run(
    tmp_path: Path, supplier_files: KeyPairFiles
) -> None:
    path = tmp_path / "many.jsonl"
    line = orjson.dumps(footprint_json(0))
    path.write_bytes(b"\n".join([line] * 200_000) + b"\n")
    args = [sys.executable, "-m", "pcf_exchange.pcfx", "publish", "footprints", str(path)]
    args += ["--key", str(supplier_files.private_key), "--supplier", SUPPLIER, "--dry-run"]
    args += ["--json", "--bootstrap", f"127.0.0.1:{free_port()}", "--jobs", "2"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    deadline = time.monotonic() + 60
    checkers: list[int] = []
    while not checkers and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
        checkers = [int(pid) for pid in children.read_text().split()] if children.exists() else []
    assert checkers, "no checking process started"
    time.sleep(1.0)  # checking and publishing under way
    process.send_signal(signal.SIGINT)
    try:
        code = process.wait(timeout=60)
    except subprocess.TimeoutExpired:  # pragma: no cover - the failure this test looks for
        process.kill()
        raise
    assert code != 0
    end = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in checkers) and time.monotonic() < end:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in checkers)


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status
