"""A remote object as a seekable, read-only Python file for pyarrow: each read is one ranged GET,
pinned to the version seen when it was opened (a replaced object fails the read instead of
mixing two versions).

obstore's own ``open_reader`` file lacks the ``closed`` attribute pyarrow probes and cannot be
pinned to a version, hence this small ``io.RawIOBase``.
"""

from __future__ import annotations

import io
from typing import Any

import obstore
from obstore.exceptions import PreconditionError


class ObjectChanged(OSError):
    """The object was replaced while it was being read."""


def version_pin(meta: dict) -> dict[str, str]:
    """GET options that succeed only on the version ``meta`` (from a HEAD or GET) describes:
    the generation on GCS, the ETag elsewhere (obstore refuses ``None`` values)."""
    if meta.get("version"):
        return {"version": meta["version"]}
    return {"if_match": meta["e_tag"]} if meta.get("e_tag") else {}


#: Bytes fetched from the end of an object when it is opened: a parquet footer, in the same GET
#: that tells the object's size and version (pyarrow reads 64 KiB from the end first).
TAIL_BYTES = 64 * 1024


class ObjectReader(io.RawIOBase):
    def __init__(self, store: Any, key: str, uri: str, meta: dict, tail: bytes = b""):
        super().__init__()
        self._store, self._key, self._uri = store, key, uri
        self.size = int(meta["size"])
        self._pin = version_pin(meta)
        self._pos = 0
        self._tail = tail

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        end = min(self._pos + len(buffer), self.size)
        if end <= self._pos:
            return 0
        tail_start = self.size - len(self._tail)
        if self._tail and self._pos >= tail_start:
            data = self._tail[self._pos - tail_start : end - tail_start]
            memoryview(buffer)[: len(data)] = data
            self._pos += len(data)
            return len(data)
        try:
            data = obstore.get(self._store, self._key, options={"range": (self._pos, end), **self._pin}).bytes()
        except (PreconditionError, FileNotFoundError) as exc:  # GCS: the pinned generation is gone
            raise ObjectChanged(f"{self._uri} was replaced or removed while it was being read") from exc
        n = len(data)
        memoryview(buffer)[:n] = memoryview(data)
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


def open_object(store: Any, key: str, uri: str, meta: dict | None = None) -> ObjectReader:
    """Unbuffered: pyarrow asks for exactly the ranges it needs (a footer, a column chunk), and
    a buffer would turn each seek into a larger GET. Without ``meta`` (a version to pin), the
    object's tail is fetched at once, and its size and version with it (one GET, no HEAD)."""
    if meta is not None:
        return ObjectReader(store, key, uri, meta)
    result = obstore.get(store, key, options={"range": {"suffix": TAIL_BYTES}})
    return ObjectReader(store, key, uri, result.meta, bytes(result.bytes()))
