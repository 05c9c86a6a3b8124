"""Length validators counting a model's tokens: the tokens of a real ``tokenizer.json`` (built here
with the tokenizers library, as a model repo ships it), the file's content in the fingerprint,
its path made absolute in a dataset's config.json, and one clear message for a bad file."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from dd_core import fingerprint, load_config, load_dataset, resume_dataset
from dd_core.engine.in_process import run_row_group
from dd_core.errors import DDConfigError
from tests.support import run_dd

SENTENCES = ["the cat sat on the mat", "a ship sails at dawn", "tea in the rain"]


@pytest.fixture
def tokenizer_file(tmp_path):
    """A BPE tokenizer trained on a few sentences: words it never saw split into several tokens."""
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(SENTENCES * 20, trainers.BpeTrainer(vocab_size=60, special_tokens=["[UNK]"]))
    path = tmp_path / "model" / "tokenizer.json"
    path.parent.mkdir()
    tokenizer.save(str(path))
    return path


def config(tokenizer: str, max_tokens: int = 6) -> dict:
    return {
        "name": "tokens",
        "columns": [
            {"name": "text", "type": "category", "values": [*SENTENCES, "catamaran dawnlight"]},
            {
                "name": "short",
                "type": "validation",
                "validator": "length",
                "unit": "tokens",
                "tokenizer": tokenizer,
                "max": max_tokens,
                "target_columns": ["text"],
            },
        ],
    }


def test_verdicts_count_the_tokenizers_tokens_not_words(tokenizer_file):
    rows = run_row_group(config(str(tokenizer_file)), 0, 40).table.to_pylist()
    counts = {
        text: len(Tokenizer.from_file(str(tokenizer_file)).encode(text).ids) for text in {r["text"] for r in rows}
    }
    assert counts["catamaran dawnlight"] > 6 >= counts["the cat sat on the mat"], "two words, many tokens"
    for row in rows:
        tokens = counts[row["text"]]
        expected = None if tokens <= 6 else f"{tokens:,} tokens, more than max 6"
        assert row["short"] == {"is_valid": tokens <= 6, "reason": expected}


def test_the_fingerprint_holds_the_files_content_not_its_place(tokenizer_file, tmp_path):
    base = fingerprint(load_config(config(str(tokenizer_file)))).config_hash
    moved = tmp_path / "elsewhere.json"
    shutil.copy(tokenizer_file, moved)
    assert fingerprint(load_config(config(str(moved)))).config_hash == base, "the same file elsewhere"
    other = Tokenizer.from_file(str(tokenizer_file))
    other.add_tokens(["catamaran"])
    other.save(str(moved))
    assert fingerprint(load_config(config(str(moved)))).config_hash != base, "another tokenizer"


def test_a_relative_path_starts_at_the_config_folder_and_the_dataset_resumes_from_its_own_config(
    tokenizer_file, tmp_path
):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config("model/tokenizer.json")))
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    done = run_dd("generate", path, "-n", 20, "--buffer-size", 10, "--artifact-path", tmp_path / "out", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "out" / "tokens"
    recorded = json.loads((folder / "config.json").read_text())["columns"][1]["tokenizer"]
    assert recorded == str(tokenizer_file), "config.json records where the file is"
    resumed = resume_dataset(folder)  # from config.json alone: same file, same fingerprint
    assert resumed.num_records == 20 and len(load_dataset(folder)) == 20


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist (relative paths start at the config file's folder)"),
        ("{not json", "is not a tokenizer.json the tokenizers library reads"),
        ('{"version": "1.0"}', "is not a tokenizer.json the tokenizers library reads"),
        (b"\xff\xfe\x00binary", "is not a tokenizer.json the tokenizers library reads"),
        ("dir", "is not a file; expected a model's tokenizer.json"),
    ],
)
def test_a_bad_tokenizer_file_is_one_config_error_naming_the_field(tmp_path, content, message):
    path = tmp_path / "tokenizer.json"
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config("tokenizer.json")))
    checked = run_dd("validate", config_path)
    assert checked.returncode == 2, checked.stdout + checked.stderr
    said = " ".join((checked.stdout + checked.stderr).split())
    assert "tokenizer" in said and message in said and "Traceback" not in said


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"unit": "tokens"}, "unit: tokens needs 'tokenizer'"),
        ({"unit": "words", "tokenizer": "t.json"}, "is read only with unit: tokens (this validator counts words)"),
    ],
)
def test_tokens_and_a_tokenizer_come_together(fields, message):
    column = {"name": "c", "type": "validation", "validator": "length", "max": 3, "target_columns": ["t"], **fields}
    with pytest.raises(DDConfigError, match="tokenizer") as caught:
        load_config({"columns": [{"name": "t", "type": "category", "values": ["a"]}, column]})
    assert message in str(caught.value)


def test_a_tokenizer_changed_after_the_config_was_loaded_stops_the_run(tokenizer_file):
    loaded = load_config(config(str(tokenizer_file)))
    other = Tokenizer.from_file(str(tokenizer_file))
    other.add_tokens(["dawnlight"])
    other.save(str(tokenizer_file))
    os.utime(tokenizer_file)
    with pytest.raises(DDConfigError, match="changed after the config was loaded"):
        run_row_group(loaded, 0, 10)


def test_a_huge_value_is_invalid_unread_not_a_stall(tokenizer_file):
    huge = config(str(tokenizer_file), max_tokens=10**9)
    huge["columns"][0] = {"name": "text", "type": "expression", "expr": "{{ 'cat ' * 300001 }}"}
    huge["render_limits"] = {"max_output_chars": 2_000_000}
    row = run_row_group(huge, 0, 1).table.to_pylist()[0]
    assert row["short"] == {
        "is_valid": False,
        "reason": "1,200,004 characters, more than the 1,000,000 a validator reads",
    }
