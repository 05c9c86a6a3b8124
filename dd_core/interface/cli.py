"""The ``ddsynth`` command line.

Every command ends with one message and the documented exit code (``dd_core.errors``): user
errors print what was found and what to do, Ctrl-C and SIGTERM print what is finished and the
command that continues, and an unexpected exception says it is a bug (``--debug`` shows the
traceback). Text from users and servers is printed literally (never as Rich markup) and
scrubbed of secrets.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import sys
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from typer.core import TyperGroup

from dd_core.errors import INTERNAL_ERROR_EXIT, DDError
from dd_core.interface.text import literal
from dd_core.interrupts import Interrupted, signal_number, sigterm_raises
from dd_core.redaction import redact_handler, scrub
from dd_core.without_pandas import refuse_pandas

if TYPE_CHECKING:
    from rich.console import Console

    from dd_core.interface.api import DatasetResult


def styled(stderr: bool = False) -> bool:
    """Whether output goes through rich: on a terminal (colour, the live progress bar), or when
    FORCE_COLOR asks for it, as rich decides. Into a pipe or a file plain lines are written
    without loading rich (~20 ms of every run's start-up)."""
    return (sys.stderr if stderr else sys.stdout).isatty() or bool(os.environ.get("FORCE_COLOR"))


@functools.cache
def console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, soft_wrap=True, highlight=False)


def say(text: str, *, stderr: bool = False, prefix: tuple[str, str] | None = None) -> None:
    """Print text literally (no markup, no highlighting, control characters shown, see
    ``dd_core.interface.text``), scrubbed of secrets; ``prefix``: (text, rich style) before it,
    the style shown on a terminal only."""
    text = literal(scrub(str(text)))
    if styled(stderr):
        from rich.text import Text

        console(stderr).print(Text.assemble(prefix or "", text), soft_wrap=True)
        return
    stream = sys.stderr if stderr else sys.stdout
    stream.write(f"{prefix[0] if prefix else ''}{text}\n")
    stream.flush()


def say_error(message: str) -> None:
    say(message, stderr=True, prefix=("Error: ", "bold red"))


class _DDGroup(TyperGroup):
    """Turns whatever a command raises into one message and its exit code."""

    def invoke(self, ctx: typer.Context):
        try:
            with sigterm_raises():
                return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except DDError as exc:
            say_error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except Interrupted as exc:
            say(exc.message, stderr=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt as exc:
            signum = signal_number(exc)
            say(f"Stopped by {'SIGTERM' if signum == 15 else 'Ctrl-C'}; nothing was left half-written.", stderr=True)
            raise typer.Exit(128 + signum) from None
        except BrokenPipeError:
            raise
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            say_error(
                f"internal error (a bug in dd): {type(exc).__name__}: {str(exc).rstrip('.')}. Nothing was left half-written. "
                "Rerun with --debug to see the traceback, and report it."
            )
            raise typer.Exit(INTERNAL_ERROR_EXIT) from None


app = typer.Typer(
    cls=_DDGroup,
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    help="Resumable synthetic data generation.",
)


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an internal error.")] = False,
) -> None:
    """Resumable synthetic data generation."""


class ResumeChoice(StrEnum):
    never = "never"
    always = "always"
    if_possible = "if_possible"


class ExportChoice(StrEnum):
    jsonl = "jsonl"
    csv = "csv"
    parquet = "parquet"


ConfigArg = Annotated[Path, typer.Argument(help="Dataset config (YAML or JSON).")]


@app.command()
def validate(config: ConfigArg) -> None:
    """Check a config; print its columns and fingerprint."""
    from dd_core.config import load_config
    from dd_core.fingerprinting import fingerprint

    cfg = load_config(config)
    say(f"valid: {len(cfg.columns)} column(s) -> {', '.join(cfg.output_names)}")
    if cfg.accept is not None:
        from dd_core.config.rule import rule_names
        from dd_core.engine.callable_sandbox import check_callables

        check_callables(cfg)
        say(
            f"accept: {cfg.accept} (reads {', '.join(sorted(rule_names(cfg.accept)))}; up to "
            f"{cfg.max_candidates_per_record:g} candidates per record)"
        )
    say(f"config_hash: {fingerprint(cfg)['config_hash']}")


@app.command()
def preview(config: ConfigArg, num_records: Annotated[int, typer.Option("-n", "--num-records", min=1)] = 10) -> None:
    """Generate a few rows and show them (nothing is written)."""
    from dd_core.config import load_config
    from dd_core.interface import preview_view

    api = _generation_api()
    cfg = load_config(config)
    # With a rule: every candidate of the stream, accepted or rejected, with the validator columns that say why.
    make = api.preview_candidates_table if cfg.accept is not None else api.preview_table
    records = make(cfg, num_records).to_pylist()
    if styled():
        out = console()
        for renderable in preview_view.terminal_renderables(records, out.width):
            out.print(renderable)
    else:
        for line in preview_view.plain_lines(records):
            say(line)
    say(preview_view.summary(records, str(config), with_verdicts=cfg.accept is not None))


WorkersOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Processes producing row groups (default: the cores available; fewer for a small job without LLM columns). Per model, requests in flight stay within max_parallel_requests in total.",
    ),
]


@app.command()
def generate(
    config: ConfigArg,
    num_records: Annotated[int, typer.Option("--num-records", "-n", min=1, help="Records to generate.")],
    buffer_size: Annotated[int, typer.Option(min=1, help="Records per row group (checkpoint).")] = 1000,
    artifact_path: Annotated[
        str, typer.Option(help="Folder (or s3://bucket/prefix) that holds dataset folders.")
    ] = "artifacts",
    dataset_name: Annotated[str | None, typer.Option(help="Dataset folder name (default: the config's name).")] = None,
    resume: Annotated[
        ResumeChoice, typer.Option(help="What to do with an existing dataset folder.")
    ] = ResumeChoice.if_possible,
    workers: WorkersOption = None,
) -> None:
    """Generate a dataset into <artifact-path>/<dataset-name>/, resuming where a run stopped."""
    api = _generation_api()
    with _progress() as on_progress:
        result = api.generate(
            config,
            num_records,
            buffer_size=buffer_size,
            artifact_path=artifact_path,
            dataset_name=dataset_name,
            resume=resume.value,
            progress=on_progress,
            workers=workers,
        )
    _report(result)


@app.command("resume")
def resume_command(
    dataset: Annotated[str, typer.Argument(help="A dataset folder (local, s3://, gs:// or az://).")],
    workers: WorkersOption = None,
) -> None:
    """Continue a dataset from its folder alone: config, target and buffer size come from the folder."""
    api = _generation_api()
    with _progress() as on_progress:
        result = api.resume_dataset(dataset, progress=on_progress, workers=workers)
    _report(result)


def _generation_api():
    """dd's API for the commands that generate, without pandas (never needed here, see
    dd_core.without_pandas). Imported with the garbage collector paused, then frozen: the
    import makes most of the objects the process will ever hold (pydantic's models and
    schemas, numpy, pyarrow, jinja2), and collections meanwhile would walk them again and again
    (~20 ms of every start); frozen, later collections skip them."""
    refuse_pandas()
    gc.disable()
    try:
        import dd_core.interface.api as api
    finally:
        gc.freeze()
        gc.enable()
    return api


def _report(result: DatasetResult) -> None:
    meta = result.metadata
    if result.already_complete:
        say(f"{result.path} is already complete ({meta['actual_num_records']} records); nothing was generated.")
    else:
        say(
            f"Generated {result.generated_row_groups} row group(s) in {result.seconds:.1f} s; "
            f"{meta['actual_num_records']} records ({rate_text(meta['actual_num_records'], result.seconds)} overall)."
        )
        if meta.get("dropped_rows"):
            why = "whose LLM cells failed" if "acceptance" not in meta else "(failed LLM cells, or too few accepted)"
            say(f"Dropped {meta['dropped_rows']} row(s) {why} (see metadata.json llm_usage).")
    line = acceptance_line(meta)
    if line:
        say(line)
    for alias, usage in result.llm_usage.items():
        errors = ", ".join(f"{code} x{n}" for code, n in usage["errors"].items()) or "none"
        say(
            f"Model {alias} ({usage['model']}): {usage['calls']} calls, {usage['cache_hits']} cached, "
            f"{usage['retries']} retries, {usage['failed_cells']} failed cells, errors: {errors}, "
            f"tokens {usage['prompt_tokens']} in / {usage['completion_tokens']} out"
            + (f", {usage['batch_calls']} through batches" if usage.get("batch_calls") else "")
            + (
                f", {usage['abandoned']} abandoned after they reached the server (possibly billed)"
                if usage.get("abandoned")
                else ""
            )
            + (f", {usage['cut_replies']} replies cut at max_tokens" if usage.get("cut_replies") else "")
        )
    for line in cost_lines(meta):
        say(line)
    say(f"Dataset: {result.path}")


def rate_text(records: int, seconds: float) -> str:
    """A rate that reads well at any speed: "1,234 records/s", "2.5 records/s", "1.3 records/min"."""
    per_s = records / seconds if seconds > 0 else 0.0
    if per_s >= 10:
        return f"{per_s:,.0f} records/s"
    if per_s >= 1:
        return f"{per_s:.1f} records/s"
    per_min = 60 * per_s
    return f"{per_min:.2g} records/min" if per_min < 10 else f"{per_min:.0f} records/min"


def acceptance_line(meta: dict) -> str | None:
    """Candidates generated, accepted and their rate, over the dataset's recorded row groups."""
    counts = meta.get("acceptance")
    if not isinstance(counts, dict) or not counts.get("candidates"):
        return None
    failed = f", {counts['failed']:,} lost an LLM cell" if counts.get("failed") else ""
    return (
        f"Acceptance: {counts['accepted']:,} of {counts['candidates']:,} candidates passed the rule "
        f"({counts['rate']:.1%}{failed}); every candidate's calls are in the cost."
    )


def cost_lines(meta: dict) -> list[str]:
    """What the dataset was paid for, per priced model and in total (nothing without prices)."""
    spend = meta.get("llm_spend", {})
    lines = [
        f"Cost of model {alias}: ${entry['cost_usd']:.4f} for {entry['requests']:,} paid requests "
        f"({entry['prompt_tokens']:,} tokens in / {entry['completion_tokens']:,} out; {entry['batch_requests']:,} at the batch price"
        + (
            f"; {entry['abandoned_requests']:,} abandoned, counted as possibly billed"
            if entry.get("abandoned_requests")
            else ""
        )
        + ")"
        for alias, entry in spend.items()
        if "cost_usd" in entry
    ]
    if "llm_cost_usd" in meta:
        lines.append(
            f"Cost of the dataset: ${meta['llm_cost_usd']:.4f} (every run, each paid request once; see metadata.json llm_spend)"
        )
    return lines


@contextmanager
def _progress():
    if not styled(stderr=True):
        yield None
        return
    from rich.progress import (  # a terminal only
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("row groups"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
    # Redrawn on each finished row group, not by rich's refresh thread: with no other thread
    # running, worker processes can be forked (fast) instead of started afresh.
    with Progress(*columns, console=console(stderr=True), transient=True, auto_refresh=False) as bar:
        task = bar.add_task("generate", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)
            bar.refresh()

        yield update


@app.command()
def status(
    dataset: Annotated[str, typer.Argument(help="A dataset folder (local, s3://, gs:// or az://).")],
    config: Annotated[Path | None, typer.Option(help="Would this config resume the dataset?")] = None,
    num_records: Annotated[
        int | None, typer.Option(min=1, help="Target to check with --config (default: the stored one).")
    ] = None,
) -> None:
    """Show a dataset folder's target, progress, fingerprint and resumability."""
    from dd_core.interface.status import describe

    for key, value in describe(dataset, config, num_records).items():
        say(f"{key:>16}: {value}")


@app.command()
def export(
    dataset: Annotated[str, typer.Argument(help="A finished dataset folder (local, s3://, gs:// or az://).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write (never inside the dataset folder).")],
    fmt: Annotated[ExportChoice, typer.Option("--format", help="Output format.")] = ExportChoice.jsonl,
) -> None:
    """Stream a finished dataset into one JSONL, CSV or parquet file."""
    from dd_core.interface.export import export_dataset

    rows = export_dataset(dataset, fmt.value, output)
    say(f"Wrote {rows} records to {output}")


@app.command()
def push(
    dataset: Annotated[str, typer.Argument(help="A finished dataset folder (local, s3://, gs:// or az://).")],
    repo: Annotated[str, typer.Option("--repo", help="Hugging Face Hub dataset repo: org/name (created if missing).")],
    private: Annotated[
        bool, typer.Option("--private", help="Create the repo private (an existing repo keeps its visibility).")
    ] = False,
    revision: Annotated[
        str | None, typer.Option("--revision", help="Branch to commit to (created if missing; default main).")
    ] = None,
    license: Annotated[
        str | None, typer.Option("--license", help="License id for the dataset card, e.g. cc-by-4.0.")
    ] = None,
) -> None:
    """Publish a finished dataset to the Hugging Face Hub: parquet shards and a dataset card (HF_TOKEN)."""
    from dd_core.interface.hub_push import push_dataset

    result = push_dataset(dataset, repo, private=private, revision=revision, license=license)
    if result.up_to_date:
        say(f"{result.repo_id} ({result.revision}) already holds this dataset and card; nothing was uploaded")
        return
    say(
        f"Pushed {result.files} parquet file(s) and the dataset card to {result.repo_id} ({result.revision}): {result.commit_url}"
    )
    if result.deleted:
        say(
            f"Removed {len(result.deleted)} file(s) under data/ that were not part of this dataset: {', '.join(result.deleted[:10])}"
        )


def main() -> None:
    # pydantic looks for validation plugins in every installed package's entry points when dd
    # builds its config models (~15 ms in a venv with Dagster); the command uses none. A
    # PYDANTIC_DISABLE_PLUGINS of the user's own still decides.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    # On a terminal, log lines print above the live progress bar (literally: no markup); in a
    # pipe they are plain lines. Either way they are scrubbed of secrets.
    if styled(stderr=True):
        from rich.highlighter import NullHighlighter
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(
            console=console(stderr=True),
            show_time=False,
            show_level=False,
            show_path=False,
            markup=False,
            highlighter=NullHighlighter(),
        )
    else:
        handler = logging.StreamHandler(sys.stderr)
    redact_handler(handler)
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[handler])
    app()
