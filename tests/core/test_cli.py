"""The dd command as a user drives it: validate, preview, generate, status, export."""

from __future__ import annotations

import csv
import json

import pyarrow.parquet as pq

from dd_core import fingerprint, generate, load_config, load_dataset
from dd_core.interface.cli import rate_text
from tests.support import EXAMPLES, run_dd

CUSTOMERS = EXAMPLES / "customers.yaml"


def test_validate_prints_columns_and_fingerprint():
    run = run_dd("validate", CUSTOMERS)
    assert run.returncode == 0
    assert "region, city, score" in run.stdout and "config_hash: sha256:" in run.stdout


def test_preview_shows_a_readable_table():
    run = run_dd("preview", CUSTOMERS, "-n", 3)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("record ") == 3 or run.stdout.count("rec-") >= 3
    assert "summary" in run.stdout and "rec-" in run.stdout


def test_generate_writes_the_layout_and_says_where(tmp_path):
    run = run_dd(
        "generate",
        CUSTOMERS,
        "--num-records",
        2500,
        "--buffer-size",
        1000,
        "--artifact-path",
        tmp_path,
        "--dataset-name",
        "c",
    )
    assert run.returncode == 0, run.stderr
    folder = tmp_path / "c"
    assert f"Dataset: {folder}" in run.stdout and "2500 records" in run.stdout
    assert sorted(p.name for p in (folder / "parquet-files").iterdir()) == [f"batch_0000{i}.parquet" for i in range(3)]
    meta = json.loads((folder / "metadata.json").read_text())
    for key in (
        "dataset_name",
        "config_hash",
        "config_hash_algo",
        "config_hash_version",
        "num_records",
        "buffer_size",
        "actual_num_records",
        "completed_row_groups",
        "status",
        "created_at",
        "updated_at",
        "library_version",
    ):
        assert key in meta
    assert meta["status"] == "complete" and meta["actual_num_records"] == 2500
    assert meta["row_group_rows"] == {"2": {"requested": 500, "rows": 500}}
    assert fingerprint(load_config(folder / "config.json"))["config_hash"] == meta["config_hash"]  # a config dd accepts
    kv = pq.read_schema(folder / "parquet-files" / "batch_00002.parquet").metadata
    assert (
        kv[b"dd.row_group"] == b"2"
        and kv[b"dd.num_rows"] == b"500"
        and kv[b"dd.config_hash"] == meta["config_hash"].encode()
    )


def test_status_reports_progress_and_resumability(tmp_path):
    result = generate(CUSTOMERS, 3000, buffer_size=1000, artifact_path=tmp_path, dataset_name="c")
    run = run_dd("status", result.path, "--config", CUSTOMERS)
    assert run.returncode == 0, run.stderr
    assert "3 of 3 finished" in run.stdout and "complete" in run.stdout and result.metadata["config_hash"] in run.stdout
    assert "would resume: yes: already complete" in run.stdout
    bigger = run_dd("status", result.path, "--config", CUSTOMERS, "--num-records", 5000)
    assert "yes: 3 row group(s) reused, 2 to generate" in bigger.stdout
    other = tmp_path / "other.yaml"
    other.write_text(CUSTOMERS.read_text().replace("seed: 42", "seed: 43"))
    run = run_dd("status", result.path, "--config", other)
    assert "would resume: no: Cannot resume" in run.stdout


def test_export_streams_every_format(tmp_path):
    result = generate(CUSTOMERS, 2500, buffer_size=1000, artifact_path=tmp_path, dataset_name="c")
    expected = load_dataset(result.path)
    for fmt in ("jsonl", "csv", "parquet"):
        out = tmp_path / f"out.{fmt}"
        run = run_dd("export", result.path, "--format", fmt, "-o", out)
        assert run.returncode == 0, run.stderr
        assert "Wrote 2500 records" in run.stdout
        if fmt == "jsonl":
            rows = [json.loads(line) for line in out.read_text().splitlines()]
            assert [r["record_id"] for r in rows] == expected["record_id"].tolist()
            assert rows[0]["person"]["first_name"] == expected["person"][0]["first_name"]
        elif fmt == "csv":
            rows = list(csv.DictReader(out.open()))
            assert len(rows) == 2500 and rows[7]["person.email"] == expected["person"][7]["email"]
        else:
            assert pq.read_table(out).to_pandas().equals(expected)


def test_export_refuses_an_unfinished_dataset(tmp_path):
    (tmp_path / "empty").mkdir()
    run = run_dd("export", tmp_path / "empty", "--format", "csv", "-o", tmp_path / "x.csv")
    assert run.returncode == 2 and "is not a dd dataset folder" in run.stderr and not (tmp_path / "x.csv").exists()


def test_messages_into_a_pipe_are_plain_lines_without_control_characters(tmp_path):
    """Into a pipe (CI logs, scripts) dd prints plain lines: no colour codes, and the control
    characters a terminal would act on (here a carriage return and a bell in a file name) dropped,
    as on a terminal."""
    run = run_dd("generate", tmp_path / "over\rwritten\x07.yaml", "-n", 10, "--artifact-path", tmp_path)
    assert run.returncode == 2
    assert run.stderr.startswith("Error: ") and "overwritten.yaml" in run.stderr and "does not exist" in run.stderr
    assert not any(c in run.stderr + run.stdout for c in "\r\x07\x1b")
    done = run_dd("generate", CUSTOMERS, "-n", 10, "--artifact-path", tmp_path)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == f"Dataset: {tmp_path / 'customers'}"


def test_the_summary_rate_reads_well_for_slow_runs():
    """A real model writing 16 records in 12 minutes is not "0 records/s"."""
    assert rate_text(16, 737.0) == "1.3 records/min"
    assert rate_text(8, 330.0) == "1.5 records/min"
    assert rate_text(1, 3600.0) == "0.017 records/min"
    assert rate_text(16, 12.0) == "1.3 records/s"
    assert rate_text(200_000, 31.0) == "6,452 records/s"
    assert rate_text(30, 100.0) == "18 records/min"
    assert rate_text(0, 0.0) == "0 records/min"
