"""Odd command lines: impossible targets, names and paths that are not what they should be,
outputs that would overwrite finished data, and text that looks like Rich markup. Each ends
with one message and the documented exit code; the finished dataset stays byte-identical."""

from __future__ import annotations

import os

import pytest

from tests.hostile.conftest import CUSTOMERS
from tests.hostile.harness import check, invoke, snapshot

# (id, args built from (tmp, ds), exit code, words); ds is a finished dataset that must not change
CASES = [
    # targets
    (
        "zero-records",
        lambda t, d: ["generate", CUSTOMERS, "-n", 0, "--artifact-path", t],
        2,
        ["--num-records", "greater than or equal to 1"],
    ),
    ("negative-records", lambda t, d: ["generate", CUSTOMERS, "-n", -5, "--artifact-path", t], 2, ["--num-records"]),
    (
        "records-as-float-text",
        lambda t, d: ["generate", CUSTOMERS, "-n", "1e30", "--artifact-path", t],
        2,
        ["--num-records", "valid integer"],
    ),
    (
        "records-as-words",
        lambda t, d: ["generate", CUSTOMERS, "-n", "many", "--artifact-path", t],
        2,
        ["--num-records"],
    ),
    (
        "ten-trillion-records-buffer-1",
        lambda t, d: ["generate", CUSTOMERS, "-n", 10**13, "--buffer-size", 1, "--artifact-path", t],
        2,
        ["10,000,000,000,000 row groups", "10,000,000 a dataset may have"],
    ),
    (
        "records-beyond-int64",
        lambda t, d: ["generate", CUSTOMERS, "-n", 10**30, "--artifact-path", t],
        2,
        ["row groups", "raise --buffer-size"],
    ),
    (
        "buffer-zero",
        lambda t, d: ["generate", CUSTOMERS, "-n", 10, "--buffer-size", 0, "--artifact-path", t],
        2,
        ["--buffer-size"],
    ),
    (
        "buffer-too-big",
        lambda t, d: ["generate", CUSTOMERS, "-n", 10**8, "--buffer-size", 10**8, "--artifact-path", t],
        2,
        ["buffer_size 100,000,000", "1,000,000 rows a row group may have"],
    ),
    ("preview-huge", lambda t, d: ["preview", CUSTOMERS, "-n", 10**12], 2, ["preview makes 1 to 10,000 records"]),
    ("preview-float-text", lambda t, d: ["preview", CUSTOMERS, "-n", "1e30"], 2, ["--num-records", "valid integer"]),
    ("preview-zero", lambda t, d: ["preview", CUSTOMERS, "-n", 0], 2, ["--num-records"]),
    (
        "unknown-resume-mode",
        lambda t, d: ["generate", CUSTOMERS, "-n", 10, "--resume", "sometimes", "--artifact-path", t],
        2,
        ["--resume", "sometimes"],
    ),
    (
        "status-target-zero",
        lambda t, d: ["status", d, "--config", CUSTOMERS, "--num-records", 0],
        2,
        ["--num-records", "greater than or equal to 1"],
    ),
    (
        "status-target-beyond-limits",
        lambda t, d: ["status", d, "--config", CUSTOMERS, "--num-records", 10**18],
        2,
        ["row groups", "raise --buffer-size"],
    ),
    # dataset names
    (
        "name-300-chars",
        lambda t, d: ["generate", CUSTOMERS, "-n", 10, "--dataset-name", "n" * 300, "--artifact-path", t],
        2,
        ["at most 200 bytes"],
    ),
    (
        "name-with-slash",
        lambda t, d: ["generate", CUSTOMERS, "-n", 10, "--dataset-name", "a/b", "--artifact-path", t],
        2,
        ["'a/b'", "no '/'"],
    ),
    (
        "name-dot-dot",
        lambda t, d: ["generate", CUSTOMERS, "-n", 10, "--dataset-name", "..", "--artifact-path", t],
        2,
        ["'..'", "not starting with '.'"],
    ),
    (
        "name-hidden",
        lambda t, d: ["generate", CUSTOMERS, "-n", 10, "--dataset-name", ".x", "--artifact-path", t],
        2,
        ["'.x'"],
    ),
    (
        "name-with-newline",
        lambda t, d: ["generate", CUSTOMERS, "-n", 10, "--dataset-name", "a\nb", "--artifact-path", t],
        2,
        ["'a\\nb'", "control characters"],
    ),
    (
        "name-empty",
        lambda t, d: ["generate", CUSTOMERS, "-n", 10, "--dataset-name", "", "--artifact-path", t],
        0,
        ["Generated"],
    ),
    (
        "name-markup-closing-tag",
        lambda t, d: ["generate", CUSTOMERS, "-n", 10, "--dataset-name", "[/x]", "--artifact-path", t],
        2,
        ["'[/x]'"],
    ),
    (
        "name-markup-style",
        lambda t, d: ["generate", CUSTOMERS, "-n", 10, "--dataset-name", "[bold red]x", "--artifact-path", t],
        0,
        ["[bold red]x", "Dataset: "],
    ),
    (
        "name-unicode",
        lambda t, d: ["generate", CUSTOMERS, "-n", 10, "--dataset-name", "données-✓", "--artifact-path", t],
        0,
        ["données-✓"],
    ),
    (
        "name-multibyte-too-long",
        lambda t, d: ["generate", CUSTOMERS, "-n", 10, "--dataset-name", "é" * 150, "--artifact-path", t],
        2,
        ["at most 200 bytes"],
    ),
    # artifact paths
    (
        "artifact-path-http",
        lambda t, d: ["generate", CUSTOMERS, "-n", 10, "--artifact-path", "http://example.com/data"],
        2,
        ["unsupported storage location", "s3://bucket/prefix"],
    ),
    (
        "artifact-path-s3-no-bucket",
        lambda t, d: ["generate", CUSTOMERS, "-n", 10, "--artifact-path", "s3://"],
        2,
        ["names no bucket"],
    ),
    (
        "artifact-path-is-a-file",
        lambda t, d: ["generate", CUSTOMERS, "-n", 10, "--artifact-path", d / "metadata.json"],
        2,
        ["is a file, not a folder"],
    ),
    (
        "artifact-path-under-a-file",
        lambda t, d: ["generate", CUSTOMERS, "-n", 10, "--artifact-path", d / "config.json" / "sub"],
        2,
        ["which is a file"],
    ),
    (
        "artifact-path-markup",
        lambda t, d: ["generate", CUSTOMERS, "-n", 10, "--artifact-path", t / "[bold red]out[/]"],
        0,
        ["[bold red]out[/]"],
    ),
    # status / resume on things that are not dataset folders
    ("status-on-a-file", lambda t, d: ["status", d / "metadata.json"], 2, ["is a file, not a dataset folder"]),
    ("status-missing", lambda t, d: ["status", t / "nowhere"], 2, ["does not exist"]),
    ("status-empty-folder", lambda t, d: ["status", t], 0, ["found: nothing"]),
    ("status-http", lambda t, d: ["status", "http://example.com/x"], 2, ["unsupported storage location"]),
    ("resume-on-a-file", lambda t, d: ["resume", d / "config.json"], 2, ["is a file, not a dataset folder"]),
    ("resume-missing", lambda t, d: ["resume", t / "nowhere"], 2, ["does not exist"]),
    ("resume-not-a-dataset", lambda t, d: ["resume", t], 2, ["is not a dd dataset folder", "no metadata.json"]),
    ("resume-parent-of-dataset", lambda t, d: ["resume", d.parent], 2, ["is not a dd dataset folder"]),
    ("resume-finished", lambda t, d: ["resume", d], 0, ["is already complete (600 records)"]),
    ("status-markup-path", lambda t, d: ["status", t / "[red]x[/red]"], 2, ["[red]x[/red] does not exist"]),
    # export outputs
    ("export-onto-metadata", lambda t, d: ["export", d, "-o", d / "metadata.json"], 2, ["inside the dataset folder"]),
    (
        "export-onto-a-row-group",
        lambda t, d: ["export", d, "--format", "parquet", "-o", d / "parquet-files" / "batch_00000.parquet"],
        2,
        ["inside the dataset folder"],
    ),
    ("export-into-the-folder", lambda t, d: ["export", d, "-o", d / "export.jsonl"], 2, ["inside the dataset folder"]),
    (
        "export-via-dotdot",
        lambda t, d: ["export", d, "-o", d / "parquet-files" / ".." / "config.json"],
        2,
        ["inside the dataset folder"],
    ),
    (
        "export-via-symlinked-folder",
        lambda t, d: [_link(t / "alias", d), "export", d, "-o", t / "alias" / "out.csv"][1:],
        2,
        ["inside the dataset folder"],
    ),
    (
        "export-via-symlinked-file",
        lambda t, d: [_link(t / "out.jsonl", d / "metadata.json"), "export", d, "-o", t / "out.jsonl"][1:],
        2,
        ["inside the dataset folder"],
    ),
    ("export-to-a-directory", lambda t, d: ["export", d, "-o", t], 2, ["is a directory"]),
    (
        "export-missing-parent",
        lambda t, d: ["export", d, "-o", t / "no" / "such" / "x.csv"],
        2,
        ["does not exist; create it first"],
    ),
    (
        "export-unknown-format",
        lambda t, d: ["export", d, "--format", "xlsx", "-o", t / "x.xlsx"],
        2,
        ["--format", "xlsx"],
    ),
    ("export-not-a-dataset", lambda t, d: ["export", t, "-o", t / "x.csv"], 2, ["is not a dd dataset folder"]),
    (
        "export-markup-output",
        lambda t, d: ["export", d, "-o", t / "[bold]x[red].jsonl"],
        0,
        ["Wrote 600 records to", "[bold]x[red].jsonl"],
    ),
    # push: refused before any request to the Hub
    ("push-not-a-dataset", lambda t, d: ["push", t, "--repo", "org/name"], 2, ["is not a dd dataset folder"]),
    ("push-bad-repo-id", lambda t, d: ["push", d, "--repo", "not a repo"], 2, ["is not a Hub repo id: use org/name"]),
    ("push-repo-id-path", lambda t, d: ["push", d, "--repo", "../../etc/x"], 2, ["is not a Hub repo id"]),
    ("push-without-repo", lambda t, d: ["push", d], 2, ["--repo"]),
    # the app itself
    ("unknown-command", lambda t, d: ["explode"], 2, ["No such command 'explode'"]),
    ("unknown-option", lambda t, d: ["validate", CUSTOMERS, "--frobnicate"], 2, ["--frobnicate"]),
    ("missing-argument", lambda t, d: ["export"], 2, ["Missing argument"]),
]


def _link(path, target):
    os.symlink(target, path)
    return path


@pytest.mark.parametrize(("make", "code", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_command_line(tmp_path, done, make, code, words):
    before = snapshot(done)
    outcome = invoke(*make(tmp_path, done))
    if code == 2 and "Usage:" in outcome.stderr:  # typer's own usage errors: one message, its own frame
        assert outcome.code == 2 and "Traceback" not in outcome.output and all(w in outcome.output for w in words), (
            outcome.output
        )
    else:
        check(outcome, code, *words)
    assert snapshot(done) == before
