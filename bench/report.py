"""Where every benchmark writes its figures.

Each benchmark calls :func:`write_result` once per figure. The result lands in
``bench/results/<name>.json`` (machine-readable: name, unit, value, the side-by-side baseline and
the ratio, the machine's facts) and :func:`render_summary` rebuilds ``BENCHMARKS.md`` from all
result files, so the table always matches the files.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
SUMMARY_FILE = ROOT / "BENCHMARKS.md"

__all__ = ["Baseline", "BenchResult", "machine_facts", "render_summary", "write_result"]


@dataclass(frozen=True)
class Baseline:
    """The figure ours is compared with, measured in the same run."""

    name: str
    value: float
    unit: str


@dataclass(frozen=True)
class BenchResult:
    name: str
    unit: str
    value: float
    higher_is_better: bool
    description: str
    baseline: Baseline | None = None
    target: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """How many times better ours is than the baseline (> 1: ours is better)."""
        if self.baseline is None or self.baseline.value == 0 or self.value == 0:
            return None
        if self.higher_is_better:
            return self.value / self.baseline.value
        return self.baseline.value / self.value

    @property
    def meets_target(self) -> bool | None:
        if self.target is None:
            return None
        return self.value >= self.target if self.higher_is_better else self.value <= self.target


def machine_facts() -> dict[str, Any]:
    """CPU, cores, memory, Python and Java versions: enough to compare runs honestly."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib: float | None = None
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        mem_gib = round(pages * size / 2**30, 1)
    except (ValueError, OSError):
        pass
    try:
        java = subprocess.run(
            ["java", "-version"], capture_output=True, text=True, timeout=20, check=False
        ).stderr.splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        java = None
    return {
        # (1, 5, 15 min) at write time: a benchmark loads about one core itself, so well above
        # 1 on this 2-core machine means other work ran beside it and the figures are lower bounds
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "python": platform.python_version(),
        "java": java,
        "os": platform.platform(),
    }


def write_result(result: BenchResult, results_dir: Path = RESULTS_DIR) -> Path:
    """Write *result* to ``<results_dir>/<name>.json`` and refresh the summary table."""
    results_dir.mkdir(parents=True, exist_ok=True)
    payload = asdict(result)
    payload["ratio"] = result.ratio
    payload["meets_target"] = result.meets_target
    payload["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    payload["machine"] = machine_facts()
    path = results_dir / f"{result.name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    if results_dir == RESULTS_DIR:
        render_summary()
    return path


def _fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _mark(met: bool | None) -> str:
    return {True: "✅", False: "❌", None: ""}[met]


def render_summary(results_dir: Path = RESULTS_DIR, out: Path = SUMMARY_FILE) -> Path:
    """Rebuild BENCHMARKS.md from every result file (sorted by name)."""
    rows = []
    machine: dict[str, Any] = {}
    for path in sorted(results_dir.glob("*.json")):
        data = json.loads(path.read_text())
        machine = data.get("machine", machine)
        base = data.get("baseline") or {}
        target = data.get("target")
        met = data.get("meets_target")
        rows.append(
            f"| {data['name']} | {_fmt(data['value'])} {data['unit']} "
            f"| {base.get('name', '—')}: {_fmt(base.get('value'))} {base.get('unit', '')} "
            f"| {_fmt(data.get('ratio'))} "
            f"| {_fmt(target)} {_mark(met)} "
            f"| {data['measured_at']} | {data['description']} |"
        )
    text = [
        "# Benchmarks",
        "",
        "Written by `make bench` from `bench/results/*.json`; do not edit by hand.",
        "Every figure was measured on the machine below; baselines in the same run, side by side.",
        "",
        f"Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, "
        f"{machine.get('memory_gib', '?')} GiB, Python {machine.get('python', '?')}, "
        f"{machine.get('java', '?')}.",
        "",
        "| benchmark | ours | baseline (same run) | ratio | target | measured | what |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    out.write_text("\n".join(text))
    return out
