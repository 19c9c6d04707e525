"""The console's view model (pure): transfers from audit entries, forged rows, filters, charts,
grouped fields; and the offline report built on it (``pcfx audit report``)."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest

from pcf_exchange.contracts.errors import ValidationFailed
from pcf_exchange.gateway import GatewaySecrets, KeyRing, Policy
from pcf_exchange.gateway.audit import (
    AuditEntry,
    AuditVerification,
    ChainHead,
    EntryKind,
    JsonLinesAuditStore,
    chain_new_entry,
)
from pcf_exchange.gateway.audit._export import read_export
from pcf_exchange.gateway.audit._report import render_report
from pcf_exchange.gateway.console import (
    Filters,
    Status,
    TransferView,
    build_transfers,
    field_groups,
    filter_transfers,
    render_chart,
    timeline,
    totals,
    verify_logs,
)
from pcf_exchange.gateway.policy import CounterState
from tests.gateway._console_logs import CBAM, DAY, Scenario, build_scenario
from tests.gateway._factories import NOW


@pytest.fixture
def scenario(
    tmp_path: Path, policy: Policy, secrets: GatewaySecrets, counters: CounterState
) -> Scenario:
    return build_scenario(tmp_path, policy, secrets, counters)


def _views(
    path: Path, keys: KeyRing
) -> tuple[dict[str, list[AuditEntry]], dict[str, AuditVerification], list[TransferView]]:
    entries, checkpoints, problems = read_export(path)
    assert problems == []
    verifications = verify_logs(entries, checkpoints, keys)
    return entries, verifications, build_transfers(entries, verifications)


def _forge_transfer(path: Path, recipient: str) -> None:
    """Someone with write access appends a well-chained transfer the gateway never made."""
    entries, _, _ = read_export(path)
    (chain,) = entries.values()
    template = next(e for e in chain if e.kind == EntryKind.TRANSFER.value)
    fields = {
        name: getattr(template, name)
        for name in ("kind", "decision_id", "record_pf_id", "record_sha256", "outcome", "purpose")
    }
    fields |= {"recorded_at": template.recorded_at, "recipient_id": recipient, "jurisdiction": "XX"}
    forged, _ = chain_new_entry(ChainHead.of(chain), fields)
    JsonLinesAuditStore(path).append([forged])


# ----------------------------------------------------------------------------------------------
# transfers


def test_a_transfer_released_after_approval_is_one_released_row_naming_the_approver(
    scenario: Scenario, keyring: KeyRing
) -> None:
    _, verifications, rows = _views(scenario.path, keyring)
    assert all(v.ok for v in verifications.values())
    by_status = {s: [r for r in rows if r.status is s] for s in Status}
    (released,) = by_status[Status.RELEASED]
    assert released.label == "released (approved by bob)"
    assert released.approver == "bob" and released.approval_reason == "CBAM Q2 report, LOCODE only"
    assert released.entry.kind == "transfer_held" and released.release is not None
    assert released.sent_entry is released.release  # what went out is the release's fields
    assert [e.kind for e in released.history] == [
        "transfer_held",
        "approval_approved",
        "transfer",
    ]
    (denied,) = by_status[Status.DENIED]
    assert denied.label == "denied by bob"
    assert (denied.approval_reason or "").startswith("no CBAM")
    (held,) = by_status[Status.HELD]
    assert held.label == "held for approval" and held.approver is None
    assert held.entry.approval_id == scenario.pending.approval_id
    assert len(by_status[Status.SENT]) == 3 and len(by_status[Status.BLOCKED]) == 1
    # seven transfer decisions; the release is not a second transfer
    assert len(rows) == 7
    total = totals(rows)
    assert total.went_out == 4 and total.by_status[Status.HELD] == 1 and total.not_proven == 0


def test_a_forged_transfer_is_marked_and_not_counted(scenario: Scenario, keyring: KeyRing) -> None:
    _forge_transfer(scenario.path, "evil-corp")
    _, verifications, rows = _views(scenario.path, keyring)
    (verification,) = verifications.values()
    assert not verification.ok  # appended by another writer: no gateway seal vouches for it
    forged = [r for r in rows if r.entry.recipient_id == "evil-corp"]
    assert len(forged) == 1 and forged[0].status is Status.NOT_PROVEN
    assert forged[0].problem and "fails verification" in forged[0].problem
    assert "unvouched" not in forged[0].label and forged[0].label.startswith("NOT PROVEN")
    total = totals(rows)
    assert total.went_out == 4 and total.not_proven == 1  # the forged one counts nowhere
    assert "evil-corp" not in {
        r.entry.recipient_id for r in filter_transfers(rows, Filters()) if r.counted
    }


def test_an_altered_entry_and_everything_after_the_last_good_checkpoint_are_not_proven(
    scenario: Scenario, keyring: KeyRing
) -> None:
    lines = scenario.path.read_text().splitlines()
    # entry 8 (day 3's OEM transfer) now claims another recipient
    at = next(
        i for i, line in enumerate(lines) if json.loads(line).get("entry", {}).get("seq") == 8
    )
    item = json.loads(lines[at])
    item["entry"]["recipient"]["id"] = "someone-else"
    lines[at] = json.dumps(item)
    scenario.path.write_text("\n".join(lines) + "\n")
    _, verifications, rows = _views(scenario.path, keyring)
    (verification,) = verifications.values()
    # day 1 is sealed by its own checkpoint; the second checkpoint no longer matches
    assert verification.sealed_size == 3 and verification.first_bad_entry == 3
    assert [r.entry.seq for r in rows if r.counted] == [0, 1, 2]
    altered = next(r for r in rows if r.entry.seq == 8)
    assert altered.status is Status.NOT_PROVEN and "entry 8 was altered" in (altered.problem or "")
    assert altered.entry.recipient_id == "someone-else"  # shown as found, marked
    held = next(r for r in rows if r.entry.seq == 3)
    assert held.status is Status.NOT_PROVEN and held.problem
    # held 3, its release 5, held 6, transfer 8, held 9: each shown once, marked
    assert totals(rows).went_out == 2 and totals(rows).not_proven == 5


def test_a_log_without_a_verification_counts_nothing(scenario: Scenario, keyring: KeyRing) -> None:
    entries, _, _ = _views(scenario.path, keyring)
    rows = build_transfers(entries, {})
    assert rows and all(r.status is Status.NOT_PROVEN for r in rows)
    assert totals(rows).counted == 0


# ----------------------------------------------------------------------------------------------
# filters


def test_filters_narrow_by_each_field(scenario: Scenario, keyring: KeyRing) -> None:
    _, _, rows = _views(scenario.path, keyring)
    assert {r.entry.recipient_id for r in filter_transfers(rows, Filters(recipient=CBAM[0]))} == {
        CBAM[0]
    }
    assert len(filter_transfers(rows, Filters(jurisdiction="NL"))) == 3
    assert len(filter_transfers(rows, Filters(jurisdiction="DE"))) == 4
    assert len(filter_transfers(rows, Filters(decision=Status.RELEASED))) == 1
    pf = rows[0].entry.record_pf_id or ""
    assert len(filter_transfers(rows, Filters(product=pf[:8]))) == 7  # one footprint throughout
    assert filter_transfers(rows, Filters(product="no-such-footprint")) == []
    day2 = (NOW + DAY).date()
    assert {r.status for r in filter_transfers(rows, Filters(since=day2, until=day2))} == {
        Status.RELEASED,
        Status.DENIED,
    }
    assert len(filter_transfers(rows, Filters(since=(NOW + 2 * DAY).date()))) == 2


def test_filters_parse_query_parameters_and_name_every_bad_one() -> None:
    parsed = Filters.parse(
        {
            "recipient": " eu-x ",
            "decision": "held",
            "since": "2026-05-04",
            "until": "",
            "product": "",
        }
    )
    assert parsed == Filters(recipient="eu-x", decision=Status.HELD, since=date(2026, 5, 4))
    assert parsed.query() == {"recipient": "eu-x", "decision": "held", "since": "2026-05-04"}
    with pytest.raises(ValidationFailed) as caught:
        Filters.parse({"decision": "maybe", "since": "yesterday", "until": "2026-13-01"})
    paths = [v.path for v in caught.value.violations]
    assert paths == ["decision", "since", "until"]
    message = caught.value.message
    assert "'since': must be a date YYYY-MM-DD (got 'yesterday')" in message
    assert "must be one of sent, released, held" in message and "(got 'maybe')" in message
    with pytest.raises(ValidationFailed, match="'until': must not be before since"):
        Filters.parse({"since": "2026-05-05", "until": "2026-05-04"})


# ----------------------------------------------------------------------------------------------
# the timeline


def test_the_timeline_stacks_proven_transfers_per_day(scenario: Scenario, keyring: KeyRing) -> None:
    _forge_transfer(scenario.path, "evil-corp")
    _, _, rows = _views(scenario.path, keyring)
    chart = timeline(rows, by="decision")
    assert chart.buckets == tuple((NOW + i * DAY).date().isoformat() for i in range(3))
    series = {s.name: s.values for s in chart.series}
    assert series == {
        "sent": (2, 0, 1),
        "released": (0, 1, 0),
        "held": (0, 0, 1),
        "blocked": (1, 0, 0),
        "denied": (0, 1, 0),
    }
    assert chart.peak == 3  # the forged transfer (dated day 1) is not drawn
    by_destination = timeline(rows, by="destination")
    assert {s.name: s.values for s in by_destination.series} == {
        "DE": (3, 0, 1),
        "NL": (0, 2, 1),
    }
    svg = render_chart(chart)
    # one bar per non-empty (series, day) cell
    assert svg.count('class="series"') == 5 and svg.count('class="bar"') == 6
    assert "<script" not in svg
    with pytest.raises(ValueError, match="'decision' or 'destination'"):
        timeline(rows, by="colour")


def test_an_empty_period_draws_an_empty_chart() -> None:
    chart = timeline([], by="decision", since=date(2026, 1, 1), until=date(2026, 1, 3))
    assert len(chart.buckets) == 3 and chart.series == () and chart.peak == 0
    assert "no transfers in this period" in render_chart(chart)


# ----------------------------------------------------------------------------------------------
# field by field


def test_field_groups_fold_lineage_paths_by_shape_and_parent(
    scenario: Scenario, keyring: KeyRing, policy: Policy
) -> None:
    _, _, rows = _views(scenario.path, keyring)
    sent = next(r for r in rows if r.status is Status.SENT and r.entry.outcome == "transformed")
    paths = sum(len(p) for _, _, p in sent.entry.field_actions)
    basis = {r.id: r.basis for r in policy.rules}
    groups = field_groups(sent.entry, basis)
    assert sum(g.paths for g in groups) == paths  # nothing lost
    assert len(groups) < paths / 2  # and far fewer rows than paths
    assert {g.category for g in groups} <= {"sent", "transformed", "withheld"}
    assert [g.category for g in groups] == sorted(
        (g.category for g in groups),
        key=["sent", "sent on approval", "transformed", "withheld"].index,
    )
    assert all("[" not in g.parent or "[*]" in g.parent for g in groups)
    assert all(g.basis == basis[g.rule] for g in groups if g.rule in basis)
    withheld = [g for g in groups if g.category == "withheld"]
    assert withheld, "the OEM does not get sub-tier identities or plant addresses"
    released = next(r for r in rows if r.status is Status.RELEASED)
    assert released.sent_entry is not None
    held_rule = scenario.pending.held[0][1]
    (as_logged,) = [g for g in field_groups(released.sent_entry) if g.rule == held_rule]
    assert as_logged.category == "withheld"  # a hold, read without the approval
    (as_released,) = [
        g for g in field_groups(released.sent_entry, approved=True) if g.rule == held_rule
    ]
    assert as_released.category == "sent on approval" and as_released.leaves == ("unLocode",)


# ----------------------------------------------------------------------------------------------
# the offline report


def test_the_report_shows_releases_approvers_and_marks_forged_rows(
    scenario: Scenario, keyring: KeyRing
) -> None:
    _forge_transfer(scenario.path, "evil-corp")
    entries, verifications, _ = _views(scenario.path, keyring)
    page = render_report(entries, verifications, source="audit.jsonl")
    assert "released (approved by bob)" in page and "CBAM Q2 report, LOCODE only" in page
    assert "denied by bob" in page and "no CBAM goods in this shipment" in page
    assert "NOT INTACT" in page and 'class="not-proven"' in page
    summary = page[page.index("<h2>Summary</h2>") : page.index("<h2>Recipients")]
    assert '<td>transfers that went out</td><td class="num">4</td>' in summary
    assert '<td>entries not proven (not counted)</td><td class="num">1</td>' in summary
    recipients = page[page.index("<h2>Recipients") : page.index("<h2>Legal mechanisms")]
    assert "evil-corp" not in recipients  # the forged recipient is in no total
    fields = page[page.index("<h2>Per-field") : page.index("<h2>Why")]
    assert fields.count("<tr>") < 40 and "[*]" in fields
    assert "<script" not in page.lower()


def test_the_report_narrows_to_a_period(scenario: Scenario, keyring: KeyRing) -> None:
    entries, verifications, _ = _views(scenario.path, keyring)
    day2 = (NOW + DAY).date()
    page = render_report(entries, verifications, source="f", since=day2, until=day2)
    summary = page[page.index("<h2>Summary</h2>") : page.index("<h2>Recipients")]
    assert '<td>transfers that went out</td><td class="num">1</td>' in summary
    assert '<td>transfers denied</td><td class="num">1</td>' in summary
    assert '<td>transfers sent</td><td class="num">0</td>' in summary
    assert f"Period {day2.isoformat()} to {day2.isoformat()}" in page
    later = render_report(
        entries, verifications, source="f", since=(NOW + 3 * DAY).date(), until=None
    )
    assert '<td>transfers that went out</td><td class="num">0</td>' in later
    assert "Every audit log verified" in later  # verification is about the whole log
    assert (NOW + timedelta(days=3)).date() > (NOW + 2 * DAY).date()


def test_the_console_package_exports_what_all_says() -> None:
    import types

    from pcf_exchange.gateway import console

    names = list(console.__all__)
    assert names == sorted(names)
    public = {
        n
        for n, v in vars(console).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType)
    }
    assert public == set(names)


@pytest.mark.parametrize("first_bad", range(11))
def test_wherever_a_log_goes_bad_nothing_is_lost_or_counted_twice(
    scenario: Scenario, keyring: KeyRing, first_bad: int
) -> None:
    """For every position of the first bad entry: each transfer-kind entry is in exactly one
    row (as its opening entry or its release), and a counted row rests only on proven entries."""
    from pcf_exchange.gateway.audit import Finding, Problem

    entries, _, _ = read_export(scenario.path)
    (chain,) = entries.values()
    assert len(chain) == 10
    verdict = AuditVerification(
        entries=len(chain),
        checkpoints=0,
        findings=(Finding(Problem.ALTERED, "altered", entry=first_bad),)
        if first_bad < len(chain)
        else (),
        sealed_size=first_bad,
        first_bad_entry=first_bad if first_bad < len(chain) else None,
    )
    rows = build_transfers(entries, {"default": verdict})
    transfer_kinds = {"transfer", "transfer_blocked", "transfer_held"}
    placed = [r.entry.seq for r in rows] + [r.release.seq for r in rows if r.release]
    assert sorted(placed) == [e.seq for e in chain if e.kind in transfer_kinds]
    for row in rows:
        if row.counted:
            assert all(e.seq < first_bad for e in row.history), row.key
        else:
            assert row.entry.seq >= first_bad and row.problem
    assert totals(rows).not_proven == sum(
        1 for e in chain if e.kind in transfer_kinds and e.seq >= first_bad
    )


def test_a_file_source_rereads_only_when_the_file_changes(scenario: Scenario) -> None:
    from pcf_exchange.gateway.console import FileAuditSource

    source = FileAuditSource(scenario.path)
    first = source.load()
    assert source.load() is first  # unchanged: the same snapshot (the console reuses its check)
    assert list(first.entries) == ["test-log"]  # named by its checkpoints' log id
    _forge_transfer(scenario.path, "evil-corp")
    second = source.load()
    assert second is not first and len(second.entries["test-log"]) == 11
