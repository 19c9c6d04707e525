"""Short id prefixes where the last session left full ids: ``pcfx review show|release|reject``
(held ids are ``topic/partition/offset``), ``pcfx certificates revoke``, and the ambiguous
prefix of ``pcfx approvals approve|deny`` (exit 2 like the others, no longer 1). Through typer's
CliRunner on the whole app, without a broker: the commands' Kafka reads are replaced by
in-memory books (the held records; a :class:`~contracts.certification.CertRegistry` fed by
:class:`tests.contracts.test_cert_registry.World`).

The README's codes: a unique prefix works as the whole id; an ambiguous one is a usage error
(2) listing the candidates; one that names nothing is refused (1) naming it, and nothing is sent.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from pcf_exchange.contracts.certification import CertRegistry, Revocation, SignedStatement
from pcf_exchange.contracts.keyfiles import private_key_pem, public_key_pem, write_key_file
from pcf_exchange.contracts.pcr import ReviewEvent
from pcf_exchange.pcfx.cli import app
from pcf_exchange.pcfx.console import ExitCode
from pcf_exchange.producers import new_key_pair
from pcf_exchange.producers.certification import CertTopics
from tests.contracts.test_cert_registry import World

runner = CliRunner()
NOW = datetime.now(UTC)


@pytest.fixture(autouse=True)
def _nowhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("PCFX_CONNECT_TIMEOUT", "1")
    monkeypatch.delenv("PCFX_KEY_PASSPHRASE", raising=False)


# --- pcfx review ---------------------------------------------------------------------------

HELD = [f"t.pcf.review/{p}/{o}" for p, o in ((0, 12), (0, 120), (1, 12), (1, 7))]


def _held(held_id: str) -> ReviewEvent:
    _, partition, offset = held_id.rsplit("/", 2)
    return ReviewEvent(
        "held", held_id, NOW, "urn:pact:x:product-id:" + offset, "t.pcf.footprints",
        int(partition), int(offset), NOW, "ab" * 32, "CN-CCL-PCR-LIB-TRACTION",
        "declared-unit-range", "pcf.pCfExcludingBiogenicUptake", "out of range", b"{}",
    )  # fmt: skip


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> list[ReviewEvent]:
    from pcf_exchange.pcfx.commands import pcr

    events = [_held(h) for h in HELD]
    monkeypatch.setattr(pcr, "_servers", lambda bootstrap: "in-memory:0")
    monkeypatch.setattr(pcr, "_book", lambda servers, names: (events, []))
    return events


@pytest.mark.parametrize(
    ("wanted", "found"),
    [
        ("t.pcf.review/1/7", "t.pcf.review/1/7"),  # the whole id
        ("t.pcf.review/0/12", "t.pcf.review/0/12"),  # exact wins over being a prefix of /0/120
        ("t.pcf.review/1/1", "t.pcf.review/1/12"),  # a unique prefix
        ("0/120", "t.pcf.review/0/120"),  # its unique end: partition/offset
        ("7", "t.pcf.review/1/7"),  # the offset alone, when it is unique
    ],
)
def test_review_show_takes_a_unique_prefix_or_end(
    held: list[ReviewEvent], wanted: str, found: str
) -> None:
    result = runner.invoke(app, ["review", "show", wanted, "--json"])
    assert result.exit_code == ExitCode.OK, result.output
    assert f'"heldId": "{found}"' in result.stdout


@pytest.mark.parametrize(
    ("wanted", "candidates"),
    [
        ("t.pcf.review/0", HELD[:2]),  # a prefix of two
        ("12", [HELD[0], HELD[2]]),  # an offset on two partitions
    ],
)
def test_review_refuses_an_ambiguous_id_listing_the_candidates(
    held: list[ReviewEvent], wanted: str, candidates: list[str], tmp_path: Path
) -> None:
    officer = new_key_pair("officer", tmp_path).private_key
    for command in (
        ["review", "show", wanted],
        ["review", "release", wanted, "--key", str(officer), "--reason", "checked"],
    ):
        result = runner.invoke(app, command, env={"COLUMNS": "200"})
        assert result.exit_code == ExitCode.USAGE, result.output
        for candidate in candidates:
            assert candidate in result.output
        assert "Traceback" not in result.output


def test_review_refuses_an_unknown_id(held: list[ReviewEvent], tmp_path: Path) -> None:
    officer = new_key_pair("officer", tmp_path).private_key
    for command in (
        ["review", "show", "0/99"],
        ["review", "reject", "2", "--key", str(officer), "--reason", "wrong unit"],
    ):
        result = runner.invoke(app, command)
        assert result.exit_code == ExitCode.REJECTED, result.output
        assert "no match" in result.output and "Traceback" not in result.output


# --- pcfx certificates revoke -----------------------------------------------------------------

CERTS = ["CQC-2026-0001", "CQC-2026-0002", "CQC-2026-00021", "CQC-2027-0001"]


@pytest.fixture
def exchange(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> SimpleNamespace:
    """Three certificates of body ``cqc``; revoking sends into a list instead of Kafka."""
    from pcf_exchange.pcfx.commands import certification

    world = World()
    start = NOW - timedelta(days=10)
    world.register(start)
    for cert_id in CERTS:
        cert = world.certificate(cert_id, valid_from=start, valid_until=NOW + timedelta(days=300))
        assert world.issue(start, cert)[1] is None
    sent: list[SignedStatement] = []

    @contextlib.contextmanager
    def session(*args: Any, **kwargs: Any) -> Iterator[SimpleNamespace]:
        yield SimpleNamespace(topics=CertTopics(""))

    def publish(_: Any, keys: Any, topic: str, key: str, signed: SignedStatement) -> CertRegistry:
        sent.append(signed)
        world.registry.apply(signed, datetime.now(UTC))
        return world.registry

    monkeypatch.setattr(certification, "_session", session)
    monkeypatch.setattr(certification, "_read", lambda *a, **k: world.registry)
    monkeypatch.setattr(certification, "_publish_and_confirm", publish)
    body_key = tmp_path / "cqc.key.pem"
    write_key_file(body_key, private_key_pem(world.body_key), private=True)
    operator_pub = tmp_path / "operator.pub.pem"
    operator_pub.write_bytes(public_key_pem(world.operator.public_key()))
    return SimpleNamespace(world=world, sent=sent, key=body_key, operator=operator_pub)


def _revoke(exchange: SimpleNamespace, wanted: str) -> Any:
    return runner.invoke(
        app,
        ["certificates", "revoke", wanted, "--key", str(exchange.key), "--reason", "re-audit",
         "--as", "cqc", "--operator-key", str(exchange.operator), "--json"],
        env={"COLUMNS": "200"},
    )  # fmt: skip


def test_revoke_takes_a_unique_prefix_and_revokes_the_whole_id(exchange: SimpleNamespace) -> None:
    result = _revoke(exchange, "CQC-2027")  # a unique prefix
    assert result.exit_code == ExitCode.OK, result.output
    assert '"certificateId": "CQC-2027-0001"' in result.stdout
    assert '"status": "revoked"' in result.stdout
    result = _revoke(exchange, "CQC-2026-0002")  # the whole id wins over being a prefix of -00021
    assert result.exit_code == ExitCode.OK, result.output
    revoked = [s.open()[2] for s in exchange.sent]
    assert revoked == [
        Revocation("CQC-2027-0001", "cqc", "re-audit"),
        Revocation("CQC-2026-0002", "cqc", "re-audit"),
    ]


def test_revoke_refuses_an_ambiguous_prefix_listing_the_candidates(
    exchange: SimpleNamespace,
) -> None:
    result = _revoke(exchange, "CQC")
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "start of 4 certificates" in result.output
    for cert_id in CERTS:
        assert cert_id in result.output
    assert exchange.sent == [], "nothing is sent"


def test_revoke_refuses_an_unknown_certificate_before_sending(exchange: SimpleNamespace) -> None:
    result = _revoke(exchange, "TUV-1")
    assert result.exit_code == ExitCode.REJECTED, result.output
    assert "'TUV-1' is not on pcf.certificates" in result.output
    assert "pcfx certificates list" in result.output and "Traceback" not in result.output
    assert exchange.sent == [], "nothing is sent"


# --- pcfx approvals approve|deny ------------------------------------------------------------

APPROVALS = ["3f9a1c22-0000-4000-8000-000000000001", "3f9a1c22-0000-4000-8000-000000000002",
             "7b20e5d1-0000-4000-8000-000000000003"]  # fmt: skip


@pytest.fixture
def approvals(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A book of three approvals read by the real ``write_decision`` (its id lookup is what is
    tested); the decision that would be published is recorded instead."""
    from pcf_exchange.gateway.runtime import _officer
    from pcf_exchange.pcfx.commands import gateway_approvals

    written: list[str] = []
    book = SimpleNamespace(
        rows={i: SimpleNamespace(approval=SimpleNamespace(approval_id=i)) for i in APPROVALS}
    )

    class _Serde:
        def encode(self, *args: Any) -> bytes:
            return b""

    @contextlib.contextmanager
    def serde(servers: str, prefix: str, **_: Any) -> Iterator[_Serde]:
        yield _Serde()

    monkeypatch.setattr(gateway_approvals, "_bootstrap", lambda bootstrap: "in-memory:0")
    monkeypatch.setattr(gateway_approvals, "_serde", serde)
    monkeypatch.setattr(_officer, "read_approval_book", lambda servers, topic, serde: book)
    monkeypatch.setattr(_officer, "officer_decision", lambda row, **kw: {"at": NOW.isoformat()})
    monkeypatch.setattr(
        _officer, "publish_decision", lambda servers, topic, full_id, value: written.append(full_id)
    )
    return written


def _approve(wanted: str, tmp_path: Path, verb: str = "approve") -> Any:
    officer = new_key_pair("li-wei", tmp_path).private_key
    return runner.invoke(
        app,
        ["approvals", verb, wanted, "--key", str(officer), "--reason", "checked", "--json"],
        env={"COLUMNS": "200"},
    )


def test_approvals_take_a_unique_prefix(approvals: list[str], tmp_path: Path) -> None:
    result = _approve("7b20", tmp_path)
    assert result.exit_code == ExitCode.OK, result.output
    assert f'"approvalId": "{APPROVALS[2]}"' in result.stdout
    assert _approve(APPROVALS[1], tmp_path, "deny").exit_code == ExitCode.OK
    assert approvals == [APPROVALS[2], APPROVALS[1]], "the whole id is what is signed"


def test_approvals_refuse_an_ambiguous_prefix_listing_the_candidates(
    approvals: list[str], tmp_path: Path
) -> None:
    result = _approve("3f9a1c22", tmp_path)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "2 matches" in result.output
    assert APPROVALS[0] in result.output and APPROVALS[1] in result.output
    assert approvals == [], "nothing is written"


def test_approvals_refuse_an_unknown_id(approvals: list[str], tmp_path: Path) -> None:
    result = _approve("0000", tmp_path, "deny")
    assert result.exit_code == ExitCode.REJECTED, result.output
    assert "no match" in result.output and approvals == []
