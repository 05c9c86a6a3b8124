"""Pipelined row groups and worker processes change when cells are sent, never the data.

Each row's prompt names its row group (an ordered seed file gives rows 0-49 "part p0", 50-99
"part p1", ...), so the server's request log says which row group every request served.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from dd_core import GenerationError, generate, load_config
from dd_core.engine.in_process import run_row_group
from dd_core.fingerprinting import fingerprint
from dd_core.orchestration import RowGroupJob, produce_row_groups, storage_path
from dd_core.storage.claims import RowGroupClaim
from dd_core.storage.row_group_files import RowGroupInfo, write_row_group_file
from dd_core.testing.llm_server import OpenAIServer
from tests.support import ROOT, answers_stopped, released_when, wait_for

BUFFER, RECORDS = 50, 290  # 6 row groups, the last one partial
PROFILE = {
    "type": "object",
    "properties": {"mood": {"enum": ["calm", "bold"]}},
    "required": ["mood"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def parts_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("seed") / "parts.csv"
    path.write_text("part\n" + "".join(f"p{row // BUFFER}\n" for row in range(RECORDS)))
    return path


@pytest.fixture(scope="module")
def server():
    # Lognormal latency: rows finish out of order, and row groups overtake each other.
    with OpenAIServer(latency_ms=4, latency_sigma=1.0) as srv:
        yield srv


def config(url: str, parts_csv, parallel: int = 8) -> dict:
    return {
        "name": "parts",
        "max_failed_row_share": 0.5,
        "models": [
            {
                "alias": "writer",
                "model": "test-model",
                "base_url": url,
                "max_parallel_requests": parallel,
                "max_retries": 0,
            }
        ],
        "columns": [
            {"name": "parts", "type": "seed_dataset", "path": str(parts_csv)},
            {"name": "topic", "type": "category", "values": ["cats", "ships", "tea"], "weights": [0.45, 0.1, 0.45]},
            {
                "name": "question",
                "type": "llm_text",
                "model": "writer",
                "prompt": "Ask about {{ topic }} (part {{ part }}).",
            },
            {
                "name": "profile",
                "type": "llm_structured",
                "model": "writer",
                "prompt": "Mood for {{ topic }}: {{ question }}",
                "output_schema": PROFILE,
                "max_invalid_retries": 0,
            },
            {
                "name": "answer",
                "type": "llm_text",
                "model": "writer",
                "prompt": "Answer {{ question }} in a {{ profile.mood }} way.",
            },
            {"name": "length", "type": "expression", "expr": "{{ answer | length }}", "dtype": "int"},
        ],
    }


def part_of(entry: dict) -> int:
    """The row group a request was for (-1: the structured-output check before row group 0)."""
    if "part p" not in entry["prompt"]:
        return -1
    return int(entry["prompt"].split("part p", 1)[1].split(")", 1)[0])


def one_at_a_time(cfg: dict, out) -> list[bytes]:
    """The reference: each row group alone (``run_row_group``), written as dd writes it."""
    loaded = load_config(cfg)
    fp = fingerprint(loaded)
    files = []
    for index in range(-(-RECORDS // BUFFER)):
        rows = min(BUFFER, RECORDS - index * BUFFER)
        result = run_row_group(loaded, index, rows, buffer_size=BUFFER)
        table = result.table
        path = out / f"{index}.parquet"
        info = RowGroupInfo(
            index,
            rows,
            table.num_rows,
            fp["config_hash"],
            fp["config_hash_version"],
            BUFFER,
            loaded.seed,
            result.llm_spend,
        )
        write_row_group_file(path, table, info)
        files.append(path.read_bytes())
    return files


def batch_bytes(result) -> list[bytes]:
    return [p.read_bytes() for p in sorted((result.path / "parquet-files").glob("batch_*.parquet"))]


def counts(usage: dict) -> dict:
    """Usage without its timings (request_seconds differs from run to run)."""
    return {alias: {k: v for k, v in u.items() if k != "request_seconds"} for alias, u in usage.items()}


def answered_parts(stats: dict) -> set[int]:
    return {part_of(entry) for entry in stats["request_log"]} - {-1}


def test_pipelined_and_multi_worker_datasets_are_byte_identical_to_one_row_group_at_a_time(tmp_path, server, parts_csv):
    cfg = config(server.base_url, parts_csv)
    # Invalid structured replies for 'ships' rows: dropped rows, the same ones every time.
    invalid = {"kind": "invalid_structured", "match": "Mood for ships"}
    server.set_faults([invalid])
    try:
        reference = one_at_a_time(cfg, tmp_path)
        server.reset_stats()
        # Row group 0's first request is held until a request of row group 1 has been answered.
        server.set_faults([{"kind": "hold", "name": "p0", "match": "(part p0)", "times": 1}, invalid])
        with released_when(server, "p0", lambda stats: 1 in answered_parts(stats), "an answer to row group 1"):
            pipelined = generate(cfg, RECORDS, buffer_size=BUFFER, artifact_path=tmp_path, dataset_name="pipelined")
        log = server.stats()["request_log"]
        workers = generate(cfg, RECORDS, buffer_size=BUFFER, artifact_path=tmp_path, dataset_name="workers", workers=2)
    finally:
        server.clear_faults()
    assert pipelined.metadata["dropped_rows"] > 0
    assert batch_bytes(pipelined) == reference
    assert batch_bytes(workers) == reference
    assert counts(workers.llm_usage) == counts(pipelined.llm_usage)
    # Pipelined for real: row groups overlapped at the server.
    ends = {}
    for entry in log:
        ends[part_of(entry)] = max(ends.get(part_of(entry), 0), entry["t_end"])
    assert any(part_of(e) > 0 and e["t_start"] < ends[part_of(e) - 1] for e in log)


def test_the_oldest_row_group_goes_first_and_ordered_delivery_waits_for_it(server, parts_csv):
    """A straggler in row group 0 (a request held until the test releases it) lets later row
    groups finish first; they are handed back as they finish, or in order with ordered=True."""
    cfg = config(server.base_url, parts_csv)
    jobs = [RowGroupJob(i, BUFFER) for i in range(4)]
    straggler = {"kind": "hold", "name": "p0", "match": "(part p0)", "times": 1}
    as_completed: list[int] = []
    server.set_faults([straggler])
    try:
        # Released once row groups 1-3 have been handed back.
        with released_when(server, "p0", lambda _: len(as_completed) == 3, "three row groups handed back"):
            with produce_row_groups(cfg, jobs, buffer_size=BUFFER) as produced:
                for part in produced:
                    as_completed.append(part.index)
        server.set_faults([straggler])
        server.reset_stats()
        # Released once every request of row groups 1-3 has been answered (3 per row).
        finished_later_ones = lambda stats: sum(part_of(e) > 0 for e in stats["request_log"]) == 3 * 3 * BUFFER  # noqa: E731
        with released_when(server, "p0", finished_later_ones, "row groups 1-3 answered"):
            with produce_row_groups(cfg, jobs, buffer_size=BUFFER, ordered=True) as produced:
                in_order = [(part.index, part.table.num_rows) for part in produced]
    finally:
        server.clear_faults()
    assert as_completed[-1] == 0 and sorted(as_completed) == [0, 1, 2, 3]
    assert [i for i, _ in in_order] == [0, 1, 2, 3] and all(rows > 0 for _, rows in in_order)


def test_a_failed_row_group_stops_the_run_after_the_earlier_ones_and_resumes_to_the_same_data(
    tmp_path, server, parts_csv
):
    cfg = config(server.base_url, parts_csv)
    server.set_faults([{"kind": "status", "status": 500, "match": "(part p2)"}])
    try:
        with pytest.raises(GenerationError, match="row group 2 failed"):
            generate(cfg, RECORDS, buffer_size=BUFFER, artifact_path=tmp_path, dataset_name="failing")
    finally:
        server.clear_faults()
    meta = json.loads((tmp_path / "failing" / "metadata.json").read_text())
    done = {i for start, end in meta["completed_row_groups"] for i in range(start, end + 1)}
    assert {0, 1} <= done and 2 not in done
    resumed = generate(
        cfg, RECORDS, buffer_size=BUFFER, artifact_path=tmp_path, dataset_name="failing", resume="always"
    )
    clean = generate(cfg, RECORDS, buffer_size=BUFFER, artifact_path=tmp_path, dataset_name="clean")
    assert batch_bytes(resumed) == batch_bytes(clean)


def all_held(count: int):
    return lambda stats: stats["held"].get("fill") == count


def test_requests_in_flight_stay_within_the_limit_across_workers(tmp_path, parts_csv):
    # Requests are held until the limit is in flight at once (it is reached), then all go on.
    with OpenAIServer(latency_ms=30) as srv:
        srv.set_faults([{"kind": "hold", "name": "fill"}])
        with released_when(srv, "fill", all_held(5), "5 requests in flight"):
            generate(
                config(srv.base_url, parts_csv, parallel=5),
                RECORDS,
                buffer_size=BUFFER,
                artifact_path=tmp_path,
                dataset_name="w2",
                workers=2,
            )
        assert srv.stats()["max_in_flight"] == 5  # 3 + 2, reached and never passed
        srv.reset_stats()
        # A limit below the number of workers limits the workers.
        srv.set_faults([{"kind": "hold", "name": "fill"}])
        with released_when(srv, "fill", all_held(2), "2 requests in flight"):
            generate(
                config(srv.base_url, parts_csv, parallel=2),
                RECORDS,
                buffer_size=BUFFER,
                artifact_path=tmp_path,
                dataset_name="w3",
                workers=3,
            )
        assert srv.stats()["max_in_flight"] == 2


@pytest.mark.parametrize("workers", [1, 2], ids=["pipelined", "two-workers"])
def test_sigkill_during_pipelined_generation_then_resume_resends_no_answered_request(tmp_path, parts_csv, workers):
    with OpenAIServer(latency_ms=10, latency_sigma=1.0) as srv:
        cfg = config(srv.base_url, parts_csv)
        path = tmp_path / "parts.json"
        path.write_text(json.dumps(cfg))
        command = [
            sys.executable,
            "-m",
            "dd_core",
            "generate",
            str(path),
            "-n",
            str(RECORDS),
            "--buffer-size",
            str(BUFFER),
            "--artifact-path",
            str(tmp_path),
            "--workers",
            str(workers),
        ]
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: srv.stats()["succeeded"] >= 400, 120, "400 answered calls")
            children = psutil.Process(proc.pid).children(recursive=True)
            # Nothing new is answered; every answer is on disk but the structured-output check's.
            with answers_stopped(srv, tmp_path / "parts", checks=1):
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
        finally:
            proc.kill()
        assert proc.returncode == -signal.SIGKILL
        assert len(children) == (workers if workers > 1 else 0)
        psutil.wait_procs(children, timeout=30)
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE], (
            "a worker outlived the parent"
        )
        before = srv.stats()["succeeded"]
        cells = 3 * RECORDS
        assert 400 <= before < cells
        caches = list((tmp_path / "parts" / "llm-cache").glob("rg_*.jsonl"))
        assert len(caches) >= 2, "several row groups were in progress"

        result = generate(path, RECORDS, buffer_size=BUFFER, artifact_path=tmp_path, resume="always")
        after = srv.stats()
        assert after["succeeded"] == cells + 1, "every cell is paid for exactly once (and the check, by the first run)"
        assert max(after["success_keys"].values()) == 1, "a request that had been answered was sent again"
        clean = generate(cfg, RECORDS, buffer_size=BUFFER, artifact_path=tmp_path, dataset_name="clean")
    assert batch_bytes(result) == batch_bytes(clean)


# --------------------------------------------------------------------------- claims (parallel producers)

SAMPLERS_ONLY = {
    "name": "plain",
    "columns": [{"name": "n", "type": "uniform", "low": 0, "high": 9, "dtype": "int"}, {"name": "uid", "type": "uuid"}],
}


def claimed_jobs(folder, count: int = 6, reuse: bool = True) -> list[RowGroupJob]:
    """Jobs as parallel Dagster runs make them: a file and a claim per row group."""
    rows = [min(BUFFER, RECORDS - i * BUFFER) for i in range(count)]
    return [
        RowGroupJob(
            i,
            rows[i],
            storage_path(folder / f"batch_{i:05d}.parquet"),
            claim=storage_path(folder / "claims" / f"{i}.lock"),
            reuse_finished=reuse,
        )
        for i in range(count)
    ]


@pytest.mark.parametrize("llm", [True, False], ids=["llm", "samplers"])
def test_two_producers_at_once_make_each_row_group_once_and_the_other_reuses_it(tmp_path, server, parts_csv, llm):
    """Two runs over the same row groups at once (one in two worker processes, one in this
    process): each row group is made by one of them; the other waits for its claim, then
    hands back the very file it finds, marked reused."""
    cfg = config(server.base_url, parts_csv) if llm else SAMPLERS_ONLY
    server.reset_stats()
    handed_back: dict[str, dict[int, tuple[bool, str]]] = {}

    def run(name: str, workers: int) -> None:
        with produce_row_groups(cfg, claimed_jobs(tmp_path), buffer_size=BUFFER, workers=workers) as produced:
            handed_back[name] = {part.index: (part.reused, part.sha256) for part in produced}

    runs = [threading.Thread(target=run, args=("workers", 2)), threading.Thread(target=run, args=("inline", 1))]
    for thread in runs:
        thread.start()
    for thread in runs:
        thread.join(timeout=120)
    assert sorted(handed_back) == ["inline", "workers"]
    for index in range(6):
        (reused_a, digest_a), (reused_b, digest_b) = handed_back["workers"][index], handed_back["inline"][index]
        assert {reused_a, reused_b} == {True, False}, f"row group {index}: reused flags {reused_a}, {reused_b}"
        assert digest_a == digest_b
    if llm:
        stats = server.stats()
        assert len(stats["success_keys"]) == 3 * RECORDS and max(stats["success_keys"].values()) == 1, (
            "a row group was made twice"
        )
        assert [p.read_bytes() for p in sorted(tmp_path.glob("batch_*.parquet"))] == one_at_a_time(
            cfg, tmp_path / "reference"
        )


def test_a_finished_file_is_reused_and_a_damaged_or_foreign_one_is_made_again(tmp_path, server, parts_csv):
    cfg = config(server.base_url, parts_csv)
    reference = one_at_a_time(cfg, tmp_path / "reference")[:3]
    with produce_row_groups(cfg, claimed_jobs(tmp_path, 3), buffer_size=BUFFER) as produced:
        assert not any(part.reused for part in produced)
    files = sorted(tmp_path.glob("batch_*.parquet"))
    with open(files[1], "r+b") as fh:  # truncated: damaged
        fh.truncate(200)
    files[2].write_bytes(files[0].read_bytes())  # another row group's file
    server.reset_stats()
    with produce_row_groups(cfg, claimed_jobs(tmp_path, 3), buffer_size=BUFFER) as produced:
        reused = {part.index: part.reused for part in produced}
    assert reused == {0: True, 1: False, 2: False}
    assert {part_of(e) for e in server.stats()["request_log"]} == {1, 2}, "row group 0 was made again"
    assert [p.read_bytes() for p in files] == reference
    # Without reuse_finished, a finished file is made again.
    with produce_row_groups(cfg, claimed_jobs(tmp_path, 1, reuse=False), buffer_size=BUFFER) as produced:
        assert [part.reused for part in produced] == [False]


def test_a_row_group_waits_while_another_holds_its_claim(tmp_path, server, parts_csv):
    cfg = config(server.base_url, parts_csv)
    (job,) = claimed_jobs(tmp_path, 1)
    held = RowGroupClaim(job.claim)
    assert held.take()
    server.reset_stats()
    parts = []

    def run() -> None:
        with produce_row_groups(cfg, [job], buffer_size=BUFFER) as produced:
            parts.extend(produced)

    producer = threading.Thread(target=run)
    producer.start()
    time.sleep(0.6)
    assert server.stats()["request_log"] == [] and not job.path.exists(), (
        "the row group started while its claim was held elsewhere"
    )
    held.release()
    producer.join(timeout=60)
    assert [(p.index, p.reused) for p in parts] == [(0, False)] and job.path.exists()
