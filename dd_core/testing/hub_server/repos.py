"""The Hub's repos in memory: commits of whole file trees, regular files kept inline, LFS files
by their sha256 (uploaded once, shared by every commit that names them)."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass(frozen=True)
class Entry:
    size: int
    #: The git blob id (of the content, or of the LFS pointer).
    oid: str
    content: bytes | None = None
    lfs_sha256: str | None = None


@dataclass
class Commit:
    oid: str
    title: str
    files: dict[str, Entry]
    date: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()))


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: list[Commit] = field(default_factory=list)
    branches: dict[str, str] = field(default_factory=dict)

    def commit(self, revision: str) -> Commit | None:
        """A branch or a commit id."""
        oid = self.branches.get(revision, revision)
        return next((c for c in self.commits if c.oid == oid or (len(revision) >= 7 and c.oid.startswith(oid))), None)


class Hub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        #: LFS objects uploaded, by sha256.
        self.lfs: dict[str, bytes] = {}

    def create(self, repo_id: str, private: bool) -> Repo:
        repo = self.repos[repo_id] = Repo(repo_id, private)
        self.add_commit(repo, "main", "initial commit", {})
        return repo

    def add_commit(self, repo: Repo, branch: str, title: str, files: dict[str, Entry]) -> Commit:
        parent = repo.commit(branch)
        seed = f"{repo.repo_id}/{len(repo.commits)}/{title}/{sorted(files)}/{parent.oid if parent else ''}"
        commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), title, files)
        repo.commits.append(commit)
        repo.branches[branch] = commit.oid
        return commit

    def read(self, entry: Entry) -> bytes:
        return entry.content if entry.lfs_sha256 is None else self.lfs[entry.lfs_sha256]
