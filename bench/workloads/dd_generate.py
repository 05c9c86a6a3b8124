"""Our side of a generation workload: ``dd_core.generate`` timed without interpreter start-up
and imports (reported as ``import_s``, as the reference's workloads do).

Last stdout line: {"rows", "seconds", "rows_per_s", "import_s"}.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--num-records", type=int, required=True)
    ap.add_argument("--buffer-size", type=int, default=1000)
    ap.add_argument("--out", required=True)
    ap.add_argument(
        "--workers", type=int, default=1, help="processes producing row groups (ddsynth generate --workers)"
    )
    a = ap.parse_args()
    t0 = time.perf_counter()
    import dd_core
    import dd_core.engine.rowwise  # noqa: F401 - the LLM engine, imported on first use otherwise
    from dd_core.without_pandas import refuse_pandas

    refuse_pandas()  # as ddsynth generate and its workers do: pyarrow would load it on the first row group

    generate = dd_core.generate  # public names load on first use: load them outside the timing
    import_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = generate(
        a.config, a.num_records, buffer_size=a.buffer_size, artifact_path=a.out, resume="never", workers=a.workers
    )
    seconds = time.perf_counter() - t0
    rows = result.num_records
    print(
        json.dumps(
            {
                "rows": rows,
                "seconds": round(seconds, 4),
                "rows_per_s": round(rows / seconds, 1),
                "import_s": round(import_s, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
