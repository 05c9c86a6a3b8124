"""Damaged, edited and booby-trapped dataset folders.

Each case damages a copy of a real dataset, then runs what a user would (status, export,
resume, generate): the answer is the documented exit code with one message naming the file,
and the folder is byte-identical afterwards (nothing repaired over, nothing written through a
planted link). Metadata that claims absurd ranges is refused before anything is expanded.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dd_core import generate, load_config
from dd_core.storage.row_group_files import RowGroupInfo, read_info, write_row_group_file
from tests.hostile.conftest import CUSTOMERS
from tests.hostile.harness import check, invoke, snapshot


def edit_meta(**changes) -> Callable[[Path], None]:
    def mutate(ds: Path) -> None:
        path = ds / "metadata.json"
        meta = json.loads(path.read_text())
        meta.update(changes)
        path.write_text(json.dumps(meta))

    return mutate


def raw_meta(text: str | bytes) -> Callable[[Path], None]:
    def mutate(ds: Path) -> None:
        data = text.encode() if isinstance(text, str) else text
        (ds / "metadata.json").write_bytes(data)

    return mutate


def meta_field_raw(key: str, raw: str) -> Callable[[Path], None]:
    """Set one field to a JSON literal Python's json would not write (1e400)."""

    def mutate(ds: Path) -> None:
        meta = json.loads((ds / "metadata.json").read_text())
        meta[key] = "@@"
        (ds / "metadata.json").write_text(json.dumps(meta).replace('"@@"', raw))

    return mutate


def replace_path(rel: str, make: Callable[[Path], None]) -> Callable[[Path], None]:
    def mutate(ds: Path) -> None:
        path = ds / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        make(path)

    return mutate


def truncate(rel: str, keep: int) -> Callable[[Path], None]:
    def mutate(ds: Path) -> None:
        data = (ds / rel).read_bytes()
        (ds / rel).write_bytes(data[:keep])

    return mutate


def foreign_parquet(ds: Path) -> None:
    pq.write_table(pa.table({"x": list(range(200))}), ds / "parquet-files" / "batch_00001.parquet")


def other_config_row_group(ds: Path) -> None:
    other = load_config(CUSTOMERS).model_copy(update={"seed": 9})
    made = generate(other, 400, buffer_size=200, artifact_path=ds.parent / "other", dataset_name="o").path
    shutil.copy(made / "parquet-files" / "batch_00001.parquet", ds / "parquet-files" / "batch_00001.parquet")


def swap_row_groups(ds: Path) -> None:
    a, b = ds / "parquet-files" / "batch_00000.parquet", ds / "parquet-files" / "batch_00001.parquet"
    tmp = a.with_name("swap")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)


def fewer_rows_than_recorded(ds: Path) -> None:
    path = ds / "parquet-files" / "batch_00000.parquet"
    info = read_info(path)
    table = pq.read_table(path).slice(0, 150)
    write_row_group_file(
        path, table, RowGroupInfo(0, 200, 150, info.config_hash, info.config_hash_version, 200, info.seed)
    )


def wrap_config_json(ds: Path) -> None:
    """The older config.json form {"fingerprint": ..., "config": ...}: still accepted."""
    config = json.loads((ds / "config.json").read_text())
    (ds / "config.json").write_text(json.dumps({"fingerprint": {"config_hash": "sha256:..."}, "config": config}))


def edit_config_seed(ds: Path) -> None:
    config = json.loads((ds / "config.json").read_text())
    config["seed"] = 7
    (ds / "config.json").write_text(json.dumps(config))


def drop_metadata(ds: Path) -> None:
    (ds / "metadata.json").unlink()


ANY = ("status", "export", "resume")
DAMAGED_META = "is not valid dd metadata"

# (id, base dataset, mutation, commands, exit code, words); every command must leave the folder as it was
CASES = [
    # metadata.json claims
    (
        "range-far-beyond-target",
        "done",
        edit_meta(completed_row_groups=[[0, 100_000_000_000]]),
        ANY,
        4,
        [DAMAGED_META, "outside the dataset's 3 row groups"],
    ),
    ("range-beyond-target-by-one", "done", edit_meta(completed_row_groups=[[0, 3]]), ANY, 4, [DAMAGED_META, "[0, 3]"]),
    (
        "huge-target-and-range",
        "done",
        edit_meta(num_records=10**14, completed_row_groups=[[0, 10**11]]),
        ANY,
        4,
        [DAMAGED_META, "num_records"],
    ),
    ("buffer-size-zero", "done", edit_meta(buffer_size=0), ANY, 4, [DAMAGED_META, "buffer_size 0"]),
    ("buffer-size-negative", "done", edit_meta(buffer_size=-200), ANY, 4, [DAMAGED_META, "buffer_size -200"]),
    ("buffer-size-float", "done", edit_meta(buffer_size=200.5), ANY, 4, [DAMAGED_META, "not a whole number"]),
    ("buffer-size-text", "done", edit_meta(buffer_size="200"), ANY, 4, [DAMAGED_META, "not a whole number"]),
    ("buffer-size-bool", "done", edit_meta(buffer_size=True), ANY, 4, [DAMAGED_META, "not a whole number"]),
    ("num-records-1e400", "done", meta_field_raw("num_records", "1e400"), ANY, 4, [DAMAGED_META, "num_records"]),
    ("num-records-nan", "done", meta_field_raw("num_records", "NaN"), ANY, 4, [DAMAGED_META, "num_records"]),
    ("num-records-null", "done", edit_meta(num_records=None), ANY, 4, [DAMAGED_META, "num_records"]),
    ("num-records-missing", "done", lambda ds: _drop_key(ds, "num_records"), ANY, 4, [DAMAGED_META, "num_records"]),
    ("format-version-99", "done", edit_meta(format_version=99), ANY, 4, [DAMAGED_META, "format_version 99"]),
    ("status-unknown", "done", edit_meta(status="glorious"), ANY, 4, [DAMAGED_META, "'glorious'"]),
    (
        "dataset-path-escapes",
        "done",
        edit_meta(dataset_path="../../etc/passwd"),
        ANY,
        4,
        [DAMAGED_META, "dataset_path"],
    ),
    (
        "row-group-rows-not-completed",
        "done",
        edit_meta(row_group_rows={"7": {"requested": 200, "rows": 200}}),
        ANY,
        4,
        [DAMAGED_META, "'7'"],
    ),
    (
        "row-group-rows-more-than-asked",
        "done",
        edit_meta(row_group_rows={"0": {"requested": 100, "rows": 150}}),
        ANY,
        4,
        [DAMAGED_META, "more rows"],
    ),
    ("row-group-rows-not-object", "done", edit_meta(row_group_rows=[1, 2]), ANY, 4, [DAMAGED_META, "row_group_rows"]),
    (
        "row-group-rows-bad-key",
        "done",
        edit_meta(row_group_rows={"-1": {"requested": 1, "rows": 1}}),
        ANY,
        4,
        [DAMAGED_META, "'-1'"],
    ),
    (
        "ranges-not-a-list",
        "done",
        edit_meta(completed_row_groups="all"),
        ANY,
        4,
        [DAMAGED_META, "completed_row_groups"],
    ),
    ("range-backwards", "done", edit_meta(completed_row_groups=[[2, 1]]), ANY, 4, [DAMAGED_META, "[2, 1]"]),
    ("range-one-number", "done", edit_meta(completed_row_groups=[[0]]), ANY, 4, [DAMAGED_META, "[start, end] pair"]),
    ("range-negative", "done", edit_meta(completed_row_groups=[[-5, 2]]), ANY, 4, [DAMAGED_META, "[-5, 2]"]),
    (
        "range-of-floats",
        "done",
        edit_meta(completed_row_groups=[[0.0, 2.0]]),
        ANY,
        4,
        [DAMAGED_META, "pair of whole numbers"],
    ),
    ("seed-text", "done", edit_meta(seed="forty-two"), ANY, 4, [DAMAGED_META, "seed"]),
    ("hash-number", "done", edit_meta(config_hash=12), ANY, 4, [DAMAGED_META, "config_hash"]),
    ("metadata-array", "done", raw_meta("[1, 2, 3]"), ANY, 4, ["does not hold a JSON object"]),
    ("metadata-truncated", "done", truncate("metadata.json", 40), ANY, 4, ["unreadable or not JSON"]),
    ("metadata-empty", "done", raw_meta(""), ANY, 4, ["unreadable or not JSON"]),
    ("metadata-binary", "done", raw_meta(bytes(range(256))), ANY, 4, ["unreadable or not JSON"]),
    ("metadata-deeply-nested", "done", raw_meta("[" * 100_000 + "]" * 100_000), ANY, 4, ["unreadable or not JSON"]),
    ("metadata-is-a-directory", "done", replace_path("metadata.json", lambda p: p.mkdir()), ANY, 4, ["is a directory"]),
    (
        "metadata-is-a-fifo",
        "done",
        replace_path("metadata.json", lambda p: os.mkfifo(p)),
        ANY,
        4,
        ["not a regular file"],
    ),
    (
        "metadata-lists-a-missing-file",
        "done",
        lambda ds: (ds / "parquet-files" / "batch_00001.parquet").unlink(),
        ANY,
        4,
        ["1", "as finished", "missing"],
    ),
    # row-group files
    (
        "parquet-files-is-a-file",
        "done",
        replace_path("parquet-files", lambda p: p.write_text("not a folder")),
        ANY,
        4,
        ["is a file, not the folder of row-group files"],
    ),
    (
        "row-group-truncated",
        "done",
        truncate("parquet-files/batch_00001.parquet", 300),
        ("export", "resume"),
        4,
        ["batch_00001.parquet", "unreadable"],
    ),
    (
        "row-group-empty",
        "done",
        truncate("parquet-files/batch_00002.parquet", 0),
        ("export", "resume"),
        4,
        ["batch_00002.parquet", "unreadable"],
    ),
    (
        "row-group-foreign-parquet",
        "done",
        foreign_parquet,
        ("export", "resume"),
        4,
        ["batch_00001.parquet is not a dd row-group file"],
    ),
    (
        "row-group-of-another-config",
        "done",
        other_config_row_group,
        ("export", "resume"),
        4,
        ["batch_00001.parquet says it is row group 1 (", "expects row group 1 of config"],
    ),
    (
        "row-groups-swapped",
        "done",
        swap_row_groups,
        ("export", "resume"),
        4,
        ["says it is row group 1", "expects row group 0"],
    ),
    (
        "row-group-fewer-rows",
        "done",
        fewer_rows_than_recorded,
        ("export", "resume"),
        4,
        ["holds 150 of 200 requested rows", "records 200 of 200"],
    ),
    (
        "row-group-is-a-directory",
        "done",
        replace_path("parquet-files/batch_00000.parquet", lambda p: p.mkdir()),
        ("export", "resume"),
        4,
        ["batch_00000.parquet", "unreadable"],
    ),
    (
        "row-group-is-a-fifo",
        "done",
        replace_path("parquet-files/batch_00000.parquet", lambda p: os.mkfifo(p)),
        ("export", "resume"),
        4,
        ["batch_00000.parquet", "unreadable"],
    ),
    (
        "unrecorded-foreign-file",
        "partial",
        lambda ds: pq.write_table(pa.table({"x": [1]}), ds / "parquet-files" / "batch_00003.parquet"),
        ("resume", "status"),
        4,
        ["batch_00003.parquet is not a dd row-group file"],
    ),
    # planted links and odd files where dd writes
    (
        "lock-holder-links-to-a-row-group",
        "partial",
        lambda ds: os.symlink(ds / "parquet-files" / "batch_00000.parquet", ds / ".dd.lock.json"),
        ("resume", "generate"),
        4,
        [".dd.lock.json is a symbolic link", "never writes through a link"],
    ),
    (
        "lock-links-to-a-row-group",
        "partial",
        lambda ds: _replace_with_link(ds / ".dd.lock", ds / "parquet-files" / "batch_00000.parquet"),
        ("resume", "generate"),
        4,
        [".dd.lock is a symbolic link"],
    ),
    (
        "lock-is-a-directory",
        "partial",
        replace_path(".dd.lock", lambda p: p.mkdir()),
        ("resume", "generate"),
        4,
        [".dd.lock is a directory"],
    ),
    (
        "lock-holder-is-a-directory",
        "partial",
        lambda ds: (ds / ".dd.lock.json").mkdir(),
        ("resume", "generate"),
        4,
        [".dd.lock.json is a directory"],
    ),
    (
        "lock-is-a-fifo",
        "partial",
        replace_path(".dd.lock", lambda p: os.mkfifo(p)),
        ("resume", "generate"),
        4,
        [".dd.lock is not a regular file"],
    ),
    # config.json
    (
        "config-json-missing",
        "partial",
        lambda ds: (ds / "config.json").unlink(),
        ("resume",),
        4,
        ["has a metadata.json but no config.json"],
    ),
    (
        "config-json-edited",
        "partial",
        edit_config_seed,
        ("resume",),
        4,
        ["config.json gives config sha256:", "was edited"],
    ),
    (
        "config-json-garbage",
        "partial",
        lambda ds: (ds / "config.json").write_text("{columns: [oops"),
        ("resume",),
        4,
        ["config.json is not a config dd accepts"],
    ),
    (
        "config-json-binary",
        "partial",
        lambda ds: (ds / "config.json").write_bytes(b"\xff\xfe\x00"),
        ("resume",),
        4,
        ["config.json is unreadable"],
    ),
    (
        "config-json-is-a-fifo",
        "partial",
        replace_path("config.json", lambda p: os.mkfifo(p)),
        ("resume",),
        4,
        ["config.json is unreadable"],
    ),
    ("no-metadata-only-files", "partial", drop_metadata, ("resume",), 2, ["has row-group files but no metadata.json"]),
    (
        "no-metadata-generate",
        "partial",
        drop_metadata,
        ("generate",),
        3,
        ["found row-group files but no metadata.json"],
    ),
    (
        "unfinished-export",
        "partial",
        lambda ds: None,
        ("export",),
        2,
        ["is not finished yet (2 of 4 row groups)", "ddsynth resume"],
    ),
]


def _drop_key(ds: Path, key: str) -> None:
    path = ds / "metadata.json"
    meta = json.loads(path.read_text())
    meta.pop(key)
    path.write_text(json.dumps(meta))


def _replace_with_link(path: Path, target: Path) -> None:
    path.unlink(missing_ok=True)
    os.symlink(target, path)


def _command(name: str, ds: Path, tmp: Path) -> list:
    return {
        "status": ["status", ds],
        "export": ["export", ds, "-o", tmp / "out.jsonl"],
        "resume": ["resume", ds],
        "generate": [
            "generate",
            CUSTOMERS,
            "-n",
            800,
            "--buffer-size",
            200,
            "--artifact-path",
            ds.parent,
            "--dataset-name",
            ds.name,
        ],
    }[name]


PARAMS = [(c[0], c[1], c[2], command, c[4], c[5]) for c in CASES for command in c[3]]


@pytest.mark.parametrize(
    ("base", "mutate", "command", "code", "words"), [p[1:] for p in PARAMS], ids=[f"{p[0]}-{p[3]}" for p in PARAMS]
)
def test_damaged_folder(request, tmp_path, base, mutate, command, code, words):
    ds = request.getfixturevalue(base)
    mutate(ds)
    before = snapshot(ds)
    check(invoke(*_command(command, ds, tmp_path)), code, *words)
    assert snapshot(ds) == before, "the folder changed"
    assert not (tmp_path / "out.jsonl").exists()


def test_a_planted_temp_link_is_removed_not_followed(partial):
    """A leftover temp name that is a link to a finished file: the link goes, the file stays."""
    finished = partial / "parquet-files" / "batch_00000.parquet"
    data = finished.read_bytes()
    os.symlink(finished, partial / "parquet-files" / ".batch_00002.parquet.tmp-1")
    os.symlink(finished, partial / f".metadata.json.tmp-{os.getpid()}")
    check(invoke("resume", partial), 0, "Generated 2 row group(s)")
    assert finished.read_bytes() == data
    assert not any(p.is_symlink() for p in partial.rglob("*"))


def test_the_older_wrapped_config_json_still_resumes(partial):
    wrap_config_json(partial)
    check(invoke("resume", partial), 0, "Generated 2 row group(s)", "800 records")


def test_status_of_a_partial_dataset_says_how_to_continue(partial):
    check(invoke("status", partial), 0, "2 of 4 finished", f"ddsynth resume {partial}")
