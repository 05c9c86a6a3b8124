"""Batch mode vs online: 10,000 rows of two chained llm_text columns against the local server.

    .venv/bin/python bench/batch_vs_online.py [--rows 10000] [--batch-processing-s 20] [--skip-reference]
    .venv/bin/python bench/batch_vs_online.py --provider azure       # or anthropic (no reference run)

Online, the server answers each chat request with lognormal latency (median 0.4 s, sigma 1: mean
0.66 s) and dd keeps 256 requests in flight. In batch mode the same server's batch API (OpenAI's,
Azure OpenAI's or Anthropic's Message Batches, per ``--provider``) keeps each batch ``in_progress``
for ``--batch-processing-s`` seconds (a stand-in for a provider's hours) and dd polls every 2 s.
Same config otherwise (1,000-row row groups, same seed, a price per million tokens): the data is
the same. For Azure and Anthropic the server has no ``/metrics``, as the hosted APIs have none.

Printed from the same run: wall time of the whole process, the API calls the server saw (files
uploaded, batches created, polls, downloads, chat requests) and the cost dd reported, for dd in
batch mode, dd online, the reference (data-designer 0.9.7, online, OpenAI only: it has no batch mode
and speaks only OpenAI's protocol) and the limits (online: calls / (in flight / mean latency); batch:
one processing time per chained column, the row groups' batches being out at once).
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
#: Per provider: the model entry's own settings and prices (USD per million tokens).
PROVIDERS = {
    "openai": {"price": {"input_per_mtok": 0.15, "output_per_mtok": 0.60}},
    "azure": {
        "provider": "azure",
        "api_version": "2024-10-21",
        "price": {"input_per_mtok": 0.15, "output_per_mtok": 0.60},
    },
    "anthropic": {"provider": "anthropic", "max_tokens": 256, "price": {"input_per_mtok": 1.0, "output_per_mtok": 5.0}},
}


def chain_config(server: OpenAIServerProcess, provider: str, *, batch: bool) -> dict:
    base_url = server.base_url if provider == "openai" else server.root_url
    model = {"alias": "bench", "model": MODEL, "base_url": base_url, "max_parallel_requests": PARALLEL}
    model.update(PROVIDERS[provider])
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


def ours(server: OpenAIServerProcess, provider: str, rows: int, *, batch: bool) -> dict:
    server.reset_stats()
    server.reset_batches()
    with tempfile.TemporaryDirectory() as out:
        config = Path(out) / "chain.json"
        config.write_text(json.dumps(chain_config(server, provider, batch=batch)))
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
        cost = json.loads((Path(out) / "llm_chain" / "metadata.json").read_text())["llm_cost_usd"]
    return {"seconds": run["wall_s"], "cpu_s": run["cpu_s"], "cost": cost, **calls(server)}


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
    return {"seconds": run["wall_s"], "cpu_s": run["cpu_s"], "cost": None, **calls(server)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--batch-processing-s", type=float, default=20.0)
    ap.add_argument("--provider", choices=list(PROVIDERS), default="openai")
    ap.add_argument("--skip-reference", action="store_true")
    args = ap.parse_args()
    processing = args.batch_processing_s
    hosted = args.provider != "openai"  # Azure and Anthropic serve no /metrics
    with OpenAIServerProcess(
        latency_ms=MEDIAN_S * 1000, latency_sigma=SIGMA, latency_seed=1, metrics=not hosted, models=(MODEL,)
    ) as server:
        server.set_batch_settings(processing_s=processing)
        runs = [
            ("dd, batch mode", ours(server, args.provider, args.rows, batch=True)),
            ("dd, online", ours(server, args.provider, args.rows, batch=False)),
        ]
        if not (args.skip_reference or hosted):
            runs.append(("data-designer 0.9.7, online", reference(server, args.rows)))
    online_limit = 2 * args.rows / (PARALLEL / MEAN_S)
    batch_limit = 2 * processing
    print(
        f"{args.provider}: {args.rows:,} rows x 2 chained llm_text columns, row groups of {BUFFER:,}; online: lognormal latency (median {MEDIAN_S} s, "
        f"sigma {SIGMA}, mean {MEAN_S:.2f} s), {PARALLEL} in flight; batch: {processing:g} s in progress per batch, polled every {POLL_S:g} s"
    )
    print(
        f"  {'':<30}{'wall s':>9}{'CPU s':>8}{'files':>7}{'batches':>9}{'polls':>7}{'downloads':>11}{'chat requests':>15}{'cost $':>11}"
    )
    for name, r in runs:
        cost = f"{r['cost']:.4f}" if r["cost"] is not None else "-"
        print(
            f"  {name:<30}{r['seconds']:>9.1f}{r['cpu_s']:>8.1f}{r['files']:>7}{r['batches']:>9}{r['polls']:>7}{r['downloads']:>11}{r['chat']:>15,}{cost:>11}"
        )
    print(
        f"  {'limit, online':<30}{online_limit:>9.1f}{'':>8}{0:>7}{0:>9}{0:>7}{0:>11}{2 * args.rows:>15,}   (calls / (in flight / mean latency))"
    )
    row_groups = -(-args.rows // BUFFER)
    files = 0 if args.provider == "anthropic" else 2 * row_groups  # Anthropic's requests go inline
    print(
        f"  {'limit, batch':<30}{batch_limit:>9.1f}{'':>8}{files:>7}{2 * row_groups:>9}{'':>7}{2 * row_groups:>11}{0:>15}   (one processing time per chained column)"
    )
    batch, online = runs[0][1], runs[1][1]
    print(
        f"  batch mode: {batch['seconds'] / online['seconds']:.1f}x the online wall time, {online['chat'] / max(1, sum(batch[k] for k in ('files', 'batches', 'polls', 'downloads'))):.0f}x fewer API calls, "
        f"{batch['seconds'] / batch_limit:.2f}x its limit; cost {batch['cost'] / online['cost']:.2f}x online's (batch discount 0.5)"
    )


if __name__ == "__main__":
    main()
