"""The ``dd`` command line. User errors print one message (no traceback) and exit with the
error's code: 2 config/usage, 3 resume conflict, 4 damaged dataset, 5 folder locked,
6 generation failed."""

from __future__ import annotations

import importlib.abc
import json
import logging
import os
import sys
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from dd_core.errors import DDError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Resumable synthetic data generation.")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


class ResumeChoice(StrEnum):
    never = "never"
    always = "always"
    if_possible = "if_possible"


class ExportChoice(StrEnum):
    jsonl = "jsonl"
    csv = "csv"
    parquet = "parquet"


ConfigArg = Annotated[Path, typer.Argument(help="Dataset config (YAML or JSON).")]


@contextmanager
def user_errors():
    try:
        yield
    except DDError as exc:
        err.print(f"[bold red]Error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None


@app.command()
def validate(config: ConfigArg) -> None:
    """Check a config; print its columns and fingerprint."""
    from dd_core.config import load_config
    from dd_core.fingerprinting import fingerprint

    with user_errors():
        cfg = load_config(config)
        out.print(f"[green]valid[/]: {len(cfg.columns)} column(s) -> {', '.join(cfg.output_names)}")
        out.print(f"config_hash: {fingerprint(cfg)['config_hash']}")


@app.command()
def preview(config: ConfigArg, num_records: Annotated[int, typer.Option("-n", "--num-records", min=1)] = 10) -> None:
    """Generate a few rows and show them as a table (nothing is written)."""
    from dd_core.interface.api import preview as make_preview

    with user_errors():
        records = make_preview(config, num_records).to_dict("records")
    names = list(records[0]) if records else []
    if len(names) * 14 <= out.width:
        table = Table(*names, show_lines=True)
        for record in records:
            table.add_row(*(_cell(v) for v in record.values()))
        out.print(table)
        return
    for number, record in enumerate(records, start=1):  # too many columns: one block per record
        table = Table("column", "value", title=f"record {number}", title_justify="left", show_header=False)
        for name, value in record.items():
            table.add_row(name, _cell(value))
        out.print(table)


def _cell(value) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)
    return text if len(text) <= 300 else text[:297] + "..."


@app.command()
def generate(
    config: ConfigArg,
    num_records: Annotated[int, typer.Option("--num-records", "-n", min=1, help="Records to generate.")],
    buffer_size: Annotated[int, typer.Option(min=1, help="Records per row group (checkpoint).")] = 1000,
    artifact_path: Annotated[str, typer.Option(help="Folder (or s3://bucket/prefix) that holds dataset folders.")] = "artifacts",
    dataset_name: Annotated[Optional[str], typer.Option(help="Dataset folder name (default: the config's name).")] = None,
    resume: Annotated[ResumeChoice, typer.Option(help="What to do with an existing dataset folder.")] = ResumeChoice.if_possible,
    workers: Annotated[
        Optional[int],
        typer.Option(min=1, help="Processes producing row groups (default: the cores available). Per model, requests in flight stay within max_parallel_requests in total."),
    ] = None,
) -> None:
    """Generate a dataset into <artifact-path>/<dataset-name>/, resuming where a run stopped."""
    _without_pandas()
    from dd_core.interface.api import generate as run

    with user_errors(), _progress() as on_progress:
        result = run(
            config,
            num_records,
            buffer_size=buffer_size,
            artifact_path=artifact_path,
            dataset_name=dataset_name,
            resume=resume.value,
            progress=on_progress,
            workers=workers or available_cores(),
        )
    meta = result.metadata
    if result.already_complete:
        out.print(f"{result.path} is already complete ({meta['actual_num_records']} records); nothing was generated.")
    else:
        rate = meta["actual_num_records"] / result.seconds if result.seconds else 0
        out.print(
            f"Generated {result.generated_row_groups} row group(s) in {result.seconds:.1f} s; "
            f"{meta['actual_num_records']} records ({rate:,.0f} records/s overall)."
        )
        if meta.get("dropped_rows"):
            out.print(f"Dropped {meta['dropped_rows']} row(s) whose LLM cells failed (see metadata.json llm_usage).")
    for alias, usage in result.llm_usage.items():
        errors = ", ".join(f"{code} x{n}" for code, n in usage["errors"].items()) or "none"
        out.print(
            f"Model {alias} ({usage['model']}): {usage['calls']} calls, {usage['cache_hits']} cached, "
            f"{usage['retries']} retries, {usage['failed_cells']} failed cells, errors: {errors}, "
            f"tokens {usage['prompt_tokens']} in / {usage['completion_tokens']} out"
            + (f", {usage['batch_calls']} through batches" if usage.get("batch_calls") else "")
        )
    for line in cost_lines(meta):
        out.print(line)
    out.print(f"Dataset: {result.path}")


def cost_lines(meta: dict) -> list[str]:
    """What the dataset was paid for, per priced model and in total (nothing without prices)."""
    spend = meta.get("llm_spend", {})
    lines = [
        f"Cost of model {alias}: ${entry['cost_usd']:.4f} for {entry['requests']:,} paid requests "
        f"({entry['prompt_tokens']:,} tokens in / {entry['completion_tokens']:,} out; {entry['batch_requests']:,} at the batch price)"
        for alias, entry in spend.items()
        if "cost_usd" in entry
    ]
    if "llm_cost_usd" in meta:
        lines.append(f"Cost of the dataset: ${meta['llm_cost_usd']:.4f} (every run, each paid request once; see metadata.json llm_spend)")
    return lines


class _NoPandas(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"{name} is not needed by 'dd generate'", name=name)
        return None


def _without_pandas() -> None:
    """``dd generate`` never needs pandas, but pyarrow imports it (~0.15-0.3 s) on the first
    ``pa.array`` of a Python list when it is installed; refused, pyarrow works without it."""
    if "pandas" not in sys.modules:
        sys.meta_path.insert(0, _NoPandas())


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextmanager
def _progress():
    if not err.is_terminal:
        yield None
        return
    columns = [TextColumn("row groups"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
    # Redrawn on each finished row group, not by rich's refresh thread: with no other thread
    # running, worker processes can be forked (fast) instead of started afresh.
    with Progress(*columns, console=err, transient=True, auto_refresh=False) as bar:
        task = bar.add_task("generate", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)
            bar.refresh()

        yield update


@app.command()
def status(
    dataset: Annotated[str, typer.Argument(help="A dataset folder (local or s3://...).")],
    config: Annotated[Optional[Path], typer.Option(help="Would this config resume the dataset?")] = None,
    num_records: Annotated[Optional[int], typer.Option(help="Target to check with --config (default: the stored one).")] = None,
) -> None:
    """Show a dataset folder's target, progress, fingerprint and resumability."""
    from dd_core.interface.status import describe

    with user_errors():
        report = describe(dataset, config, num_records)
    for key, value in report.items():
        out.print(f"{key:>16}: {value}", highlight=False)


@app.command()
def export(
    dataset: Annotated[str, typer.Argument(help="A finished dataset folder (local or s3://...).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")],
    fmt: Annotated[ExportChoice, typer.Option("--format", help="Output format.")] = ExportChoice.jsonl,
) -> None:
    """Stream a finished dataset into one JSONL, CSV or parquet file."""
    from dd_core.interface.export import export_dataset

    with user_errors():
        rows = export_dataset(dataset, fmt.value, output)
    out.print(f"Wrote {rows} records to {output}")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    app()
