"""Publishing a finished dataset to the Hugging Face Hub (``ddsynth push DIR --repo org/name``).

The repo gets the dataset's parquet files as ``data/train-NNNNN-of-NNNNN.parquet`` and a dataset
card (``dataset_card``), in one commit. dd owns ``README.md`` and ``data/`` in the repo: files
under ``data/`` that are not part of this dataset are deleted in the same commit (so the repo
loads as exactly this dataset); other files are kept. huggingface_hub skips what the Hub already
has, so pushing again uploads only what is missing. The token comes from ``HF_TOKEN`` (or
huggingface_hub's login) and is never printed or stored. huggingface_hub is imported only when
pushing (it is heavy).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from dd_core.errors import DDUsageError, StorageError
from dd_core.interface.api import dataset_files
from dd_core.interface.dataset_card import CardFacts, dataset_card
from dd_core.log import get_logger
from dd_core.redaction import register, scrub
from dd_core.storage.filesystems import StoragePath, storage_path
from dd_core.storage.hub_files import hub_endpoint
from dd_core.storage.layout import DatasetLayout
from dd_core.storage.metadata import load_metadata

log = get_logger(__name__)
#: Bytes per ranged GET while huggingface_hub hashes and uploads a file from an object store.
UPLOAD_READ_BYTES = 8 << 20
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


@dataclass(frozen=True)
class PushResult:
    repo_id: str
    revision: str
    commit_url: str
    files: int
    deleted: list[str]
    #: The repo held exactly this already: nothing was uploaded or committed.
    up_to_date: bool = False


def shard_name(index: int, count: int) -> str:
    return f"data/train-{index:05d}-of-{count:05d}.parquet"


def push_dataset(
    path: str | os.PathLike | StoragePath,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    license: str | None = None,
) -> PushResult:
    """Push the finished dataset in folder ``path`` (refused while unfinished)."""
    _check_repo_id(repo_id)
    layout = DatasetLayout(storage_path(path))
    files = dataset_files(layout.root)  # refuses an unfinished or damaged dataset
    meta = load_metadata(layout.metadata)
    facts = CardFacts(
        name=layout.name,
        config=json.loads(layout.config.read_text()),
        config_hash=meta.config_hash,
        num_rows=meta.actual_num_records,
        row_groups=len(meta.completed),
        dropped_rows=meta.dropped_rows,
        llm_usage=meta.extra.get("llm_usage", {}),
        llm_cost_usd=meta.extra.get("llm_cost_usd"),
        license=license,
    )
    return push_files(files, repo_id, facts, private=private, revision=revision)


def push_files(
    files: Sequence[StoragePath],
    repo_id: str,
    facts: CardFacts,
    *,
    private: bool = False,
    revision: str | None = None,
) -> PushResult:
    """One commit: ``files`` (parquet, in row order) as the repo's data, and the card."""
    import huggingface_hub
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, errors

    _check_repo_id(repo_id)
    register(os.environ.get("HF_TOKEN"))
    _quiet(huggingface_hub)
    api = huggingface_hub.HfApi(endpoint=hub_endpoint())
    branch = revision or "main"
    try:
        api.create_repo(repo_id, repo_type="dataset", private=True if private else None, exist_ok=True)
        if branch != "main":
            api.create_branch(repo_id, repo_type="dataset", branch=branch, exist_ok=True)
        head = api.dataset_info(repo_id, revision=branch).sha
        existing = set(api.list_repo_files(repo_id, repo_type="dataset", revision=head))
        names = [shard_name(i, len(files)) for i in range(len(files))]
        stale = sorted(p for p in existing if p.startswith("data/") and p not in names)
        with files[0].open_arrow() as first:
            schema = pq.read_schema(first)
        card = dataset_card(_without_dd_metadata(schema), facts, sum(_size(f) for f in files)).encode()
        with contextlib.ExitStack() as stack:
            # A local path, or the object's ranged reader behind a buffer: huggingface_hub hashes it,
            # then uploads it, and takes only a str, bytes or an io.BufferedIOBase.
            sources = [_uploadable(stack.enter_context(f.open_arrow())) for f in files]
            operations = [CommitOperationAdd(name, source) for name, source in zip(names, sources)]
            operations += [CommitOperationAdd("README.md", card)]
            operations += [CommitOperationDelete(p) for p in stale]
            info = api.create_commit(
                repo_id,
                operations,
                commit_message=f"ddsynth push: {facts.name} ({facts.num_rows:,} rows, {facts.config_hash[:19]})",
                repo_type="dataset",
                revision=branch,
            )
    except (errors.HfHubHTTPError, errors.HFValidationError, RuntimeError, OSError, ValueError) as exc:
        raise _push_error(repo_id, exc) from exc
    return PushResult(repo_id, branch, info.commit_url, len(files), stale, up_to_date=info.oid == head)


def _uploadable(source: str | IO[bytes]) -> str | IO[bytes]:
    return source if isinstance(source, str | io.BufferedIOBase) else io.BufferedReader(source, UPLOAD_READ_BYTES)


def _check_repo_id(repo_id: str) -> None:
    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id) or ".." in repo_id:
        raise DDUsageError(f"--repo {str(repo_id)[:100]!r} is not a Hub repo id: use org/name")


def _quiet(huggingface_hub: Any) -> None:
    """No line per HTTP request (httpx logs them at INFO); upload bars only on a terminal."""
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)  # dd says itself when nothing changed
    if not sys.stderr.isatty():
        huggingface_hub.utils.disable_progress_bars()


def _size(path: StoragePath) -> int:
    if path.is_local:
        return path.local.stat().st_size
    return int(path.fs.head(path.path)["size"])


def _without_dd_metadata(schema: pa.Schema) -> pa.Schema:
    meta = {k: v for k, v in (schema.metadata or {}).items() if not k.startswith(b"dd.")}
    return schema.with_metadata(meta or None)


def _push_error(repo_id: str, exc: BaseException) -> StorageError:
    """One message for a failed push, from the Hub's HTTP answer somewhere in the cause chain."""
    from huggingface_hub import errors

    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, errors.HfHubHTTPError):
        cause = cause.__cause__
    status = cause.response.status_code if cause is not None and cause.response is not None else None
    if status in (401, 403):
        why = f"the Hub answered {status}: the token (HF_TOKEN) may not write to {repo_id}, or has expired"
    elif status is not None:
        why = f"the Hub answered {status}"
    else:
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StorageError(
        scrub(
            f"could not push to {repo_id}: {why[:300]}. Nothing was committed; files already uploaded are kept by "
            "the Hub, so pushing again uploads only what is missing"
        )  # fmt: skip
    )
