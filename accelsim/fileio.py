"""Atomic file writes: a reader never sees a half-written output, even after a crash or Ctrl-C."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from accelsim.errors import InputError

TMP_SUFFIX = ".tmp"


def tmp_path(path: Path) -> Path:
    """Temporary sibling used while writing ``path``: ``NAME.<pid>.tmp``."""
    return path.with_name(f"{path.name}.{os.getpid()}{TMP_SUFFIX}")


def fsync_dir(folder: Path) -> None:
    """Make renames inside ``folder`` durable (no-op where directories cannot be opened)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` all or nothing: temp file, fsync, ``os.replace``, fsync dir."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Atomically write UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Atomically write indented, key-sorted JSON (deterministic bytes)."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def check_output_dir(path: str | Path, option: str = "--out") -> None:
    """Raise InputError unless ``path`` is a directory accelsim can write into, or can create:
    checked before any work, so a run never ends on an unwritable output. Writing is proven by
    creating (and removing) a probe directory in ``path``, or in its nearest existing parent
    when ``path`` does not exist yet; nothing is left behind."""
    where = f"{option} {path}"
    if not str(path):
        raise InputError("is empty (give a directory; '.' for the current one)", path=where)
    path = Path(path)
    try:
        existing = path
        while not os.path.lexists(existing) and existing.parent != existing:
            existing = existing.parent
        if existing.is_symlink() and not existing.exists():  # dangling, or a link loop
            kind = "loop" if _stat_errno(existing) == errno.ELOOP else "to nothing"
            name = "" if existing == path else f"{existing} "
            raise InputError(f"{name}is a symbolic link {kind}", path=where)
        if not existing.is_dir():
            raise InputError("exists and is not a directory" if existing == path else
                             f"cannot be created: {existing} is not a directory", path=where)
    except OSError as error:  # the path itself cannot be looked at
        raise InputError(f"cannot be looked up ({error.strerror or error})", path=where) from None
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".accelsim-probe-", dir=existing))
    except OSError as error:
        raise InputError(f"cannot write in {existing} ({error.strerror or error})",
                         path=where) from None
    if existing != path:  # the first missing directory's name must be one the system takes
        first = existing / path.relative_to(existing).parts[0]
        try:
            os.mkdir(first)
            os.rmdir(first)
        except OSError as error:
            raise InputError(f"cannot be created ({error.strerror or error})",
                             path=where) from None


def _stat_errno(path: Path) -> int | None:
    """The errno of ``stat(path)``, or None when it succeeds."""
    try:
        path.stat()
    except OSError as error:
        return error.errno
    return None
