"""Peak memory of ``ddsynth export`` at two dataset sizes: streaming keeps it flat.

    .venv/bin/python bench/export_memory.py [--small 100000] [--large 1000000]

Generates examples/customers.yaml at both sizes (buffer 10,000), then exports each to JSONL, CSV
and parquet in its own process and prints that process's peak RSS. Memory must not grow with the
dataset (issue 3).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from measure import run_measured  # noqa: E402

import dd_core  # noqa: E402

CONFIG = BENCH.parent / "examples" / "customers.yaml"
EXPORT = "import json, sys; from dd_core.interface.export import export_dataset; print(json.dumps({'rows': export_dataset(sys.argv[1], sys.argv[2], sys.argv[3])}))"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=100_000)
    ap.add_argument("--large", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'records':>10}{'format':>9}{'peak RSS MB':>13}")
        for records in (args.small, args.large):
            path = dd_core.generate(CONFIG, records, buffer_size=10_000, artifact_path=Path(tmp) / str(records)).path
            for fmt in ("jsonl", "csv", "parquet"):
                result = run_measured(
                    [sys.executable, "-c", EXPORT, str(path), fmt, str(Path(tmp) / f"out-{records}.{fmt}")]
                )
                assert result["rows"] == records
                print(f"{records:>10,}{fmt:>9}{result['peak_rss_mb']:>13,.0f}")


if __name__ == "__main__":
    main()
