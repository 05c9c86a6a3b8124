"""Resume planning cost on a dataset folder with 10,000 finished row groups.

    .venv/bin/python bench/resume_planning.py [--row-groups 10000]

Builds the folder once with real generation (one tiny row group per batch file), then times:
scan + plan on the finished dataset (the fast path: metadata.json plus one directory
listing), the same with 3 files written but not yet recorded (their footers are read), and,
for scale, reading every footer. Target (issue 3): planning well under 1 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import dd_core
from dd_core.fingerprinting import fingerprint
from dd_core.resume import plan_resume
from dd_core.storage.dataset_folder import list_batches, scan_folder
from dd_core.storage.layout import DatasetLayout
from dd_core.storage.row_group_files import read_info

CONFIG = {"name": "tiny", "columns": [{"name": "x", "type": "uniform", "low": 0, "high": 1}]}


def timed(fn, repeat: int = 5) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--row-groups", type=int, default=10_000)
    n = ap.parse_args().row_groups
    config = dd_core.load_config(CONFIG)
    config_hash = fingerprint(config)["config_hash"]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = dd_core.generate(config, n, buffer_size=1, artifact_path=tmp)
        print(f"built {n:,} row groups in {time.perf_counter() - start:.1f} s")
        layout = DatasetLayout(result.path)

        def plan() -> None:
            scan = scan_folder(layout)
            plan_resume("if_possible", scan.found, config_hash, n, 1, location=str(layout.root))

        print(f"scan + plan, finished dataset:              {timed(plan) * 1000:8.1f} ms")
        meta = json.loads(layout.metadata.local.read_text())
        meta["completed_row_groups"][-1][1] -= 3  # the last 3 files exist but are not recorded
        layout.metadata.local.write_text(json.dumps(meta))
        print(f"scan + plan, 3 files not yet in metadata:   {timed(plan) * 1000:8.1f} ms")
        print(
            f"dd_core.generate, resume of that folder:    {timed(lambda: dd_core.generate(config, n, buffer_size=1, artifact_path=tmp), 1) * 1000:8.1f} ms (records 3 files, verifies all footers)"
        )
        print(
            f"dd_core.generate, already complete:         {timed(lambda: dd_core.generate(config, n, buffer_size=1, artifact_path=tmp)) * 1000:8.1f} ms"
        )
        footers = timed(lambda: [read_info(layout.parquet_dir / name) for name in list_batches(layout).values()], 1)
        print(f"for scale, reading all {n:,} footers:       {footers * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
