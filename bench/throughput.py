"""Rows/s and peak RSS of the customers workload: dd against the reference generator.

    .venv/bin/python bench/throughput.py                 # full run (the reference at 200k takes ~10 min)
    .venv/bin/python bench/throughput.py --quick         # 20k rows each, plus the 1M-row memory check

Each measurement runs in its own process; peak RSS is that process's own maximum.
Targets (issue 2): >= 20x the reference's rows/s; peak RSS < 500 MB at 1,000,000 records, buffer 10,000.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from measure import run_measured  # noqa: E402
from reference_env import run_reference  # noqa: E402

CONFIG = BENCH.parent / "examples" / "customers.yaml"
RSS_LIMIT_MB = 500


def ours(num_records: int, buffer_size: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, str(BENCH / "workloads" / "dd_generate.py"), str(CONFIG), "--num-records", str(num_records), "--buffer-size", str(buffer_size), "--out", out]
        return run_measured(command)


def reference(num_records: int, buffer_size: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        return run_reference("customers_workload.py", ["--num-records", str(num_records), "--buffer-size", str(buffer_size), "--out", out], timeout=7200)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="compare at 20,000 records only")
    args = ap.parse_args()
    sizes = [20_000] if args.quick else [20_000, 200_000]
    print(f"{'workload':<34}{'rows':>10}{'seconds':>10}{'rows/s':>12}{'peak RSS MB':>14}")
    for n in sizes:
        a, b = ours(n, 1000), reference(n, 1000)
        for label, r in (("dd, buffer 1,000", a), ("data-designer 0.9.7, buffer 1,000", b)):
            print(f"{label:<34}{r['rows']:>10,}{r['seconds']:>10.2f}{r['rows_per_s']:>12,.0f}{r['peak_rss_mb']:>14,.0f}")
        ratio = a["rows_per_s"] / b["rows_per_s"]
        print(f"  -> {n:,} records: dd is {ratio:.1f}x the reference's rows/s (target >= 20x: {'met' if ratio >= 20 else 'NOT met'})")
    big = ours(1_000_000, 10_000)
    print(f"{'dd, 1,000,000 records, buffer 10,000':<34}{big['rows']:>10,}{big['seconds']:>10.2f}{big['rows_per_s']:>12,.0f}{big['peak_rss_mb']:>14,.0f}")
    print(f"  -> peak RSS {big['peak_rss_mb']:.0f} MB (target < {RSS_LIMIT_MB} MB: {'met' if big['peak_rss_mb'] < RSS_LIMIT_MB else 'NOT met'})")


if __name__ == "__main__":
    main()
