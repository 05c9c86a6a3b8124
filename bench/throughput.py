"""Rows/s, start-up and peak memory of the customers workload (samplers and an expression).

    .venv/bin/python bench/throughput.py            # everything (~10 min with the reference at 200k)
    .venv/bin/python bench/throughput.py --quick    # no 200k-row reference run

1. 20,000 records (buffer 1,000): dd with one worker and with every core, and the reference
   (data-designer 0.9.7), each in its own process. Two ratios: generation only (each side
   timed around its generate/create call, imports excluded; target >= 20x, issue 2) and whole
   process, start-up included, as a user waits for it (``ddsynth generate`` with its default workers,
   median of 5 runs, against the reference's script; target >= 50x, issue 12), and the floor:
   a process that only imports the libraries dd needs.
2. 200,000 records: dd with 1 worker and with every core (``--workers``), and the reference.
3. Start-up: ``ddsynth generate examples/customers.yaml -n 10``, whole process, median of 7 runs.
   Target < 0.6 s.
4. 1,000,000 records, buffer 10,000, every core: peak memory of the whole process tree (the
   parent and its workers), sampled, and the sum of each process's own peak. Target < 500 MB.
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from measure import run_measured  # noqa: E402
from reference_env import run_reference  # noqa: E402

CONFIG = BENCH.parent / "examples" / "customers.yaml"
RSS_LIMIT_MB = 500
START_LIMIT_S = 0.6
CORES = len(os.sched_getaffinity(0))
WHOLE_RUNS = 5
#: The interpreter and these: the floor under any ``ddsynth generate`` (parquet, config models, templates, YAML, CLI).
FLOOR_MODULES = ("numpy", "pyarrow.parquet", "pydantic", "jinja2", "yaml", "typer")


def ours(num_records: int, buffer_size: int, workers: int, *, tree: bool = False) -> dict:
    """Generation only (the workload times dd_core.generate), plus the whole process's wall."""
    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable,
            str(BENCH / "workloads" / "dd_generate.py"),
            str(CONFIG),
            "--num-records",
            str(num_records),
            "--buffer-size",
            str(buffer_size),
            "--out",
            out,
            "--workers",
            str(workers),
        ]
        return run_measured(command, tree=tree)


def cli(num_records: int, buffer_size: int, workers: int | None = None) -> dict:
    """``ddsynth generate`` exactly as a user runs it: the whole process."""
    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable,
            "-m",
            "dd_core",
            "generate",
            str(CONFIG),
            "-n",
            str(num_records),
            "--buffer-size",
            str(buffer_size),
            "--artifact-path",
            out,
        ]
        if workers:
            command += ["--workers", str(workers)]
        result = run_measured(command, parse_json=False)
    result["rows_per_s"] = num_records / result["wall_s"]
    return result


def library_floor() -> float:
    """Wall seconds of a process that only imports what ``ddsynth generate`` cannot do without."""
    return run_measured([sys.executable, "-c", f"import {', '.join(FLOOR_MODULES)}"], parse_json=False)["wall_s"]


def reference(num_records: int, buffer_size: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        return run_reference(
            "customers_workload.py",
            ["--num-records", str(num_records), "--buffer-size", str(buffer_size), "--out", out],
            timeout=7200,
        )


def _row(label: str, rows: int, seconds: float, rate: float, rss: float) -> str:
    return f"{label:<46}{rows:>10,}{seconds:>10.2f}{rate:>12,.0f}{rss:>14,.0f}"


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def byte_compile_dd() -> None:
    """dd's modules byte-compiled, as pip compiles an installed wheel's (and the reference's):
    an editable install run with PYTHONDONTWRITEBYTECODE set (as on this machine) would
    otherwise compile its ~50 modules from source on every start (~50 ms)."""
    for package in ("dd_core", "dd_dagster"):
        compileall.compile_dir(BENCH.parent / package, quiet=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip the reference at 200,000 records")
    args = ap.parse_args()
    byte_compile_dd()
    print(f"customers.yaml; {CORES} cores available; each run in its own process")
    print(f"{'run':<46}{'rows':>10}{'seconds':>10}{'rows/s':>12}{'peak RSS MB':>14}")

    n = 20_000
    one, every, ref = ours(n, 1000, 1), ours(n, 1000, CORES), reference(n, 1000)
    wholes = [cli(n, 1000) for _ in range(WHOLE_RUNS)]
    whole = {key: statistics.median(w[key] for w in wholes) for key in ("wall_s", "rows_per_s", "peak_rss_mb")}
    floor = statistics.median(library_floor() for _ in range(WHOLE_RUNS))
    print(_row("dd, 1 worker (generation only)", n, one["seconds"], one["rows_per_s"], one["peak_rss_mb"]))
    print(
        _row(f"dd, {CORES} workers (generation only)", n, every["seconds"], every["rows_per_s"], every["peak_rss_mb"])
    )
    print(_row("data-designer 0.9.7 (create() only)", n, ref["seconds"], ref["rows_per_s"], ref["peak_rss_mb"]))
    print(
        _row(
            f"ddsynth generate, whole process (median of {WHOLE_RUNS})",
            n,
            whole["wall_s"],
            whole["rows_per_s"],
            whole["peak_rss_mb"],
        )
    )
    print(_row("data-designer 0.9.7, whole process", n, ref["wall_s"], n / ref["wall_s"], ref["peak_rss_mb"]))
    inner = max(one["rows_per_s"], every["rows_per_s"]) / ref["rows_per_s"]
    outer = ref["wall_s"] / whole["wall_s"]
    print(f"  -> generation only: dd is {inner:.1f}x the reference's rows/s (target >= 20x: {_met(inner >= 20)})")
    print(
        f"  -> whole process: ddsynth generate takes {whole['wall_s']:.2f} s, the reference {ref['wall_s']:.2f} s: {outer:.1f}x (target >= 50x: {_met(outer >= 50)})"
    )
    print(
        f"  -> floor: a process importing only {', '.join(FLOOR_MODULES)} takes {floor:.2f} s (median of {WHOLE_RUNS}), "
        f"{ref['wall_s'] / floor:.0f}x the reference's whole process; ddsynth generate's own work on top of it (its modules, "
        f"the config, {n // 1000} row groups, their fsynced files and records): {whole['wall_s'] - floor:.2f} s"
    )

    n = 200_000
    one, every = ours(n, 1000, 1), ours(n, 1000, CORES)
    print(_row("dd, 1 worker", n, one["seconds"], one["rows_per_s"], one["peak_rss_mb"]))
    print(_row(f"dd, {CORES} workers", n, every["seconds"], every["rows_per_s"], every["peak_rss_mb"]))
    print(f"  -> {CORES} workers: {every['rows_per_s'] / one['rows_per_s']:.2f}x the rows/s of one")
    if not args.quick:
        ref = reference(n, 1000)
        print(_row("data-designer 0.9.7", n, ref["seconds"], ref["rows_per_s"], ref["peak_rss_mb"]))
        ratio = every["rows_per_s"] / ref["rows_per_s"]
        print(f"  -> dd is {ratio:.1f}x the reference's rows/s (target >= 20x: {_met(ratio >= 20)})")

    starts = [cli(10, 1000)["wall_s"] for _ in range(8)][1:]  # the first run warms the caches
    start = statistics.median(starts)
    print(
        f"ddsynth generate -n 10, whole process: median {start:.3f} s of {len(starts)} runs ({', '.join(f'{s:.2f}' for s in starts)}) "
        f"(target < {START_LIMIT_S} s: {_met(start < START_LIMIT_S)})"
    )

    big = ours(1_000_000, 10_000, CORES, tree=True)
    print(
        _row(
            f"dd, 1,000,000 records, buffer 10,000, {CORES} workers",
            big["rows"],
            big["seconds"],
            big["rows_per_s"],
            big["tree_peak_rss_mb"],
        )
    )
    print(
        f"  -> process tree ({big['tree_processes']} processes): peak RSS {big['tree_peak_rss_mb']:.0f} MB sampled at once, "
        f"sum of each process's peak {big['tree_sum_of_peaks_mb']:.0f} MB, parent alone {big['peak_rss_mb']:.0f} MB "
        f"(target < {RSS_LIMIT_MB} MB: {_met(big['tree_sum_of_peaks_mb'] < RSS_LIMIT_MB)})"
    )


if __name__ == "__main__":
    main()
