"""Which incomplete multipart uploads a sweep may abort: the S3 backend's registry of its own.

ListMultipartUploads shows no owner we could tell apart, so each process keeps a small
registry, ``archiver-s3-uploads-<pid>.json`` in the spool folder, of the keys it sent a
CreateMultipartUpload for, written before the request. A sweep aborts every upload under the
prefix that no live process of ours owns: those of keys a dead process registered (at any
age: a restart ten seconds after a crash cleans up), those of our own keys whose
CreateMultipartUpload answer may have been lost (the call failed, or botocore retried it: an
earlier attempt may have created an upload nobody knows the id of), and, from owners we cannot
know (another host, an older archiver), those initiated more than ``stale_upload_age`` (one
minute) ago.
Our uploads in flight and the keys a live local archiver registered are never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from archiver.modes import pid_alive
from archiver.storage.rules import writer_pid
from archiver.storage.spool import spool_error, spool_folder

UPLOADS_PREFIX = "archiver-s3-uploads-"  # then "<pid>.json": the keys a process uploads


@dataclass
class SweepPlan:
    """What one sweep knows before it lists the store's uploads."""

    dead: dict[str, bool]  # keys registered by dead processes of ours
    live: set[str]  # keys registered by live ones
    dead_files: list[Path]  # the dead ones' registries, removed once the sweep is done
    suspects: set[str]  # our keys whose CreateMultipartUpload answer may have been lost
    cutoff: datetime  # uploads of unknown owners initiated before this are stale
    in_flight: dict[str, set[str]] = field(default_factory=dict)  # ours, by key: never touched

    def why_abort(self, key: str, upload_id: str, initiated: object) -> str:
        """Why the upload ``upload_id`` of ``key`` is to be aborted ("" when it is not)."""
        if upload_id in self.in_flight.get(key, ()) or key in self.live:
            return ""  # in flight here, or registered by a live archiver
        if key in self.dead:
            return "its process died"
        if key in self.suspects:
            return "its CreateMultipartUpload answer was lost"
        if isinstance(initiated, datetime) and initiated < self.cutoff:
            return "stale"
        return ""


class UploadRegistry:
    """This process's multipart uploads to one store (endpoint, bucket, prefix): the ids in
    flight per full key, and the keys a CreateMultipartUpload was sent for (True: its answer
    may have been lost), mirrored in the registry file."""

    def __init__(self, spool_dir: str, endpoint: str, bucket: str, prefix: str) -> None:
        self.spool_dir = spool_dir
        self.store = (endpoint, bucket, prefix)
        self.live: dict[str, set[str]] = {}
        self.pending: dict[str, bool] = {}

    def path(self) -> Path:
        return spool_folder(self.spool_dir) / f"{UPLOADS_PREFIX}{os.getpid()}.json"

    def creating(self, full: str) -> None:
        """Before a CreateMultipartUpload: if its answer is lost, a sweep still knows the key."""
        self.pending.setdefault(full, False)
        self.save()

    def maybe_lost(self, full: str) -> None:
        """The CreateMultipartUpload failed or was retried: an upload may exist anyway."""
        self.pending[full] = True
        self.save()

    def started(self, full: str, upload_id: str) -> None:
        self.live.setdefault(full, set()).add(upload_id)

    def finished(self, full: str, upload_id: str) -> None:
        """The upload was completed or aborted."""
        self.live[full].discard(upload_id)
        if not self.live[full]:
            del self.live[full]
            if self.pending.get(full) is False:  # no other upload can exist for it
                del self.pending[full]
                self.save()

    def save(self) -> None:
        """Write our registry (a few hundred bytes, once or twice per multipart upload: in the
        event loop, so no cancellation can skip it), or remove it when nothing is pending."""
        path = self.path()
        if not self.pending:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return
        endpoint, bucket, prefix = self.store
        doc = {
            "pid": os.getpid(),
            "endpoint": endpoint,
            "bucket": bucket,
            "prefix": prefix,
            "keys": self.pending,
        }
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, json.dumps(doc).encode())
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            raise spool_error(exc, self.spool_dir) from exc

    async def plan(self, cutoff: datetime) -> SweepPlan:
        """What a sweep starting now may abort, from the other processes' registries."""
        dead, live, files = await asyncio.to_thread(self._others)
        suspects = {key for key, lost in self.pending.items() if lost}
        return SweepPlan(dead, live, files, suspects, cutoff, self.live)

    def _others(self) -> tuple[dict[str, bool], set[str], list[Path]]:
        """From the registries of other processes on this store: the keys of dead ones, those
        of live ones, and the dead ones' files."""
        dead: dict[str, bool] = {}
        live: set[str] = set()
        files: list[Path] = []
        with contextlib.suppress(OSError):
            for path in spool_folder(self.spool_dir).glob(f"{UPLOADS_PREFIX}*.json"):
                pid = writer_pid(path.name, UPLOADS_PREFIX)
                if not pid or pid == os.getpid():
                    continue
                try:
                    doc = json.loads(path.read_text())
                    same = (doc["endpoint"], doc["bucket"], doc["prefix"]) == self.store
                    keys = dict(doc["keys"])
                except (OSError, ValueError, KeyError, TypeError):
                    continue
                if not same:
                    continue
                if pid_alive(pid):
                    live.update(keys)
                else:
                    dead.update(keys)
                    files.append(path)
        return dead, live, files

    def swept(self, plan: SweepPlan) -> None:
        """After the aborts: drop the dead registries and the suspects no upload still uses."""
        for path in plan.dead_files:
            with contextlib.suppress(OSError):
                path.unlink()
        for key in plan.suspects:
            if not self.live.get(key):
                del self.pending[key]
        if plan.suspects:
            self.save()
