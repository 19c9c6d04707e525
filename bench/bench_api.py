"""The PACT API under concurrent load, with and without a flood of wrong token requests.

``python -m bench.bench_api [--base PATH] [--seconds S]`` starts the API in a child process
(uvicorn over TLS, one worker, 2 000 footprints released to one recipient, no disclosure
recorder: this measures the HTTP app, not Kafka) and drives it from this process with
``--clients`` concurrent callers holding valid tokens, half ListFootprints (``limit=50``), half
GetFootprint, for ``--seconds`` per phase:

1. *quiet*: only the normal calls;
2. *flood*: the same, while ``--flooders`` concurrent callers post wrong client secrets to
   ``/auth/token`` as fast as they are answered.

Each phase records requests/s, p50 and p99 of the normal calls (every one must answer 200), how
the flood was answered (401: a secret was hashed; 429: refused before hashing) and the server's
peak memory (VmHWM). With ``--base PATH`` (a checkout of the code before, e.g. ``git worktree
add /tmp/base main``) the same phases run against that code's app in the same run, side by
side: the result ``api_flood_p99`` is our p99 under the flood, with the base's p99 under the
same flood as its baseline. ``--out DIR`` writes the result files elsewhere.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.report import RESULTS_DIR, Baseline, BenchResult, write_result

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret"

_SERVER = r"""
import sys, uuid
from pathlib import Path
from pcf_exchange.gateway.api import Client, InMemoryFootprintSource, create_app, hash_secret
from pcf_exchange.gateway.api import create_self_signed_cert, start_in_thread
from tests.api._factory import many_footprints

tls = create_self_signed_cert(Path(sys.argv[1]), hostnames=["localhost", "127.0.0.1"])
footprints = many_footprints(int(sys.argv[2]))
app = create_app(
    InMemoryFootprintSource({"acme": footprints}),
    [Client("acme-erp", "acme", hash_secret(sys.argv[3]))],
    max_page_size=50,
)
server = start_in_thread(app, tls.cert_file, tls.key_file, log_level="error")
print(server.url, tls.ca_file, ",".join(fp["id"] for fp in footprints[:100]), flush=True)
sys.stdin.read()
"""


@dataclass
class Phase:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    failed: int
    flood: dict[str, int]
    peak_rss_mb: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests_per_s": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 1),
            "p99_ms": round(self.p99_ms, 1),
            "requests": self.requests,
            "failed": self.failed,
            "flood_statuses": self.flood,
            "server_peak_rss_mb": round(self.peak_rss_mb, 1),
        }


class Server:
    """The API of the code at *root*, in a child process."""

    def __init__(self, root: Path, footprints: int) -> None:
        self.dir = tempfile.mkdtemp(prefix="bench-api-")
        env = {**os.environ, "PYTHONPATH": str(root)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER, self.dir, str(footprints), SECRET],
            cwd=root,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if len(line) != 3:
            self.stop()
            raise RuntimeError(f"the API at {root} did not start")
        self.url, self.ca_file, ids = line
        self.ids = ids.split(",")

    def peak_rss_mb(self) -> float:
        for row in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if row.startswith("VmHWM:"):
                return int(row.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


async def _token(http: httpx.AsyncClient) -> str:
    response = await http.post(
        "/auth/token", data={"grant_type": "client_credentials"}, auth=("acme-erp", SECRET)
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


async def _phase(server: Server, *, clients: int, flooders: int, seconds: float) -> Phase:
    limits = httpx.Limits(max_connections=clients + flooders + 2)
    async with httpx.AsyncClient(
        base_url=server.url, verify=server.ca_file, limits=limits, timeout=60
    ) as http:
        token = await _token(http)
        headers = {"Authorization": f"Bearer {token}"}
        latencies: list[float] = []
        failed = 0
        flood: dict[str, int] = {}
        stop = time.monotonic() + seconds

        async def caller(n: int) -> None:
            nonlocal failed
            i = n
            while time.monotonic() < stop:
                url = (
                    "/3/footprints?limit=50"
                    if i % 2 == 0
                    else f"/3/footprints/{server.ids[i % len(server.ids)]}"
                )
                began = time.perf_counter()
                response = await http.get(url, headers=headers)
                latencies.append(time.perf_counter() - began)
                failed += response.status_code != 200
                i += 1

        async def flooder(n: int) -> None:
            i = 0
            while time.monotonic() < stop:
                response = await http.post(
                    "/auth/token",
                    data={"grant_type": "client_credentials"},
                    auth=("acme-erp", f"wrong-{n}-{i}"),
                )
                key = str(response.status_code)
                flood[key] = flood.get(key, 0) + 1
                i += 1

        began = time.monotonic()
        await asyncio.gather(
            *(caller(n) for n in range(clients)), *(flooder(n) for n in range(flooders))
        )
        elapsed = time.monotonic() - began
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0
    return Phase(
        requests=len(latencies),
        seconds=elapsed,
        p50_ms=(statistics.median(ordered) if ordered else 0.0) * 1000,
        p99_ms=p99 * 1000,
        failed=failed,
        flood=flood,
        peak_rss_mb=server.peak_rss_mb(),
    )


def measure(
    root: Path, *, footprints: int, clients: int, flooders: int, seconds: float
) -> dict[str, Phase]:
    server = Server(root, footprints)
    try:
        quiet = asyncio.run(_phase(server, clients=clients, flooders=0, seconds=seconds))
        flood = asyncio.run(_phase(server, clients=clients, flooders=flooders, seconds=seconds))
    finally:
        server.stop()
    return {"quiet": quiet, "flood": flood}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, help="checkout of the code before, side by side")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--flooders", type=int, default=16)
    parser.add_argument("--footprints", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args()
    settings = dict(
        footprints=args.footprints,
        clients=args.clients,
        flooders=args.flooders,
        seconds=args.seconds,
    )
    runs = {"ours": measure(ROOT, **settings)}
    if args.base is not None:
        runs["base"] = measure(args.base.resolve(), **settings)
    details = {
        "settings": settings,
        **{side: {k: p.to_dict() for k, p in phases.items()} for side, phases in runs.items()},
    }
    print(json.dumps(details, indent=2))
    ours = runs["ours"]
    base = runs.get("base")
    write_result(
        BenchResult(
            name="api_flood_p99",
            unit="ms",
            value=round(ours["flood"].p99_ms, 1),
            higher_is_better=False,
            description=(
                "PACT API: p99 of ListFootprints/GetFootprint under a flood of wrong token"
                " requests (vs the code before under the same flood)"
            ),
            baseline=(
                Baseline("code before, same flood", round(base["flood"].p99_ms, 1), "ms")
                if base is not None
                else None
            ),
            details=details,
        ),
        args.out,
    )
    write_result(
        BenchResult(
            name="api_flood_rps",
            unit="requests/s",
            value=round(ours["flood"].rps, 1),
            higher_is_better=True,
            description=(
                "PACT API: normal calls answered per second under a token flood (vs without it)"
            ),
            baseline=Baseline("same code, no flood", round(ours["quiet"].rps, 1), "requests/s"),
            details=details,
        ),
        args.out,
    )
    write_result(
        BenchResult(
            name="api_quiet_rps",
            unit="requests/s",
            value=round(ours["quiet"].rps, 1),
            higher_is_better=True,
            description=(
                f"PACT API: ListFootprints (limit=50) and GetFootprint answered per second,"
                f" {args.clients} concurrent clients over TLS, {args.footprints} footprints"
                " released to their recipient, no flood (vs the code before)"
            ),
            baseline=(
                Baseline("code before, same load", round(base["quiet"].rps, 1), "requests/s")
                if base is not None
                else None
            ),
            details=details,
        ),
        args.out,
    )


if __name__ == "__main__":
    main()
