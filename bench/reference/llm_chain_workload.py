"""Reference side of the chained-LLM workload: data-designer 0.9.7.

Runs under the reference venv (see bench/reference_env.py).  Config: a model
provider for an OpenAI-compatible endpoint at ``--base-url`` (its OpenAI base
URL, e.g. http://127.0.0.1:8000/v1; "/v1" is appended when the URL has no
path), one model alias with ``max_parallel_requests=P``, a category column
``topic`` and two chained ``llm-text`` columns: ``question`` from the topic,
``answer`` from the question.  Runs ``DataDesigner.create()`` for N records.

Measures: ``seconds`` = wall time of ``create()`` (its one-request model
health check, the 2*N chat completions, parquet writes and closing profiling);
``calls`` = 2*rows (the health-check request is not counted);
``last_batch_s`` = time until the last row group was on disk.  ``import_s``
and ``config_s`` are reported separately.

Last stdout line: {"rows", "seconds", "calls", "calls_per_s", "version", ...}
"""

from __future__ import annotations

import argparse
import json
import os
import time
from urllib.parse import urlsplit

from _common import VERSION, import_data_designer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--num-records", type=int, required=True)
    ap.add_argument("--buffer-size", type=int, default=1000)
    ap.add_argument("--max-parallel-requests", type=int, default=4)
    ap.add_argument("--out", required=True)
    ap.add_argument("--api-key-env", default=None, help="name of an env var holding the API key")
    ap.add_argument("--seed", type=int, default=None)
    a = ap.parse_args()

    base_url = a.base_url.rstrip("/")
    if urlsplit(base_url).path in ("", "/"):
        base_url += "/v1"
    if a.api_key_env and a.api_key_env not in os.environ:
        ap.error(f"--api-key-env: {a.api_key_env} is not set")

    dd, DataDesigner, import_s = import_data_designer(a.seed)
    t0 = time.perf_counter()
    # api_key is resolved by its secret resolver: an env var name, else taken as-is.
    provider = dd.ModelProvider(name="bench", endpoint=base_url, provider_type="openai", api_key=a.api_key_env)
    model = dd.ModelConfig(
        alias="bench-model",
        model=a.model,
        provider="bench",
        inference_parameters=dd.ChatCompletionInferenceParams(max_parallel_requests=a.max_parallel_requests),
    )
    b = dd.DataDesignerConfigBuilder(model_configs=[model])
    b.add_column(
        dd.SamplerColumnConfig(
            name="topic",
            sampler_type=dd.SamplerType.CATEGORY,
            params=dd.CategorySamplerParams(values=["astronomy", "cooking", "history", "music", "sailing"]),
        )
    )
    b.add_column(
        dd.LLMTextColumnConfig(name="question", model_alias="bench-model", prompt="Write a question about {{ topic }}.")
    )
    b.add_column(
        dd.LLMTextColumnConfig(name="answer", model_alias="bench-model", prompt="Answer this question: {{ question }}")
    )
    designer = DataDesigner(artifact_path=a.out, model_providers=[provider], auto_configure_logging=False)
    designer.set_run_config(dd.RunConfig(buffer_size=a.buffer_size))
    config_s = time.perf_counter() - t0

    batch_done: list[float] = []
    t0 = time.perf_counter()
    result = designer.create(
        b,
        num_records=a.num_records,
        dataset_name="llm_chain",
        on_batch_complete=lambda _p: batch_done.append(time.perf_counter()),
    )
    seconds = time.perf_counter() - t0

    df = result.load_dataset()
    rows = len(df)
    calls = 2 * rows
    print(
        json.dumps(
            {
                "rows": rows,
                "seconds": round(seconds, 4),
                "calls": calls,
                "calls_per_s": round(calls / seconds, 2),
                "rows_per_s": round(rows / seconds, 2),
                "import_s": round(import_s, 4),
                "config_s": round(config_s, 4),
                "last_batch_s": round(batch_done[-1] - t0, 4) if batch_done else None,
                "max_parallel_requests": a.max_parallel_requests,
                "version": VERSION,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
