"""The archive on S3, through the Amazon provider's ``S3Hook`` (:mod:`include.governance.archive` for the rest).

``S3ArchiveStore("s3://bucket/prefix", aws_conn_id=..., storage_class=...)`` keeps archive keys below
``prefix``. Every object is uploaded with ``ChecksumAlgorithm="SHA256"``: boto computes the SHA-256 of
the bytes it sends and S3 checks it on receipt and keeps it; the store then reads S3's checksum back
(``HeadObject`` with ``ChecksumMode="ENABLED"``, ``ChecksumSHA256`` is base64 of the digest) and
raises :class:`~include.governance.archive.ArchiveError` unless it equals the SHA-256 in the manifest,
so what S3 holds is proven to be the bytes that were hashed. ``storage_class`` (``GLACIER``,
``DEEP_ARCHIVE``, ``STANDARD_IA``…) is set on every object but the manifests (``manifest.json``), which
keep the bucket's default class so that an archive can be listed and verified without a restore (a
few kilobytes per archive); ``None`` leaves the bucket's default everywhere.

Objects are sent in one ``PutObject`` (up to 5 GiB): a multipart upload has no SHA-256 of the whole
object in S3, only a checksum of its parts' checksums, so larger files are refused.

Objects in ``GLACIER`` or ``DEEP_ARCHIVE`` must be restored before they can be read:
:meth:`S3ArchiveStore.request_restore` asks S3 for temporary copies (hours for ``Standard``, up to 48
for ``DEEP_ARCHIVE``); :meth:`~S3ArchiveStore.get` of an object not yet restored raises an
``ArchiveError`` that says so. Checking (:func:`~include.governance.archive.verify`) needs no restore:
it reads the manifest (not archived) and S3 answers ``HeadObject`` for every storage class.

The connection is an ordinary Airflow AWS connection (``AIRFLOW_CONN_<ID>``, ``extra.endpoint_url`` for
an S3-compatible service, ``extra.region_name``).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from functools import cached_property
from pathlib import Path

from airflow.providers.amazon.aws.exceptions import S3HookUriParseFailure
from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.sdk.exceptions import AirflowNotFoundException
from botocore.exceptions import ClientError

from include.governance.archive import MANIFEST, ArchiveError, ArchiveStore, check_key, local_archive_store

log = logging.getLogger(__name__)

MAX_SINGLE_PUT = 5 * 1024**3  # S3's PutObject limit; larger would be multipart, without a whole-object SHA-256
_ARCHIVED_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})


def _hex_from_base64(value: str, where: str) -> str:
    if "-" in value:
        raise ArchiveError(f"{where}: S3 holds a checksum of parts ({value}), not the object's SHA-256 "
                           "(uploaded in parts by another tool)")
    try:
        digest = base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ArchiveError(f"{where}: S3 returned a malformed ChecksumSHA256 {value!r}") from None
    if len(digest) != 32:
        raise ArchiveError(f"{where}: S3 returned a ChecksumSHA256 of {len(digest)} bytes")
    return digest.hex()


class S3ArchiveStore:
    """An :class:`~include.governance.archive.ArchiveStore` in an S3 bucket; see the module docstring."""

    def __init__(self, uri: str, *, aws_conn_id: str | None = "aws_default", storage_class: str | None = None) -> None:
        if not uri.startswith("s3://"):
            raise ArchiveError(f"archive URI {uri}: not an s3:// URI")
        try:
            bucket, prefix = S3Hook.parse_s3_url(uri)
        except S3HookUriParseFailure:
            raise ArchiveError(f"archive URI {uri}: names no bucket") from None
        if not bucket:
            raise ArchiveError(f"archive URI {uri}: names no bucket")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        if self.prefix:
            check_key(self.prefix)
        self.aws_conn_id, self.storage_class = aws_conn_id, storage_class

    def __repr__(self) -> str:
        return f"S3ArchiveStore({self.uri!r}, aws_conn_id={self.aws_conn_id!r}, storage_class={self.storage_class!r})"

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @cached_property
    def writer(self) -> S3Hook:
        """The hook uploads go through: SHA-256 checksums, the storage class, one PutObject per file."""
        return self._writer(self.storage_class)

    @cached_property
    def manifest_writer(self) -> S3Hook:
        """The hook manifests go through: as :attr:`writer`, in the bucket's default storage class."""
        return self._writer(None)

    def _writer(self, storage_class: str | None) -> S3Hook:
        extra = {"ChecksumAlgorithm": "SHA256", **({"StorageClass": storage_class} if storage_class else {})}
        return S3Hook(aws_conn_id=self.aws_conn_id, extra_args=extra,
                      transfer_config_args={"multipart_threshold": MAX_SINGLE_PUT})

    def storage_class_for(self, key: str) -> str | None:
        """The storage class :meth:`put` gives ``key``: :attr:`storage_class`, but None (the bucket's) for manifests."""
        return None if key.rsplit("/", 1)[-1] == MANIFEST else self.storage_class

    @cached_property
    def reader(self) -> S3Hook:
        """The hook downloads go through; ``ChecksumMode`` makes boto check S3's checksum of the bytes received."""
        return S3Hook(aws_conn_id=self.aws_conn_id, extra_args={"ChecksumMode": "ENABLED"})

    def key(self, key: str) -> str:
        """The S3 key of an archive key."""
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _where(self, key: str) -> str:
        return f"{self.uri}/{key}"

    def head(self, key: str) -> dict | None:
        """``HeadObject`` with ``ChecksumMode="ENABLED"``; None when the object does not exist."""
        try:
            return self.reader.get_conn().head_object(Bucket=self.bucket, Key=self.key(key), ChecksumMode="ENABLED")
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _MISSING:
                return None
            raise

    def put(self, key: str, path: Path, sha256: str) -> None:
        size = Path(path).stat().st_size
        if size > MAX_SINGLE_PUT:
            raise ArchiveError(f"{self._where(key)}: {size} bytes is over S3's single-upload limit ({MAX_SINGLE_PUT}); "
                               "a multipart upload has no SHA-256 of the whole object")
        storage_class = self.storage_class_for(key)
        writer = self.writer if storage_class == self.storage_class else self.manifest_writer
        writer.load_file(Path(path), self.key(key), bucket_name=self.bucket, replace=True)
        found = self.stored_sha256(key)
        if found != sha256:
            raise ArchiveError(f"{self._where(key)}: S3's checksum after upload is sha256 {found}, expected {sha256}")
        log.info("Stored %s (%d bytes, sha256 %s, storage class %s)", self._where(key), size, sha256,
                 storage_class or "bucket default")

    def get(self, key: str, dest: Path) -> None:
        dest = Path(dest)
        try:
            downloaded = self.reader.download_file(self.key(key), bucket_name=self.bucket, local_path=str(dest.parent))
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code"))
            if code == "InvalidObjectState":
                head = self.head(key) or {}
                raise ArchiveError(
                    f"{self._where(key)} is in storage class {head.get('StorageClass', 'GLACIER')} and not restored "
                    "(S3ArchiveStore.request_restore, then wait for S3)") from None
            if code in _MISSING:
                raise ArchiveError(f"{self._where(key)}: no such object") from None
            raise
        except AirflowNotFoundException:
            raise ArchiveError(f"{self._where(key)}: no such object") from None
        os.replace(downloaded, dest)

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def stored_sha256(self, key: str) -> str | None:
        head = self.head(key)
        if head is None or not head.get("ChecksumSHA256"):
            return None
        return _hex_from_base64(head["ChecksumSHA256"], self._where(key))

    def storage_class_of(self, key: str) -> str | None:
        """The object's storage class as S3 reports it (S3 omits ``STANDARD``: then ``"STANDARD"``); None if missing."""
        head = self.head(key)
        return None if head is None else head.get("StorageClass", "STANDARD")

    def request_restore(self, prefix: str, *, days: int = 7, tier: str = "Standard") -> list[str]:
        """Ask S3 to make readable copies of the archived (``GLACIER``/``DEEP_ARCHIVE``) objects under ``prefix``.

        ``days``: how long the copies stay; ``tier``: ``Expedited``, ``Standard`` or ``Bulk``. Returns the
        archive keys that are not readable yet (restore requested or in progress); empty: all can be read.
        """
        client = self.reader.get_conn()
        pending = []
        base = self.key(prefix.strip("/"))
        for s3_key in self.reader.list_keys(bucket_name=self.bucket, prefix=f"{base}/"):
            key = s3_key[len(self.prefix) + 1:] if self.prefix else s3_key
            head = self.head(key) or {}
            if head.get("StorageClass") not in _ARCHIVED_CLASSES:
                continue
            restore = head.get("Restore") or ""
            if 'ongoing-request="false"' in restore:
                continue
            if not restore:
                client.restore_object(Bucket=self.bucket, Key=s3_key,
                                      RestoreRequest={"Days": days, "GlacierJobParameters": {"Tier": tier}})
            pending.append(key)
        if pending:
            log.info("Restore of %d archived objects under %s requested or in progress", len(pending), prefix)
        return pending


def archive_store(uri: str | None, *, aws_conn_id: str | None = "aws_default",
                  storage_class: str | None = None) -> ArchiveStore:
    """The archive store of a model's ``retirement`` settings.

    ``s3://bucket/prefix`` → :class:`S3ArchiveStore` (``aws_conn_id``, ``storage_class``); a folder or
    ``file://`` URI → :class:`~include.governance.archive.LocalArchiveStore`; None → the embedded default
    ``<state folder>/archive``. Other schemes raise :class:`~include.governance.archive.ArchiveError`.
    """
    if uri is not None and uri.startswith("s3://"):
        return S3ArchiveStore(uri, aws_conn_id=aws_conn_id, storage_class=storage_class)
    return local_archive_store(uri)
