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


class ObjectReader(io.RawIOBase):
    def __init__(self, store: Any, key: str, uri: str, meta: dict):
        super().__init__()
        self._store, self._key, self._uri = store, key, uri
        self.size = int(meta["size"])
        self._pin = version_pin(meta)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        end = min(self._pos + len(buffer), self.size)
        if end <= self._pos:
            return 0
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


def open_object(store: Any, key: str, uri: str, meta: dict) -> ObjectReader:
    """Unbuffered: pyarrow asks for exactly the ranges it needs (a footer, a column chunk), and
    a buffer would turn each seek into a larger GET."""
    return ObjectReader(store, key, uri, meta)
