"""The Hub's HTTP API as huggingface_hub 2.x calls it (its client code is the specification):
whoami, repo create, repo info, YAML validation, preupload, the LFS batch API and uploads,
commit (ndjson), tree, paths-info and resolve (with byte ranges). Uploads go through LFS only
(clients must set ``HF_HUB_DISABLE_XET=1``: this server has no Xet storage).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field

from aiohttp import web

from dd_core.testing.hub_server.repos import Commit, Entry, Hub, Repo, git_blob_id

#: Files above this size, and parquet files, go through LFS (as the Hub's .gitattributes says).
LFS_OVER_BYTES = 10 * 2**20
_LFS_SUFFIXES = (".parquet", ".arrow", ".bin", ".safetensors")


@dataclass
class Faults:
    """Failures a test injects: the n-th LFS upload (1-based) or every commit answers ``status``."""

    lfs_upload_status: int | None = None
    lfs_upload_at: int = 1
    commit_status: int | None = None
    lfs_uploads: int = 0
    #: Bytes of file content served by resolve (ranged reads count what they return).
    bytes_served: int = 0
    requests: list[str] = field(default_factory=list)


def _error(status: int, message: str, code: str | None = None) -> web.Response:
    headers = {"X-Error-Message": message, **({"X-Error-Code": code} if code else {})}
    return web.json_response({"error": message}, status=status, headers=headers)


class HubApi:
    def __init__(self, tokens: dict[str, str], base_url: str):
        self.hub = Hub()
        self.tokens = tokens  # token -> user name
        self.base_url = base_url
        self.faults = Faults()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 31, middlewares=[self._log])
        r = app.router
        r.add_get("/api/whoami-v2", self.whoami)
        r.add_post("/api/repos/create", self.create_repo)
        r.add_post("/api/validate-yaml", self.validate_yaml)
        r.add_get("/api/datasets/{org}/{name}", self.repo_info)
        r.add_get("/api/datasets/{org}/{name}/revision/{revision}", self.repo_info)
        r.add_post("/api/datasets/{org}/{name}/preupload/{revision}", self.preupload)
        r.add_post("/api/datasets/{org}/{name}/commit/{revision}", self.commit)
        r.add_post("/api/datasets/{org}/{name}/branch/{branch}", self.create_branch)
        r.add_get("/api/datasets/{org}/{name}/tree/{revision}", self.tree)
        r.add_get("/api/datasets/{org}/{name}/tree/{revision}/{path:.*}", self.tree)
        r.add_post("/api/datasets/{org}/{name}/paths-info/{revision}", self.paths_info)
        r.add_post("/datasets/{org}/{name}.git/info/lfs/objects/batch", self.lfs_batch)
        r.add_put("/lfs-upload/{oid}", self.lfs_upload)
        r.add_get("/datasets/{org}/{name}/resolve/{revision}/{path:.*}", self.resolve)  # and HEAD
        return app

    @web.middleware
    async def _log(self, request: web.Request, handler) -> web.StreamResponse:  # noqa: ANN001
        self.faults.requests.append(f"{request.method} {request.path}")
        return await handler(request)

    # -- auth and repos -------------------------------------------------------------------
    def user(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        return self.tokens.get(auth.removeprefix("Bearer ").strip()) if auth.startswith("Bearer ") else None

    def _repo(self, request: web.Request, *, write: bool = False) -> Repo | web.Response:
        repo_id = f"{request.match_info['org']}/{request.match_info['name']}"
        repo = self.hub.repos.get(repo_id)
        user = self.user(request)
        if repo is None or (repo.private and user is None):
            return _error(404, "Repository not found", "RepoNotFound")
        if write and user is None:
            return _error(401, "Invalid credentials in Authorization header")
        if write and repo_id.split("/")[0] not in (user, "dd-org"):
            return _error(403, "You don't have the rights to write to this repository")
        return repo

    def _commit(self, repo: Repo, request: web.Request) -> Commit | web.Response:
        commit = repo.commit(request.match_info.get("revision", "main"))
        return commit if commit is not None else _error(404, "Revision not found", "RevisionNotFound")

    async def whoami(self, request: web.Request) -> web.Response:
        user = self.user(request)
        if user is None:
            return _error(401, "Invalid credentials in Authorization header")
        return web.json_response(
            {"type": "user", "name": user, "orgs": [{"name": "dd-org"}], "auth": {"accessToken": {"role": "write"}}}
        )

    async def create_repo(self, request: web.Request) -> web.Response:
        user = self.user(request)
        if user is None:
            return _error(401, "Invalid credentials in Authorization header")
        body = await request.json()
        repo_id = f"{body.get('organization') or user}/{body['name']}"
        url = f"{self.base_url}/datasets/{repo_id}"
        if repo_id in self.hub.repos:
            return web.json_response({"error": "You already created this dataset repo", "url": url}, status=409)
        self.hub.create(repo_id, bool(body.get("private")) or body.get("visibility") == "private")
        return web.json_response({"url": url, "name": repo_id})

    async def validate_yaml(self, request: web.Request) -> web.Response:
        return web.json_response({"errors": [], "warnings": []})

    async def repo_info(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        if isinstance(repo, web.Response):
            return repo
        commit = self._commit(repo, request)
        if isinstance(commit, web.Response):
            return commit
        siblings = [{"rfilename": path} for path in sorted(commit.files)]
        return web.json_response(
            {
                "id": repo.repo_id,
                "author": repo.repo_id.split("/")[0],
                "sha": commit.oid,
                "private": repo.private,
                "siblings": siblings,
                "lastModified": commit.date,
                "tags": [],
            }  # fmt: skip
        )

    # -- uploads --------------------------------------------------------------------------
    async def preupload(self, request: web.Request) -> web.Response:
        repo = self._repo(request, write=True)
        if isinstance(repo, web.Response):
            return repo
        current = repo.commit(request.match_info["revision"])
        files = []
        for item in (await request.json())["files"]:
            lfs = item["size"] > LFS_OVER_BYTES or item["path"].endswith(_LFS_SUFFIXES)
            existing = current.files.get(item["path"]) if current else None
            oid = None if existing is None else (existing.lfs_sha256 or existing.oid)
            files.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                          "oid": oid})  # fmt: skip
        return web.json_response({"files": files, "commitOid": current.oid if current else None})

    async def lfs_batch(self, request: web.Request) -> web.Response:
        repo = self._repo(request, write=True)
        if isinstance(repo, web.Response):
            return repo
        objects = []
        for obj in (await request.json())["objects"]:
            item = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.hub.lfs:
                item["actions"] = {"upload": {"href": f"{self.base_url}/lfs-upload/{obj['oid']}"}}
            objects.append(item)
        return web.json_response({"transfer": "basic", "objects": objects})

    async def lfs_upload(self, request: web.Request) -> web.Response:
        self.faults.lfs_uploads += 1
        if self.faults.lfs_upload_status and self.faults.lfs_uploads >= self.faults.lfs_upload_at:
            return _error(self.faults.lfs_upload_status, "Forbidden: upload refused")
        data = await request.read()
        oid = request.match_info["oid"]
        if hashlib.sha256(data).hexdigest() != oid:
            return _error(400, "sha256 mismatch")
        self.hub.lfs[oid] = data
        return web.Response(status=200)

    async def commit(self, request: web.Request) -> web.Response:
        repo = self._repo(request, write=True)
        if isinstance(repo, web.Response):
            return repo
        if self.faults.commit_status:
            return _error(self.faults.commit_status, "Forbidden: commit refused")
        branch = request.match_info["revision"]
        parent = repo.commit(branch) or repo.commit("main")
        files = dict(parent.files) if parent else {}
        title = "commit"
        for line in (await request.read()).splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                title = value["summary"]
            elif key == "file":
                content = base64.b64decode(value["content"])
                files[value["path"]] = Entry(len(content), git_blob_id(content), content=content)
            elif key == "lfsFile":
                if value["oid"] not in self.hub.lfs:
                    return _error(422, f"LFS object {value['oid']} was never uploaded")
                pointer = (
                    f"version https://git-lfs.github.com/spec/v1\noid sha256:{value['oid']}\nsize {value['size']}\n"
                )
                files[value["path"]] = Entry(value["size"], git_blob_id(pointer.encode()), lfs_sha256=value["oid"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                files = {p: e for p, e in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
        commit = self.hub.add_commit(repo, branch, title, files)
        return web.json_response(
            {
                "commitUrl": f"{self.base_url}/datasets/{repo.repo_id}/commit/{commit.oid}",
                "commitOid": commit.oid,
                "pullRequestUrl": None,
            }  # fmt: skip
        )

    async def create_branch(self, request: web.Request) -> web.Response:
        repo = self._repo(request, write=True)
        if isinstance(repo, web.Response):
            return repo
        branch = request.match_info["branch"]
        if branch in repo.branches:
            return _error(409, "Reference already exists")
        body = await request.json() if request.can_read_body else {}
        start = repo.commit((body or {}).get("startingPoint") or "main")
        repo.branches[branch] = start.oid
        return web.json_response({})

    # -- reading --------------------------------------------------------------------------
    def _entry_json(self, path: str, entry: Entry) -> dict:
        item = {"type": "file", "path": path, "size": entry.size, "oid": entry.oid}
        if entry.lfs_sha256:
            item["lfs"] = {"oid": entry.lfs_sha256, "size": entry.size, "pointerSize": 134}
        return item

    async def tree(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        if isinstance(repo, web.Response):
            return repo
        commit = self._commit(repo, request)
        if isinstance(commit, web.Response):
            return commit
        prefix = request.match_info.get("path", "").strip("/")
        recursive = request.query.get("recursive", "false").lower() in ("1", "true")
        items, folders = [], set()
        for path in sorted(commit.files):
            if prefix and not path.startswith(prefix + "/"):
                continue
            rest = path[len(prefix) + 1 :] if prefix else path
            if "/" in rest and not recursive:
                folders.add(f"{prefix}/{rest.split('/')[0]}" if prefix else rest.split("/")[0])
                continue
            if recursive:
                parts = rest.split("/")[:-1]
                for i in range(len(parts)):
                    folders.add("/".join(([prefix] if prefix else []) + parts[: i + 1]))
            items.append(self._entry_json(path, commit.files[path]))
        items += [
            {"type": "directory", "path": f, "oid": hashlib.sha1(f.encode()).hexdigest()} for f in sorted(folders)
        ]
        return web.json_response(items)

    async def paths_info(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        if isinstance(repo, web.Response):
            return repo
        commit = self._commit(repo, request)
        if isinstance(commit, web.Response):
            return commit
        if request.content_type == "application/json":
            paths = (await request.json()).get("paths", [])
        else:
            paths = (await request.post()).getall("paths", [])
        return web.json_response([self._entry_json(p, commit.files[p]) for p in paths if p in commit.files])

    async def resolve(self, request: web.Request) -> web.StreamResponse:
        repo = self._repo(request)
        if isinstance(repo, web.Response):
            return repo
        commit = self._commit(repo, request)
        if isinstance(commit, web.Response):
            return commit
        entry = commit.files.get(request.match_info["path"])
        if entry is None:
            return _error(404, "Entry not found", "EntryNotFound")
        data = self.hub.read(entry)
        etag = entry.lfs_sha256 or entry.oid
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if entry.lfs_sha256:
            headers |= {"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(entry.size)}
        ranges = request.http_range
        if request.headers.get("Range") and (ranges.start is not None or ranges.stop is not None):
            start = ranges.start or 0
            stop = min(ranges.stop if ranges.stop is not None else len(data), len(data))
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(data)}"
            self.faults.bytes_served += stop - start
            return web.Response(status=206, body=data[start:stop], headers=headers)
        if request.method == "GET":
            self.faults.bytes_served += len(data)
        return web.Response(body=data, headers=headers)
