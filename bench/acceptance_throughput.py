"""Calls/s with an acceptance rule: rejected candidates must not stall the pipeline.

    .venv/bin/python bench/acceptance_throughput.py                 # 20,000 rows (~12 min with the reference)
    .venv/bin/python bench/acceptance_throughput.py --rows 10000 --skip-reference

A question, an answer that reads it, and a judge scoring the answer 1 or 2 (the test server
draws each score from the request: half the candidates pass ``review.quality.score >= 2``),
against one local OpenAI-compatible server with lognormal latency (median 0.4 s, sigma 1: mean
0.66 s, a long tail), 256 requests in flight, buffer 1,000, one worker. Printed from the same
run, each in its own process against the same server:

- dd with the rule: every row group holds exactly 1,000 accepted rows, drawn from waves of
  candidates (about two candidates per row, three calls each);
- dd without the rule (the same three columns, one candidate per row): the pipeline's own figure;
- data-designer 0.9.7 where it applies: the two chained columns (it has no acceptance rule, and
  its judge column asks for its JSON in the prompt, which the test server does not follow, so
  every judge cell fails there);
- the limit: the ideal, requests in flight / mean latency (388 calls/s).

calls/s is the server's count of answered requests over the run's wall time (process start-up
and the end-of-run drain included). Target: dd with the rule >= 90% of ideal.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from measure import run_measured  # noqa: E402
from reference_env import run_reference  # noqa: E402

from dd_core.testing.llm_server import OpenAIServerProcess  # noqa: E402

MODEL = "bench-model"
PARALLEL, MEDIAN_MS, SIGMA, BUFFER = 256, 400, 1.0, 1000
RULE = "review.quality.score >= 2"


def judged_config(base_url: str, rule: str | None) -> dict:
    config = {
        "name": "judged",
        "models": [{"alias": "bench", "model": MODEL, "base_url": base_url, "max_parallel_requests": PARALLEL}],
        "columns": [
            {"name": "topic", "type": "category", "values": ["astronomy", "cooking", "history", "music", "sailing"]},
            {"name": "question", "type": "llm_text", "model": "bench", "prompt": "Write a question about {{ topic }}."},
            {"name": "answer", "type": "llm_text", "model": "bench", "prompt": "Answer this question: {{ question }}"},
            {
                "name": "review",
                "type": "llm_judge",
                "model": "bench",
                "prompt": "Judge this answer: {{ answer }}",
                "scores": [{"name": "quality", "options": [1, 2]}],
            },
        ],
    }
    if rule:
        config["accept"] = rule
    return config


def ours(server: OpenAIServerProcess, rows: int, rule: str | None) -> dict:
    server.reset_stats()
    with tempfile.TemporaryDirectory() as out:
        config = Path(out) / "judged.json"
        config.write_text(json.dumps(judged_config(server.base_url, rule)))
        command = [sys.executable, str(BENCH / "workloads" / "dd_generate.py"), str(config)]
        command += ["--num-records", str(rows), "--buffer-size", str(BUFFER), "--out", out, "--workers", "1"]
        run = run_measured(command, timeout=7200)
        meta = json.loads((Path(out) / "judged" / "metadata.json").read_text())
    stats = server.stats()
    return {
        "calls": stats["succeeded"],
        "seconds": run["seconds"],
        "calls_per_s": stats["succeeded"] / run["seconds"],
        "rows": meta["actual_num_records"],
        "acceptance": meta.get("acceptance"),
        "cpu_s": run["cpu_s"],
    }


def reference(server: OpenAIServerProcess, rows: int) -> dict:
    server.reset_stats()
    with tempfile.TemporaryDirectory() as out:
        args = ["--base-url", server.base_url, "--model", MODEL, "--num-records", rows, "--buffer-size", BUFFER]
        args += ["--max-parallel-requests", PARALLEL, "--out", out]
        run = run_reference("llm_chain_workload.py", args, timeout=7200)
    stats = server.stats()
    return {"calls": stats["succeeded"], "seconds": run["seconds"], "calls_per_s": stats["succeeded"] / run["seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000, help="rows of each dd run (default 20,000)")
    ap.add_argument("--reference-rows", type=int, default=4_000, help="rows of the reference run (default 4,000)")
    ap.add_argument("--skip-reference", action="store_true")
    args = ap.parse_args()
    mean_s = MEDIAN_MS / 1000 * math.exp(SIGMA**2 / 2)
    ideal = PARALLEL / mean_s
    print(
        f"two chained LLM columns and a judge, lognormal latency (median {MEDIAN_MS / 1000:g} s, sigma {SIGMA:g}, "
        f"mean {mean_s:.2f} s), {PARALLEL} in flight, buffer {BUFFER:,}, 1 worker; ideal {ideal:,.0f} calls/s"
    )
    print(f"  {'':<58}{'rows':>8}{'calls':>9}{'seconds':>9}{'calls/s':>9}{'of ideal':>10}", flush=True)

    def line(label: str, r: dict, rows: int) -> None:
        print(
            f"  {label:<58}{rows:>8,}{r['calls']:>9,}{r['seconds']:>9.1f}{r['calls_per_s']:>9,.0f}"
            f"{r['calls_per_s'] / ideal:>10.0%}",
            flush=True,
        )

    with OpenAIServerProcess(latency_ms=MEDIAN_MS, latency_sigma=SIGMA, latency_seed=1) as server:
        accepted = ours(server, args.rows, RULE)
        line(f"dd, accept: {RULE} (exactly {args.rows:,} passing rows)", accepted, accepted["rows"])
        plain = ours(server, args.rows, None)
        line("dd, no rule (the same columns, one candidate per row)", plain, plain["rows"])
        ref = None if args.skip_reference else reference(server, args.reference_rows)
        if ref:
            line("data-designer 0.9.7, two chained columns (no judge, no rule)", ref, args.reference_rows)
    print(f"  {'ideal (in flight / mean latency)':<58}{'':>8}{'':>9}{'':>9}{ideal:>9,.0f}{1:>10.0%}")
    counts = accepted["acceptance"]
    print(
        f"  dd with the rule: {counts['candidates']:,} candidates for {accepted['rows']:,} rows "
        f"({counts['accepted']:,} accepted, rate {counts['rate']:.1%}); {accepted['calls'] / accepted['rows']:.2f} calls "
        f"per kept row; CPU {accepted['cpu_s'] / accepted['calls'] * 1e6:.0f} us per call"
    )
    share = accepted["calls_per_s"] / ideal
    print(f"  -> dd with the rule / ideal: {share:.0%} (target >= 90%: {'met' if share >= 0.9 else 'NOT met'})")
    print(f"  -> dd with the rule / dd without: {accepted['calls_per_s'] / plain['calls_per_s']:.0%}")
    if ref:
        print(f"  -> dd with the rule / data-designer: {accepted['calls_per_s'] / ref['calls_per_s']:.1f}x calls/s")


if __name__ == "__main__":
    main()
