"""Archive backends behind one small interface; :func:`open_storage` is the only factory, and
with the CLI the only code that knows the concrete backends."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from archiver.config import ArchiveConfig
from archiver.storage.base import Canary, Storage, StoredObject, check_key, digest

if TYPE_CHECKING:  # at run time the s3 module, and aiobotocore with it, load only when used
    from archiver.storage.s3 import S3Settings

__all__ = ["Canary", "Storage", "StoredObject", "check_key", "digest", "open_storage"]


def open_storage(cfg: ArchiveConfig) -> Storage:
    """The backend named by ``archive.backend``, built from plain fields; enter it with
    ``async with``."""
    if cfg.backend == "local":
        from archiver.modes import parse_mode
        from archiver.storage.local import LocalStorage

        return LocalStorage(
            cfg.path, file_mode=parse_mode(cfg.file_mode), dir_mode=parse_mode(cfg.dir_mode)
        )
    if cfg.backend == "s3":
        # imported lazily: aiobotocore is only loaded when the s3 backend is used
        s3 = importlib.import_module("archiver.storage.s3")
        storage: Storage = s3.S3Storage(s3_settings(cfg))
        return storage
    raise ValueError(f"unknown backend {cfg.backend!r}")


def s3_settings(cfg: ArchiveConfig) -> S3Settings:
    """``[archive]``'s S3 fields as the plain settings the S3 backend is built from."""
    s3 = importlib.import_module("archiver.storage.s3")
    settings: S3Settings = s3.S3Settings(
        bucket=cfg.bucket,
        prefix=cfg.prefix,
        endpoint_url=cfg.endpoint_url,
        region=cfg.region,
        addressing_style=cfg.addressing_style,
        storage_class=cfg.storage_class,
        sse=cfg.sse,
        kms_key_id=cfg.kms_key_id,
        object_lock_mode=cfg.object_lock_mode,
        retention_days=cfg.retention_days,
        legal_hold=cfg.legal_hold,
        multipart_threshold=cfg.multipart_threshold,
        part_size=cfg.part_size,
        spool_dir=cfg.spool_dir,
        conditional_put=cfg.conditional_put,
        verify_after_put=cfg.verify_after_put,
        # load_config sizes it to the concurrency; an ArchiveConfig built by hand may leave 0
        max_pool_connections=cfg.max_pool_connections or s3.DEFAULT_POOL_CONNECTIONS,
    )
    return settings
