"""A dataset folder is self-sufficient: its config.json is a config dd accepts, and
``ddsynth resume DIR`` / ``dd_core.resume_dataset(path)`` continue it when the original YAML is gone."""

from __future__ import annotations

import contextlib
import json
import shutil

import pytest

from dd_core import fingerprint, generate, load_config, load_dataset, resume_dataset
from tests.hostile.harness import check, invoke
from tests.support import EXAMPLES


class _Stop(Exception):
    pass


def _stop_after(n: int):
    def progress(done: int, total: int) -> None:
        if done == n:
            raise _Stop

    return progress


def _partial(config, tmp_path, records=2000, buffer=500, name="ds"):
    with contextlib.suppress(_Stop):
        generate(
            config,
            records,
            buffer_size=buffer,
            artifact_path=tmp_path / "a",
            dataset_name=name,
            progress=_stop_after(2),
        )
    return tmp_path / "a" / name


def test_dd_generate_accepts_the_folders_config_json(tmp_path):
    folder = _partial(EXAMPLES / "customers.yaml", tmp_path)
    check(
        invoke(
            "generate",
            folder / "config.json",
            "-n",
            2000,
            "--buffer-size",
            500,
            "--artifact-path",
            tmp_path / "a",
            "--dataset-name",
            "ds",
        ),
        0,
        "Generated 2 row group(s)",
    )
    assert load_dataset(folder).equals(
        generate(EXAMPLES / "customers.yaml", 2000, buffer_size=500, artifact_path=tmp_path / "b").load()
    )


def test_dd_resume_when_the_original_config_is_gone(tmp_path):
    original = tmp_path / "mine.yaml"
    shutil.copy(EXAMPLES / "customers.yaml", original)
    folder = _partial(original, tmp_path)
    original.unlink()
    check(invoke("resume", folder), 0, "Generated 2 row group(s)", "2000 records", f"Dataset: {folder}")
    check(invoke("resume", folder), 0, "is already complete (2000 records)")
    assert load_dataset(folder).equals(
        generate(EXAMPLES / "customers.yaml", 2000, buffer_size=500, artifact_path=tmp_path / "b").load()
    )


def test_resume_dataset_in_python(tmp_path):
    folder = _partial(EXAMPLES / "customers.yaml", tmp_path, records=1800, buffer=400)
    result = resume_dataset(folder)
    assert (result.generated_row_groups, result.num_records, result.path) == (3, 1800, folder)


def test_relative_seed_paths_work_from_the_folder(tmp_path, monkeypatch):
    """config.json records the seed file's absolute path, so the folder resumes from anywhere."""
    project = tmp_path / "project"
    shutil.copytree(EXAMPLES, project)
    folder = _partial(project / "orders_from_seed.yaml", tmp_path, records=1200, buffer=300)
    (project / "orders_from_seed.yaml").unlink()
    monkeypatch.chdir(tmp_path)
    saved = json.loads((folder / "config.json").read_text())
    seed_paths = [c["path"] for c in saved["columns"] if c["type"] == "seed_dataset"]
    assert seed_paths and all(p.startswith(str(project)) for p in seed_paths)
    check(invoke("resume", folder), 0, "Generated 2 row group(s)")


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_example_round_trips_through_config_json(example, monkeypatch):
    monkeypatch.setenv("DD_LLM_API_KEY", "unused")
    config = load_config(EXAMPLES / example)
    again = load_config(json.loads(json.dumps(config.resolved_dump())))
    assert fingerprint(again) == fingerprint(config)
    assert again.resolved_dump() == config.resolved_dump()  # loads back to the same config (seed paths absolute)


def test_judge_scores_keep_their_number_values_through_config_json():
    config = load_config(
        {
            "models": [{"alias": "m", "model": "x", "base_url": "http://127.0.0.1:9/v1"}],
            "columns": [
                {"name": "q", "type": "category", "values": ["a"]},
                {
                    "name": "j",
                    "type": "llm_judge",
                    "model": "m",
                    "prompt": "{{ q }}",
                    "scores": [
                        {"name": "acc", "options": {1: "wrong", 2: "right"}},
                        {"name": "tone", "options": {"formal": "", "casual": ""}},
                    ],
                },
            ],
        }
    )
    again = load_config(json.loads(json.dumps(config.resolved_dump())))
    assert again.columns[1].scores[0].values == [1, 2] and again.columns[1].scores[1].values == ["formal", "casual"]
    assert again == config and fingerprint(again) == fingerprint(config)
