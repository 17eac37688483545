"""Archive backends behind one small interface; :func:`open_storage` is the only factory."""

from __future__ import annotations

import importlib

from archiver.config import ArchiveConfig
from archiver.storage.base import Storage, StoredObject, check_key, digest

__all__ = ["Storage", "StoredObject", "check_key", "digest", "open_storage"]


def open_storage(cfg: ArchiveConfig) -> Storage:
    """The backend named by ``archive.backend``; enter it with ``async with``."""
    if cfg.backend == "local":
        from archiver.modes import parse_mode
        from archiver.storage.local import LocalStorage

        return LocalStorage(
            cfg.path, file_mode=parse_mode(cfg.file_mode), dir_mode=parse_mode(cfg.dir_mode)
        )
    if cfg.backend == "s3":
        # imported lazily: aiobotocore is only loaded when the s3 backend is used
        s3 = importlib.import_module("archiver.storage.s3")
        storage: Storage = s3.S3Storage(cfg)
        return storage
    raise ValueError(f"unknown backend {cfg.backend!r}")
