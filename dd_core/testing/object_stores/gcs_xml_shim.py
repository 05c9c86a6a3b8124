"""A small HTTP shim in front of fake-gcs-server for the GCS XML API writes it does not serve.

Real GCS accepts an object write as ``PUT /<bucket>/<object>`` (the XML API), which is how
obstore (Rust object_store) writes. fake-gcs-server (v1.54) routes that request to its JSON
upload handler and answers 400 "invalid uploadType" (its upstream issue #331; the XML support
PRs are unmerged). It also ignores ``ifGenerationMatch`` on ``uploadType=media`` uploads (fixed
after v1.54). So the shim turns:

- ``PUT /b/o`` into a JSON ``uploadType=multipart`` upload, with ``x-goog-if-generation-match``
  as ``ifGenerationMatch``, answering with ``ETag`` and ``x-goog-generation``;
- ``PUT /b/o`` with ``x-goog-copy-source`` into ``rewriteTo``;
- the XML multipart calls (initiate, part, complete, abort) into parts kept here and one
  upload at completion (so the object still appears whole or not at all);

and passes everything else (GET, HEAD, DELETE, listing) through unchanged.

``python -m dd_core.testing.object_stores.gcs_xml_shim --upstream URL --port P``
"""

from __future__ import annotations

import argparse
import json
import uuid
from urllib.parse import quote, unquote

import aiohttp
from aiohttp import web

_PASS_THROUGH_PREFIXES = ("/storage/", "/upload/", "/download/", "/_internal")


def _split(raw_path: str) -> tuple[str, str]:
    bucket, _, obj = raw_path.lstrip("/").partition("/")
    return unquote(bucket), unquote(obj)


def _xml_error(status: int, code: str, message: str = "") -> web.Response:
    body = f"<Error><Code>{code}</Code><Message>{message[:300]}</Message></Error>"
    return web.Response(status=status, body=body.encode(), content_type="application/xml")


class GcsXmlShim:
    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.uploads: dict[str, dict] = {}
        self.session: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 31)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    async def _open(self, _app: web.Application) -> None:
        self.session = aiohttp.ClientSession(auto_decompress=False)

    async def _close(self, _app: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    async def upload(
        self, bucket: str, obj: str, body: bytes, generation_match: str | None, ctype: str
    ) -> web.Response:
        params = {"uploadType": "multipart"}
        if generation_match is not None:
            params["ifGenerationMatch"] = generation_match
        boundary = uuid.uuid4().hex
        meta = json.dumps({"name": obj, "contentType": ctype}).encode()
        payload = b"".join(
            [
                f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".encode(),
                meta,
                f"\r\n--{boundary}\r\nContent-Type: {ctype}\r\n\r\n".encode(),
                body,
                f"\r\n--{boundary}--\r\n".encode(),
            ]
        )
        url = f"{self.upstream}/upload/storage/v1/b/{quote(bucket, safe='')}/o"
        headers = {"Content-Type": f"multipart/related; boundary={boundary}"}
        async with self.session.post(url, params=params, data=payload, headers=headers) as reply:
            text = await reply.text()
            if reply.status >= 300:
                code = {412: "PreconditionFailed", 404: "NoSuchBucket"}.get(reply.status, "Error")
                return _xml_error(reply.status, code, text)
            created = json.loads(text)
        etag = created.get("etag") or created.get("md5Hash", "")
        return web.Response(status=200, headers={"ETag": f'"{etag}"', "x-goog-generation": str(created["generation"])})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        query = request.rel_url.query
        raw = request.rel_url.raw_path
        is_object = raw.count("/") >= 2 and not raw.startswith(_PASS_THROUGH_PREFIXES)
        method = request.method
        if is_object and method == "PUT" and "uploadId" not in query:
            bucket, obj = _split(raw)
            if "x-goog-copy-source" in request.headers:
                return await self._copy(request, bucket, obj)
            ctype = request.headers.get("Content-Type") or "application/octet-stream"
            generation = request.headers.get("x-goog-if-generation-match")
            return await self.upload(bucket, obj, await request.read(), generation, ctype)
        if is_object and method == "POST" and "uploads" in query:
            bucket, obj = _split(raw)
            upload_id = uuid.uuid4().hex
            ctype = request.headers.get("Content-Type") or "application/octet-stream"
            self.uploads[upload_id] = {"bucket": bucket, "obj": obj, "parts": {}, "ctype": ctype}
            body = (
                f"<InitiateMultipartUploadResult><Bucket>{bucket}</Bucket><Key>{obj}</Key>"
                f"<UploadId>{upload_id}</UploadId></InitiateMultipartUploadResult>"
            )
            return web.Response(body=body.encode(), content_type="application/xml")
        if is_object and method == "PUT" and "uploadId" in query:
            upload = self.uploads.get(query["uploadId"])
            if upload is None:
                return _xml_error(404, "NoSuchUpload")
            upload["parts"][int(query["partNumber"])] = await request.read()
            return web.Response(headers={"ETag": f'"{query["partNumber"]}-{uuid.uuid4().hex}"'})
        if is_object and method == "POST" and "uploadId" in query:
            await request.read()
            upload = self.uploads.pop(query["uploadId"], None)
            if upload is None:
                return _xml_error(404, "NoSuchUpload")
            body = b"".join(upload["parts"][k] for k in sorted(upload["parts"]))
            generation = request.headers.get("x-goog-if-generation-match")
            reply = await self.upload(upload["bucket"], upload["obj"], body, generation, upload["ctype"])
            if reply.status != 200:
                return reply
            result = (
                f"<CompleteMultipartUploadResult><ETag>{reply.headers['ETag']}</ETag></CompleteMultipartUploadResult>"
            )
            return web.Response(status=200, headers=dict(reply.headers), body=result.encode())
        if is_object and method == "DELETE" and "uploadId" in query:
            self.uploads.pop(query["uploadId"], None)
            return web.Response(status=204)
        return await self._pass_through(request)

    async def _copy(self, request: web.Request, bucket: str, obj: str) -> web.Response:
        source_bucket, source = _split("/" + unquote(request.headers["x-goog-copy-source"]).lstrip("/"))
        params = {}
        if "x-goog-if-generation-match" in request.headers:
            params["ifGenerationMatch"] = request.headers["x-goog-if-generation-match"]
        url = (
            f"{self.upstream}/storage/v1/b/{quote(source_bucket, safe='')}/o/{quote(source, safe='')}"
            f"/rewriteTo/b/{quote(bucket, safe='')}/o/{quote(obj, safe='')}"
        )
        async with self.session.post(url, params=params, json={}) as reply:
            await reply.read()
            if reply.status >= 300:
                return _xml_error(reply.status, {412: "PreconditionFailed"}.get(reply.status, "Error"))
        return web.Response(status=200, body=b"<CopyObjectResult></CopyObjectResult>")

    async def _pass_through(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length", "transfer-encoding")
        }
        url = f"{self.upstream}{request.rel_url}"
        async with self.session.request(
            request.method, url, data=body or None, headers=headers, allow_redirects=False
        ) as reply:
            data = await reply.read()
            dropped = ("transfer-encoding", "content-encoding", "connection")
            if request.method != "HEAD":
                dropped += ("content-length",)
            out = {k: v for k, v in reply.headers.items() if k.lower() not in dropped}
            if request.method == "HEAD":
                response = web.StreamResponse(status=reply.status, headers=out)
                await response.prepare(request)
                await response.write_eof()
                return response
            return web.Response(status=reply.status, body=data, headers=out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="fake-gcs-server's URL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(GcsXmlShim(args.upstream).app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
