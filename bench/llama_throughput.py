"""Completion tokens/s against a real model server: dd, data-designer 0.9.7 and a bare client at
the same number of server slots, from one run.

    .venv/bin/python bench/llama_throughput.py                    # 40 rows, 4 slots, 2 rounds
    .venv/bin/python bench/llama_throughput.py --rows 80 --slots 4 --threads 1 --repeat 3
    .venv/bin/python bench/llama_throughput.py --skip-reference

The server is llama.cpp's llama-server serving SmolLM2-135M-Instruct (``dd_core.testing.
llama_server``: built once per machine, ~20 minutes the first time) with ``--slots`` parallel
sequences, ``--threads`` CPU threads and ``--metrics``. Every client runs the chain of
``bench/llm_throughput.py`` (a topic, a question about it, an answer to the question; no
max_tokens) for ``--rows`` rows with ``max_parallel_requests`` = slots: dd with its default
settings (``ddsynth generate``), the bare aiohttp client of ``workloads/bare_chain.py`` (the limit),
and the reference. Tokens are the server's own count (``llamacpp:tokens_predicted_total``) over
each client's wall time (process start-up included for every client), so every client is
measured alike; dd and the bare client alternate for ``--repeat`` rounds and the verdict is the
median of the rounds' paired ratios (pairs see the same load on a shared machine).
Target: dd >= 90% of the bare client.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from llm_throughput import MODEL, chain_config  # noqa: E402
from measure import run_measured  # noqa: E402
from reference_env import run_reference  # noqa: E402

from dd_core.testing.llama_server import LlamaServer  # noqa: E402


def predicted_tokens(server: LlamaServer) -> float:
    text = httpx.get(f"{server.root_url}/metrics", timeout=10).text
    return next(
        float(line.split()[-1]) for line in text.splitlines() if line.startswith("llamacpp:tokens_predicted_total")
    )


def measured(server: LlamaServer, command: list[str], run=run_measured) -> dict:
    before = predicted_tokens(server)
    result = run(command)
    tokens = predicted_tokens(server) - before
    return {"seconds": result["seconds"], "tokens": tokens, "tokens_per_s": tokens / result["seconds"]}


def ours(server: LlamaServer, rows: int, slots: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        config = Path(out) / "chain.json"
        config.write_text(json.dumps(chain_config(server.base_url, slots)))
        command = [sys.executable, str(BENCH / "workloads" / "dd_generate.py"), str(config)]
        command += ["--num-records", str(rows), "--buffer-size", str(rows), "--out", out]
        return measured(server, command)


def bare(server: LlamaServer, rows: int, slots: int) -> dict:
    command = [sys.executable, str(BENCH / "workloads" / "bare_chain.py"), "--base-url", server.base_url]
    command += ["--model", MODEL, "--rows", str(rows), "--workers", str(slots)]
    return measured(server, command)


def reference(server: LlamaServer, rows: int, slots: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        args = ["--base-url", server.base_url, "--model", MODEL, "--num-records", rows]
        args += ["--buffer-size", rows, "--max-parallel-requests", slots, "--out", out]
        return measured(server, args, lambda a: run_reference("llm_chain_workload.py", a, timeout=7200))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=40)
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1, help="llama-server's CPU threads (fewer than the free cores)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--skip-reference", action="store_true")
    a = ap.parse_args()
    with LlamaServer(slots=a.slots, threads=a.threads, metrics=True) as server:
        pairs = []
        for _ in range(a.repeat):
            pairs.append((ours(server, a.rows, a.slots), bare(server, a.rows, a.slots)))
        ref = None if a.skip_reference else reference(server, a.rows, a.slots)
    print(
        f"llama-server (SmolLM2-135M-Instruct Q4_1), {a.slots} slots, {a.threads} thread(s); two chained llm_text "
        f"columns, {a.rows} rows, {a.slots} in flight; completion tokens counted by the server"
    )
    print(f"  {'':<34}{'tokens':>9}{'seconds':>9}{'tokens/s':>10}")
    for i, (dd, limit) in enumerate(pairs, 1):
        print(
            f"  {'dd, default settings, round ' + str(i):<34}{dd['tokens']:>9,.0f}{dd['seconds']:>9.1f}{dd['tokens_per_s']:>10.1f}"
        )
        print(
            f"  {'bare aiohttp client, round ' + str(i):<34}{limit['tokens']:>9,.0f}{limit['seconds']:>9.1f}{limit['tokens_per_s']:>10.1f}"
        )
    if ref:
        print(f"  {'data-designer 0.9.7':<34}{ref['tokens']:>9,.0f}{ref['seconds']:>9.1f}{ref['tokens_per_s']:>10.1f}")
    ratios = [dd["tokens_per_s"] / limit["tokens_per_s"] for dd, limit in pairs]
    ratio = statistics.median(ratios)
    print(f"  dd / bare client, per round: {', '.join(f'{r:.0%}' for r in ratios)}")
    print(
        f"  -> dd / bare client (median of the rounds): {ratio:.0%} (target >= 90%: {'met' if ratio >= 0.9 else 'NOT met'})"
    )
    if ref:
        print(
            f"  -> dd / data-designer: {statistics.median(d['tokens_per_s'] for d, _ in pairs) / ref['tokens_per_s']:.2f}x"
        )


if __name__ == "__main__":
    main()
