"""LLM throughput: 2,000 rows with two chained llm_text columns, 50 ms latency, 16 parallel requests.

    .venv/bin/python bench/llm_throughput.py [--rows 2000] [--skip-reference]

The local OpenAI-compatible server runs in its own process (so it does not share the
client's GIL); dd and the reference generator (data-designer 0.9.7) each run in their own
process against it. Ideal: 16 / 0.05 s = 320 calls/s. Target (issue 4): >= 90% of ideal.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from measure import run_measured  # noqa: E402
from reference_env import run_reference  # noqa: E402

from dd_core.testing.openai_server import OpenAIServerProcess  # noqa: E402

LATENCY_MS, PARALLEL = 50, 16
IDEAL = PARALLEL / (LATENCY_MS / 1000)


def chain_config(base_url: str) -> dict:
    return {
        "name": "llm_chain",
        "models": [{"alias": "bench", "model": "bench-model", "base_url": base_url, "max_parallel_requests": PARALLEL}],
        "columns": [
            {"name": "topic", "type": "category", "values": ["astronomy", "cooking", "history", "music", "sailing"]},
            {"name": "question", "type": "llm_text", "model": "bench", "prompt": "Write a question about {{ topic }}."},
            {"name": "answer", "type": "llm_text", "model": "bench", "prompt": "Answer this question: {{ question }}"},
        ],
    }


def ours(server: OpenAIServerProcess, rows: int) -> dict:
    server.reset_stats()
    with tempfile.TemporaryDirectory() as out:
        config = Path(out) / "chain.json"
        config.write_text(json.dumps(chain_config(server.base_url)))
        command = [sys.executable, str(BENCH / "workloads" / "dd_generate.py"), str(config), "--num-records", str(rows), "--buffer-size", "1000", "--out", out]
        result = run_measured(command)
    result["calls"] = server.stats()["succeeded"]
    result["calls_per_s"] = result["calls"] / result["seconds"]
    return result


def reference(server: OpenAIServerProcess, rows: int) -> dict:
    server.reset_stats()
    with tempfile.TemporaryDirectory() as out:
        args = ["--base-url", server.base_url, "--model", "bench-model", "--num-records", rows, "--buffer-size", 1000, "--max-parallel-requests", PARALLEL, "--out", out]
        return run_reference("llm_chain_workload.py", args, timeout=3600)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--skip-reference", action="store_true")
    args = ap.parse_args()
    with OpenAIServerProcess(latency_ms=LATENCY_MS) as server:
        runs = [("dd", ours(server, args.rows))]
        if not args.skip_reference:
            runs.append(("data-designer 0.9.7", reference(server, args.rows)))
    print(f"{args.rows} rows x 2 chained llm_text columns, {LATENCY_MS} ms latency, max_parallel_requests={PARALLEL}; ideal {IDEAL:.0f} calls/s")
    print(f"{'generator':<22}{'calls':>8}{'seconds':>10}{'calls/s':>10}{'of ideal':>10}")
    for name, r in runs:
        print(f"{name:<22}{r['calls']:>8}{r['seconds']:>10.2f}{r['calls_per_s']:>10.1f}{r['calls_per_s'] / IDEAL:>10.0%}")
    ours_rate = runs[0][1]["calls_per_s"]
    print(f"dd reaches {ours_rate / IDEAL:.0%} of ideal (target >= 90%: {'met' if ours_rate >= 0.9 * IDEAL else 'NOT met'})")
    if len(runs) > 1:
        print(f"dd / reference: {ours_rate / runs[1][1]['calls_per_s']:.2f}x")


if __name__ == "__main__":
    main()
