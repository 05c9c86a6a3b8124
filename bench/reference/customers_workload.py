"""Reference side of the "customers" workload: data-designer 0.9.7, no LLM.

Runs under the reference venv (see bench/reference_env.py).  Builds, with
data-designer's own API, a config of sampler + expression columns equivalent to
our customers workload and runs ``DataDesigner.create()`` -- the path its users
take, writing parquet row groups of ``--buffer-size`` rows under ``--out``.

Measures: ``seconds`` = wall time of the ``create()`` call (generation, parquet
writes, and the dataset profiling that create() always runs at the end);
``import_s`` = importing data_designer; ``config_s`` = building the config and
the DataDesigner object.  ``last_batch_s`` = time until the last row group was
on disk (i.e. without the closing profiling step).

Person data: its "person" sampler needs a downloaded Nemotron-Personas dataset,
so the Faker-backed ``person_from_faker`` sampler is used.

Last stdout line: {"rows", "seconds", "rows_per_s", "import_s", "version", ...}
"""

from __future__ import annotations

import argparse
import json
import time

from _common import VERSION, import_data_designer

SUMMARY = (
    "{{ person.first_name }} {{ person.last_name }} ({{ region }}/{{ city }}) score={{ score }}"
    " orders={{ n_orders }} active={{ is_active }} since {{ signup_date }}"
)


def build_config(dd):
    b = dd.DataDesignerConfigBuilder(model_configs=[])

    def sampler(name, stype, params, **kw):
        b.add_column(dd.SamplerColumnConfig(name=name, sampler_type=stype, params=params, **kw))

    S = dd.SamplerType
    sampler(
        "region",
        S.CATEGORY,
        dd.CategorySamplerParams(values=["north", "south", "east", "west"], weights=[0.4, 0.3, 0.2, 0.1]),
    )
    sampler(
        "city",
        S.SUBCATEGORY,
        dd.SubcategorySamplerParams(
            category="region",
            values={
                "north": ["oslo", "helsinki"],
                "south": ["rome", "madrid"],
                "east": ["warsaw", "kyiv"],
                "west": ["lisbon", "dublin"],
            },
        ),
    )
    sampler("score", S.UNIFORM, dd.UniformSamplerParams(low=0, high=100, decimal_places=2))
    sampler("height_cm", S.GAUSSIAN, dd.GaussianSamplerParams(mean=170, stddev=10, decimal_places=1))
    sampler(
        "signup_date",
        S.DATETIME,
        dd.DatetimeSamplerParams(start="2020-01-01", end="2025-01-01", unit="D"),
        convert_to="%Y-%m-%d",
    )
    sampler("record_id", S.UUID, dd.UUIDSamplerParams(prefix="rec-"))
    sampler("n_orders", S.POISSON, dd.PoissonSamplerParams(mean=3))
    sampler("is_active", S.BERNOULLI, dd.BernoulliSamplerParams(p=0.7))
    sampler("person", S.PERSON_FROM_FAKER, dd.PersonFromFakerSamplerParams(locale="en_US", age_range=[18, 80]))
    b.add_column(dd.ExpressionColumnConfig(name="summary", expr=SUMMARY))
    return b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-records", type=int, required=True)
    ap.add_argument("--buffer-size", type=int, default=1000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument(
        "--no-otel",
        action="store_true",
        help="disable its default loopback Prometheus metrics endpoint (RunConfig.otel_metrics_port)",
    )
    a = ap.parse_args()

    dd, DataDesigner, import_s = import_data_designer(a.seed)
    t0 = time.perf_counter()
    builder = build_config(dd)
    # A placeholder provider (never called: no LLM column) so that it does not load
    # its default providers and warn at length about their missing API keys.
    designer = DataDesigner(
        artifact_path=a.out,
        model_providers=[dd.ModelProvider(name="unused", endpoint="http://127.0.0.1:9/v1")],
        auto_configure_logging=False,
    )
    run_kw = {"buffer_size": a.buffer_size}
    if a.no_otel:
        run_kw["otel_metrics_port"] = None
    designer.set_run_config(dd.RunConfig(**run_kw))
    config_s = time.perf_counter() - t0

    batch_done: list[float] = []
    t0 = time.perf_counter()
    result = designer.create(
        builder,
        num_records=a.num_records,
        dataset_name="customers",
        on_batch_complete=lambda _p: batch_done.append(time.perf_counter()),
    )
    seconds = time.perf_counter() - t0

    rows = len(result.load_dataset())
    print(
        json.dumps(
            {
                "rows": rows,
                "seconds": round(seconds, 4),
                "rows_per_s": round(rows / seconds, 2),
                "import_s": round(import_s, 4),
                "config_s": round(config_s, 4),
                "last_batch_s": round(batch_done[-1] - t0, 4) if batch_done else None,
                "row_groups": len(batch_done),
                "version": VERSION,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
