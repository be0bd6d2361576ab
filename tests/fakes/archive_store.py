"""An archive store that passes through to a real one, records every put, and can fail the n-th put.

The fault is injected at the store boundary (a connection lost half-way through an upload); everything
else is the wrapped store's (:class:`include.governance.archive.LocalArchiveStore` or the S3 store).
"""

from __future__ import annotations

from pathlib import Path

from include.governance.archive import ArchiveStore


class FaultyStore:
    """``inner``, with the keys put so far in ``puts``; with ``fail_on``, the ``fail_on``-th put raises
    ``ConnectionError`` before anything is sent."""

    def __init__(self, inner: ArchiveStore, fail_on: int | None = None) -> None:
        self.inner, self.fail_on, self.puts = inner, fail_on, []

    @property
    def uri(self) -> str:
        return self.inner.uri

    def put(self, key: str, path: Path, sha256: str) -> None:
        if self.fail_on is not None and len(self.puts) + 1 == self.fail_on:
            raise ConnectionError(f"injected: connection reset while sending {key}")
        self.inner.put(key, path, sha256)
        self.puts.append(key)

    def get(self, key: str, dest: Path) -> None:
        self.inner.get(key, dest)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def stored_sha256(self, key: str) -> str | None:
        return self.inner.stored_sha256(key)
