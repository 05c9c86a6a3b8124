"""LLM throughput of two chained llm_text columns: dd, data-designer 0.9.7 and the limit, one run.

    .venv/bin/python bench/llm_throughput.py                      # every case (~45 min)
    .venv/bin/python bench/llm_throughput.py --cases fixed-256 fixed-1024 --repeat 5
    .venv/bin/python bench/llm_throughput.py --skip-reference

Cases (each against a fresh local OpenAI-compatible server in its own process; dd, the
reference and the bare client each in their own process against it, buffer 1,000):

- ``lognormal-256``, ``lognormal-1024``: latency lognormal per request (median 0.4 s, sigma 1:
  mean 0.66 s, a long tail) at 256 and 1,024 requests in flight, from a server without
  ``/metrics`` (as hosted providers are), dd with its default settings (and, beside it, with
  ``adaptive_concurrency: false``, and with ``stream: true``: the cost of streaming every reply). The limit is the ideal,
  in-flight / mean latency (388 and 1,552 calls/s). The run ends with an unavoidable drain:
  the slots empty while the last requests finish, and with sigma 1 the slowest of them take
  10-30 s. Its share is printed from the same run: the bare client's own calls (the server
  draws each latency from a hash of the request) taken by a client costing no CPU at all.
  It is not smooth in the row count (it hangs on where the slowest requests fall): at 1,024
  in flight 100,000 rows cap any client at 83% of ideal, 200,000 at 86%, 300,000 at 97%;
  at 256 in flight 40,000 rows cap it at 97%. Hence 40,000 rows at 256 and 300,000 at 1,024.
  Target: >= 90% of ideal.
- ``fixed-256``, ``fixed-1024``: 50 ms latency, so the client's CPU is the limit. The limit is
  a bare aiohttp client with as many workers (``workloads/bare_client.py``), measured in the
  same run, alternating with dd; medians of ``--repeat`` runs, and the median of each dd run's
  ratio to the bare run beside it (the verdict: pairs see the same load on a shared machine).
  Target: >= 90% of it.
- ``bounded``: a server that serves a bounded batch, as vLLM does: 256 slots (service time
  lognormal, median 0.1 s, sigma 1), requests beyond them wait in a queue. Clients allow 1,024
  in flight. dd follows the server's queue depth (/metrics) or, on a server without metrics,
  latency; against dd with a fixed limit (adaptive_concurrency: false) and the reference.
  The limit is the slots' capacity (256 / mean service time). Shown: throughput, and the
  queue (requests waiting at the server, time-averaged) that each client keeps.

The reference runs 20,000 rows in the lognormal cases and 4,000 in the others (its rate does
not depend on the row count: its row groups run one after another).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from measure import run_measured  # noqa: E402
from reference_env import run_reference  # noqa: E402

from dd_core.testing.llm_server import OpenAIServerProcess  # noqa: E402

MODEL = "bench-model"


@dataclass(frozen=True)
class Case:
    name: str
    parallel: int
    latency_ms: float
    sigma: float
    dd_rows: int
    reference_rows: int
    slots: int | None = None

    @property
    def mean_latency_s(self) -> float:
        return self.latency_ms / 1000 * math.exp(self.sigma**2 / 2)


CASES = {
    "lognormal-256": Case("lognormal-256", 256, 400, 1.0, 40_000, 20_000),
    "lognormal-1024": Case("lognormal-1024", 1024, 400, 1.0, 300_000, 20_000),
    "fixed-256": Case("fixed-256", 256, 50, 0.0, 20_000, 4_000),
    "fixed-1024": Case("fixed-1024", 1024, 50, 0.0, 20_000, 4_000),
    "bounded": Case("bounded", 1024, 100, 1.0, 20_000, 4_000, slots=256),
}


def chain_config(base_url: str, parallel: int, adaptive: bool = True, stream: bool | str = "auto") -> dict:
    return {
        "name": "llm_chain",
        "models": [
            {
                "alias": "bench",
                "model": MODEL,
                "base_url": base_url,
                "max_parallel_requests": parallel,
                "adaptive_concurrency": adaptive,
                "stream": stream,
            }
        ],
        "columns": [
            {"name": "topic", "type": "category", "values": ["astronomy", "cooking", "history", "music", "sailing"]},
            {"name": "question", "type": "llm_text", "model": "bench", "prompt": "Write a question about {{ topic }}."},
            {"name": "answer", "type": "llm_text", "model": "bench", "prompt": "Answer this question: {{ question }}"},
        ],
    }


def _server_side(server: OpenAIServerProcess, seconds: float) -> dict:
    stats = server.stats()
    return {
        "calls": stats["succeeded"],
        "seconds": seconds,
        "calls_per_s": stats["succeeded"] / seconds,
        "mean_waiting": stats["mean_waiting"],
        "max_in_flight": stats["max_in_flight"],
    }


def ours(
    server: OpenAIServerProcess, case: Case, *, workers: int, adaptive: bool = True, stream: bool | str = "auto"
) -> dict:
    server.reset_stats()
    with tempfile.TemporaryDirectory() as out:
        config = Path(out) / "chain.json"
        config.write_text(json.dumps(chain_config(server.base_url, case.parallel, adaptive, stream)))
        command = [
            sys.executable,
            str(BENCH / "workloads" / "dd_generate.py"),
            str(config),
            "--num-records",
            str(case.dd_rows),
            "--buffer-size",
            "1000",
            "--out",
            out,
            "--workers",
            str(workers),
        ]
        run = run_measured(command, timeout=3600)
    return {**_server_side(server, run["seconds"]), "cpu_s": run["cpu_s"]}


def bare(server: OpenAIServerProcess, case: Case, *, processes: int) -> dict:
    server.reset_stats()
    command = [
        sys.executable,
        str(BENCH / "workloads" / "bare_client.py"),
        "--base-url",
        server.base_url,
        "--model",
        MODEL,
        "--calls",
        str(2 * case.dd_rows),
        "--workers",
        str(case.parallel),
        "--processes",
        str(processes),
    ]
    run = run_measured(command, timeout=3600)
    return {**_server_side(server, run["seconds"]), "cpu_s": run["cpu_s"]}


def reference(server: OpenAIServerProcess, case: Case) -> dict:
    server.reset_stats()
    with tempfile.TemporaryDirectory() as out:
        args = [
            "--base-url",
            server.base_url,
            "--model",
            MODEL,
            "--num-records",
            case.reference_rows,
            "--buffer-size",
            1000,
            "--max-parallel-requests",
            case.parallel,
            "--out",
            out,
        ]
        run = run_reference("llm_chain_workload.py", args, timeout=7200)
    return _server_side(server, run["seconds"])


def _median(runs: list[dict]) -> dict:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def _line(label: str, r: dict, limit: float, limit_name: str) -> str:
    return (
        f"  {label:<44}{r['calls']:>9,}{r['seconds']:>9.1f}{r['calls_per_s']:>10,.0f}{r['calls_per_s'] / limit:>8.0%} of {limit_name:<6}"
        f"{r['mean_waiting']:>9.1f}{r['max_in_flight']:>8}"
    )


def _header(title: str) -> None:
    print(title)
    print(f"  {'':<44}{'calls':>9}{'seconds':>9}{'calls/s':>10}{'':>18}{'waiting':>9}{'max in':>8}")


def _verdict(name: str, value: float, target: float) -> str:
    return f"  -> {name}: {value:.0%} (target >= {target:.0%}: {'met' if value >= target else 'NOT met'})"


def drain_ceiling(case: Case, latency_seed: int) -> float:
    """The bare client's calls/s with zero CPU per call, as a share of the ideal: its own calls'
    latencies (the server draws each from a hash of the request), taken in order by
    ``case.parallel`` workers. Below 100% only because the run ends: the last requests' tail."""
    import heapq

    sys.path.insert(0, str(BENCH / "workloads"))
    from bare_client import bodies

    from dd_core.testing.llm_server import Serving, request_key

    serving = Serving(case.latency_ms, 0.0, case.sigma, latency_seed)
    latencies = [serving.latency_s(request_key(json.loads(body))) for body in bodies(MODEL, 0, 2 * case.dd_rows)]
    finish = latencies[: case.parallel]
    heapq.heapify(finish)
    for latency in latencies[case.parallel :]:
        heapq.heappush(finish, heapq.heappop(finish) + latency)
    return len(latencies) / max(finish) / (case.parallel / case.mean_latency_s)


def run_lognormal(case: Case, args) -> None:
    ideal = case.parallel / case.mean_latency_s
    with OpenAIServerProcess(
        latency_ms=case.latency_ms, latency_sigma=case.sigma, latency_seed=1, metrics=False
    ) as server:
        dd = ours(server, case, workers=args.workers)
        rows = [("dd, default settings", dd)]
        rows.append(("dd, adaptive_concurrency: false", ours(server, case, workers=args.workers, adaptive=False)))
        streamed = ours(server, case, workers=args.workers, stream=True)
        rows.append(("dd, stream: true (default: whole replies)", streamed))
        if case.parallel >= 1024:
            rows.append(("bare aiohttp client (same calls)", bare(server, case, processes=args.workers)))
        if not args.skip_reference:
            rows.append((f"data-designer 0.9.7 ({case.reference_rows:,} rows)", reference(server, case)))
    _header(
        f"{case.name}: lognormal latency (median {case.latency_ms / 1000:g} s, sigma {case.sigma:g}, mean {case.mean_latency_s:.2f} s), no /metrics, "
        f"{case.parallel} in flight, buffer 1,000, dd {case.dd_rows:,} rows, --workers {args.workers}; ideal {ideal:,.0f} calls/s"
    )
    for label, r in rows:
        print(_line(label, r, ideal, "ideal"))
    if case.parallel >= 1024:
        print(
            f"  (a client costing no CPU at all, over the bare client's own calls, would finish at {drain_ceiling(case, 1):.0%} of ideal: the end-of-run drain)"
        )
    print(_verdict("dd (default settings) / ideal", dd["calls_per_s"] / ideal, 0.9))
    print(
        f"  -> streamed / whole replies: {streamed['calls_per_s'] / dd['calls_per_s']:.0%} "
        f"(CPU per call {streamed['cpu_s'] / streamed['calls'] * 1e6:.0f} us vs {dd['cpu_s'] / dd['calls'] * 1e6:.0f} us)"
    )
    if not args.skip_reference:
        print(f"  -> dd / data-designer: {dd['calls_per_s'] / rows[-1][1]['calls_per_s']:.1f}x")


def run_fixed(case: Case, args) -> None:
    ideal = case.parallel / case.mean_latency_s
    dds, bares = [], []
    with OpenAIServerProcess(latency_ms=case.latency_ms) as server:
        for _ in range(args.repeat):
            dds.append(ours(server, case, workers=args.workers))
            bares.append(bare(server, case, processes=args.workers))
        ref = None if args.skip_reference else reference(server, case)
    dd, limit = _median(dds), _median(bares)
    _header(
        f"{case.name}: fixed {case.latency_ms:g} ms latency, {case.parallel} in flight, {case.dd_rows:,} rows ({2 * case.dd_rows:,} calls), "
        f"--workers {args.workers}, medians of {args.repeat} alternating runs; ideal {ideal:,.0f} calls/s"
    )
    print(_line("bare aiohttp client (the limit)", limit, limit["calls_per_s"], "bare"))
    print(_line("dd", dd, limit["calls_per_s"], "bare"))
    if ref:
        print(_line(f"data-designer 0.9.7 ({case.reference_rows:,} rows)", ref, limit["calls_per_s"], "bare"))

    def rates(runs: list[dict]) -> str:
        return ", ".join(format(r["calls_per_s"], ",.0f") for r in runs)

    print(f"  dd runs: {rates(dds)}; bare runs: {rates(bares)} calls/s")
    print(
        f"  CPU per call: dd {dd['cpu_s'] / dd['calls'] * 1e6:.0f} us, bare {limit['cpu_s'] / limit['calls'] * 1e6:.0f} us "
        f"(dd's includes its imports and parquet writes); both share the machine's cores with the server"
    )
    # Each dd run is paired with the bare run right after it: on a shared machine the pairs see
    # the same load, so the median of the pairs' ratios is steadier than the ratio of medians.
    paired = statistics.median(d["calls_per_s"] / b["calls_per_s"] for d, b in zip(dds, bares))
    print(
        f"  dd / bare client: ratio of medians {dd['calls_per_s'] / limit['calls_per_s']:.0%}, median of the {args.repeat} paired runs' ratios {paired:.0%}"
    )
    print(_verdict("dd / bare client (paired)", paired, 0.9))


def run_bounded(case: Case, args) -> None:
    capacity = case.slots / case.mean_latency_s
    rows = []
    with OpenAIServerProcess(
        latency_ms=case.latency_ms, latency_sigma=case.sigma, latency_seed=1, slots=case.slots
    ) as server:
        rows.append(("dd, adaptive (queue depth from /metrics)", ours(server, case, workers=args.workers)))
        rows.append(("dd, fixed limit 1,024", ours(server, case, workers=args.workers, adaptive=False)))
        if not args.skip_reference:
            rows.append((f"data-designer 0.9.7, 1,024 ({case.reference_rows:,} rows)", reference(server, case)))
    with OpenAIServerProcess(
        latency_ms=case.latency_ms, latency_sigma=case.sigma, latency_seed=1, slots=case.slots, metrics=False
    ) as server:
        rows.insert(1, ("dd, adaptive (latency; server without metrics)", ours(server, case, workers=args.workers)))
    _header(
        f"{case.name}: a server with {case.slots} slots (service lognormal, median {case.latency_ms / 1000:g} s, sigma {case.sigma:g}), "
        f"queue beyond; clients allow {case.parallel} in flight; {case.dd_rows:,} rows; capacity {capacity:,.0f} calls/s"
    )
    for label, r in rows:
        print(_line(label, r, capacity, "capac."))
    adaptive, fixed = rows[0][1], rows[2][1]
    print(
        f"  -> adaptive: {adaptive['calls_per_s'] / capacity:.0%} of capacity with {adaptive['mean_waiting']:.0f} requests waiting on average; "
        f"fixed 1,024: {fixed['calls_per_s'] / capacity:.0%} with {fixed['mean_waiting']:.0f} waiting"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    ap.add_argument(
        "--workers", type=int, default=1, help="ddsynth generate --workers (and the bare client's processes)"
    )
    ap.add_argument("--repeat", type=int, default=3, help="alternating runs of the fixed-latency cases")
    ap.add_argument("--skip-reference", action="store_true")
    args = ap.parse_args()
    print("'waiting': requests queued at the server, time-averaged; 'max in': most requests the server had at once")
    for name in args.cases:
        case = CASES[name]
        {"lognormal": run_lognormal, "fixed": run_fixed, "bounded": run_bounded}[name.split("-")[0]](case, args)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
