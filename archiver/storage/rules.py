"""Rules every backend keeps, written once above the interface; each backend supplies only the
primitive it needs (how to read what a key holds, where its temp files live).

* The idempotent put (:func:`same_or_conflict`): a key that already holds the same bytes is a
  no-op; different bytes raise ArchiveConflict naming both checksums. ``put(replace=True)``
  (sidecars only) never asks.
* Dead writers' leftovers (:func:`temp_name`, :func:`writer_pid`, :func:`dead_writers`): every
  temp file, spool file or registry a process leaves is named with its PID right after a fixed
  prefix, so a sweep removes those of processes that died and never those of live ones.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
from pathlib import Path

import structlog

from archiver.errors import ArchiveConflict
from archiver.modes import pid_alive
from archiver.storage.base import StoredObject

log = structlog.get_logger("archiver.storage")

# after the pid: a per-process token and a counter, which spares an os.urandom call per name
_TOKEN = secrets.token_hex(4)
_serial = itertools.count()


def same_or_conflict(where: str, held: StoredObject, new: StoredObject) -> None:
    """Return when ``held`` (what the key holds) is ``new``'s bytes: the put is a no-op. Else
    raise ArchiveConflict naming both checksums (``held.sha256`` "" when the store has none)."""
    if (held.size, held.sha256) == (new.size, new.sha256):
        return
    raise ArchiveConflict(
        f"{where} already holds different bytes "
        f"(sha256 {held.sha256 or 'unknown'}, {held.size} bytes); refusing to "
        f"overwrite with sha256 {new.sha256}, {new.size} bytes"
    )


def temp_name(prefix: str, suffix: str) -> str:
    """A new name for a temp file of this process: ``<prefix><pid>-<token><n><suffix>``."""
    return f"{prefix}{os.getpid()}-{_TOKEN}{next(_serial)}{suffix}"


def writer_pid(name: str, prefix: str) -> int:
    """The PID a file named ``<prefix><pid>-…`` or ``<prefix><pid>.…`` carries; 0 if none."""
    if not name.startswith(prefix):
        return 0
    rest = name[len(prefix) :]
    digits = rest.split("-", 1)[0].split(".", 1)[0]
    return int(digits) if digits.isdigit() else 0


def dead_writers(folder: Path, prefix: str, suffix: str = "") -> list[tuple[Path, int]]:
    """The files in ``folder`` named ``<prefix><pid>…<suffix>`` by a process that is gone
    (never this one), each with that PID. An unreadable folder lists nothing."""
    found: list[tuple[Path, int]] = []
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if not entry.name.endswith(suffix):
                continue
            pid = writer_pid(entry.name, prefix)
            if pid and pid != os.getpid() and not pid_alive(pid):
                found.append((Path(entry.path), pid))
    return found


def remove_leftover(path: Path, event: str, shown: str) -> bool:
    """Remove what a dead writer left at ``path``, logging ``event`` with ``file=shown``;
    False when it could not (the next sweep tries again)."""
    try:
        path.unlink()
    except OSError:
        return False
    log.info(event, file=shown)
    return True
