"""``python -m bench [NAME ...]``: run every benchmark (``bench/bench_*.py``) one after the
other — never in parallel, so figures do not steal each other's cores — and rebuild
BENCHMARKS.md. A benchmark that fails is reported and the others still run; the exit code is 1
if any failed."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench.report import render_summary

BENCH_DIR = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    names = argv or sorted(p.stem for p in BENCH_DIR.glob("bench_*.py"))
    failed = []
    for name in names:
        module = name if name.startswith("bench_") else f"bench_{name}"
        print(f"== {module}", flush=True)
        began = time.monotonic()
        result = subprocess.run([sys.executable, "-m", f"bench.{module}"], check=False)
        print(f"   {module} took {time.monotonic() - began:.1f} s (exit {result.returncode})")
        if result.returncode != 0:
            failed.append(module)
    print(f"summary: {render_summary()}")
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
