"""Batch mode vs online: 10,000 rows of two chained llm_text columns against the local server.

    .venv/bin/python bench/batch_vs_online.py [--rows 10000] [--batch-processing-s 20] [--skip-reference]

Online, the server answers each chat request with lognormal latency (median 0.4 s, sigma 1: mean
0.66 s) and dd keeps 256 requests in flight. In batch mode the same server's Batch API keeps each
batch ``in_progress`` for ``--batch-processing-s`` seconds (a stand-in for a provider's hours) and dd
polls every 2 s. Same config otherwise (1,000-row row groups, same seed): the data is the same.

Printed from the same run: wall time of the whole process and the API calls the server saw (files
uploaded, batches created, polls, downloads, chat requests), for dd in batch mode, dd online, the
reference (data-designer 0.9.7, online: it has no batch mode) and the limits (online: calls / (in
flight / mean latency); batch: one processing time per chained column, the row groups' batches
being out at once).
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
MEDIAN_S, SIGMA, PARALLEL, BUFFER, POLL_S = 0.4, 1.0, 256, 1000, 2.0
MEAN_S = MEDIAN_S * math.exp(SIGMA**2 / 2)


def chain_config(base_url: str, *, batch: bool) -> dict:
    model = {"alias": "bench", "model": MODEL, "base_url": base_url, "max_parallel_requests": PARALLEL}
    if batch:
        model.update(batch=True, batch_poll_interval_s=POLL_S)
    return {
        "name": "llm_chain",
        "models": [model],
        "columns": [
            {"name": "topic", "type": "category", "values": ["astronomy", "cooking", "history", "music", "sailing"]},
            {"name": "question", "type": "llm_text", "model": "bench", "prompt": "Write a question about {{ topic }}."},
            {"name": "answer", "type": "llm_text", "model": "bench", "prompt": "Answer this question: {{ question }}"},
        ],
    }


def calls(server: OpenAIServerProcess) -> dict:
    counts = server.batch_stats()["counts"]
    return {
        "files": counts["upload"],
        "batches": counts["create"],
        "polls": counts["poll"],
        "downloads": counts["content"],
        "chat": server.stats()["requests_total"],
    }


def ours(server: OpenAIServerProcess, rows: int, *, batch: bool) -> dict:
    server.reset_stats()
    server.reset_batches()
    with tempfile.TemporaryDirectory() as out:
        config = Path(out) / "chain.json"
        config.write_text(json.dumps(chain_config(server.base_url, batch=batch)))
        command = [
            sys.executable,
            "-m",
            "dd_core",
            "generate",
            str(config),
            "-n",
            str(rows),
            "--buffer-size",
            str(BUFFER),
            "--artifact-path",
            out,
            "--workers",
            "1",
        ]
        run = run_measured(command, parse_json=False, timeout=7200)
    return {"seconds": run["wall_s"], "cpu_s": run["cpu_s"], **calls(server)}


def reference(server: OpenAIServerProcess, rows: int) -> dict:
    server.reset_stats()
    server.reset_batches()
    with tempfile.TemporaryDirectory() as out:
        args = [
            "--base-url",
            server.base_url,
            "--model",
            MODEL,
            "--num-records",
            rows,
            "--buffer-size",
            BUFFER,
            "--max-parallel-requests",
            PARALLEL,
            "--out",
            out,
        ]
        run = run_reference("llm_chain_workload.py", args, timeout=7200)
    return {"seconds": run["wall_s"], "cpu_s": run["cpu_s"], **calls(server)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--batch-processing-s", type=float, default=20.0)
    ap.add_argument("--skip-reference", action="store_true")
    args = ap.parse_args()
    processing = args.batch_processing_s
    with OpenAIServerProcess(latency_ms=MEDIAN_S * 1000, latency_sigma=SIGMA, latency_seed=1) as server:
        server.set_batch_settings(processing_s=processing)
        runs = [
            ("dd, batch mode", ours(server, args.rows, batch=True)),
            ("dd, online", ours(server, args.rows, batch=False)),
        ]
        if not args.skip_reference:
            runs.append(("data-designer 0.9.7, online", reference(server, args.rows)))
    online_limit = 2 * args.rows / (PARALLEL / MEAN_S)
    batch_limit = 2 * processing
    print(
        f"{args.rows:,} rows x 2 chained llm_text columns, row groups of {BUFFER:,}; online: lognormal latency (median {MEDIAN_S} s, "
        f"sigma {SIGMA}, mean {MEAN_S:.2f} s), {PARALLEL} in flight; batch: {processing:g} s in progress per batch, polled every {POLL_S:g} s"
    )
    print(
        f"  {'':<30}{'wall s':>9}{'CPU s':>8}{'files':>7}{'batches':>9}{'polls':>7}{'downloads':>11}{'chat requests':>15}"
    )
    for name, r in runs:
        print(
            f"  {name:<30}{r['seconds']:>9.1f}{r['cpu_s']:>8.1f}{r['files']:>7}{r['batches']:>9}{r['polls']:>7}{r['downloads']:>11}{r['chat']:>15,}"
        )
    print(
        f"  {'limit, online':<30}{online_limit:>9.1f}{'':>8}{0:>7}{0:>9}{0:>7}{0:>11}{2 * args.rows:>15,}   (calls / (in flight / mean latency))"
    )
    row_groups = -(-args.rows // BUFFER)
    print(
        f"  {'limit, batch':<30}{batch_limit:>9.1f}{'':>8}{2 * row_groups:>7}{2 * row_groups:>9}{'':>7}{2 * row_groups:>11}{0:>15}   (one processing time per chained column)"
    )
    batch, online = runs[0][1], runs[1][1]
    print(
        f"  batch mode: {batch['seconds'] / online['seconds']:.1f}x the online wall time, {online['chat'] / max(1, sum(batch[k] for k in ('files', 'batches', 'polls', 'downloads'))):.0f}x fewer API calls, "
        f"{batch['seconds'] / batch_limit:.2f}x its limit; at the batch discount (0.5) half the token cost"
    )


if __name__ == "__main__":
    main()
