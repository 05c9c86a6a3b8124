"""Files of Hugging Face Hub dataset repos (``hf://datasets/org/name[@revision]/path``), read
in byte ranges at one commit, through huggingface_hub (imported only when used: it is heavy).

The revision (a branch, a tag, or nothing for ``main``) is resolved to its commit once; every
read then names that commit, so a file cannot change between two reads. A token comes from
``HF_TOKEN`` (or huggingface_hub's login) and goes only into request headers.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from typing import Any

from dd_core.errors import StorageError
from dd_core.redaction import scrub

_URL = re.compile(r"^hf://datasets/(?P<repo>[^/@]+/[^/@]+)(?:@(?P<revision>[^/]+))?/(?P<path>.+)$")


@dataclass(frozen=True)
class HubFile:
    repo_id: str
    #: The commit the revision named when the file was looked up.
    commit: str
    path: str
    size: int
    #: The file's content hash: the LFS sha256, or the git blob id of a small file.
    content_id: str

    @property
    def url(self) -> str:
        return f"hf://datasets/{self.repo_id}@{self.commit}/{self.path}"


def hub_endpoint() -> str | None:
    """``HF_ENDPOINT`` as it is now (huggingface_hub reads it once, when first imported)."""
    return os.environ.get("HF_ENDPOINT") or None


def is_hub_url(text: str) -> bool:
    return text.startswith("hf://")


def parse_hub_url(url: str) -> tuple[str, str | None, str]:
    """(repo id, revision or None, path in the repo); ValueError for another form."""
    match = _URL.match(url)
    if not match:
        raise ValueError(f"{url[:200]!r} is not a Hub dataset file: use hf://datasets/org/name[@revision]/path")
    return match["repo"], match["revision"], match["path"]


def _hub_error(url: str, exc: Exception) -> StorageError:
    from huggingface_hub import errors

    if isinstance(exc, errors.RevisionNotFoundError):
        why = "that revision does not exist in the repo"
    elif isinstance(exc, errors.RepositoryNotFoundError):
        why = "the dataset repo does not exist, or is private or gated and HF_TOKEN does not grant access to it"
    elif isinstance(exc, errors.EntryNotFoundError):
        why = "the repo has no such file at that revision"
    elif isinstance(exc, errors.HfHubHTTPError) and exc.response is not None and exc.response.status_code in (401, 403):
        why = "access denied: set HF_TOKEN to a token that may read the repo"
    else:
        why = scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)[:300]
    return StorageError(f"could not read {url}: {why}")


def look_up(url: str) -> HubFile:
    """The file at ``url``: its commit, size and content id (one revision and one paths-info
    request)."""
    import huggingface_hub
    from huggingface_hub import errors

    repo_id, revision, path = parse_hub_url(url)
    api = huggingface_hub.HfApi(endpoint=hub_endpoint())
    try:
        commit = api.dataset_info(repo_id, revision=revision).sha
        found = api.get_paths_info(repo_id, [path], repo_type="dataset", revision=commit)
    except (errors.HfHubHTTPError, errors.EntryNotFoundError, OSError) as exc:
        raise _hub_error(url, exc) from exc
    files = [f for f in found if isinstance(f, huggingface_hub.hf_api.RepoFile)]
    if not files:
        raise StorageError(f"could not read {url}: the repo has no such file at that revision")
    entry = files[0]
    content_id = f"sha256:{entry.lfs.sha256}" if entry.lfs else f"git:{entry.blob_id}"
    return HubFile(repo_id, commit, path, int(entry.size), content_id)


class HubRangeReader(io.RawIOBase):
    """A Hub file as a seekable, read-only Python file: one ranged GET per read."""

    def __init__(self, hub_file: HubFile):
        from huggingface_hub import hf_hub_url
        from huggingface_hub.utils import build_hf_headers, get_session

        super().__init__()
        self._file = hub_file
        self._url = hf_hub_url(
            hub_file.repo_id, hub_file.path, repo_type="dataset", revision=hub_file.commit, endpoint=hub_endpoint()
        )
        self._headers = build_hf_headers()
        self._session: Any = get_session()
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        end = min(self._pos + len(buffer), self._file.size)
        if end <= self._pos:
            return 0
        headers = {**self._headers, "Range": f"bytes={self._pos}-{end - 1}"}
        reply = self._session.get(self._url, headers=headers, follow_redirects=True)
        if reply.status_code not in (200, 206):
            raise OSError(f"{self._file.url}: the Hub answered {reply.status_code} to a read")
        data = reply.content[: end - self._pos] if reply.status_code == 206 else reply.content[self._pos : end]
        n = len(data)
        memoryview(buffer)[:n] = data
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._file.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


def open_hub_file(hub_file: HubFile) -> HubRangeReader:
    """Unbuffered, as ``object_files.open_object``: one GET per range pyarrow asks for."""
    return HubRangeReader(hub_file)
