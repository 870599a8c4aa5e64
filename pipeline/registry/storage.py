"""Durable, atomic file operations and the registry's inter-process lock.

Everything a reader can see is either absent or complete: files are written to
a temporary name, fsynced, then renamed into place, and the directory entry is
fsynced too so the rename survives a power cut.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

TEMP_PREFIX = ".tmp-"


@contextlib.contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created if missing) for the block.

    The lock is released by the kernel if the process dies, so a crashed writer
    never wedges the registry.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file and fsync it."""
    with open(path, "xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    """Persist a directory's entries (creations, renames) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data``: readers see the old or the new file, never a mix."""
    fd, temp_name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}-", dir=path.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def append_line(path: Path, line: str) -> None:
    """Append one line to a log file and fsync it."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line.rstrip("\n") + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def dumps_json(value: Any, *, indent: int | None = 2) -> str:
    """JSON text for metadata; numpy scalars, paths and datetimes become plain JSON."""
    return json.dumps(value, indent=indent, default=_json_default, allow_nan=True)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def utc_now() -> str:
    """The current time as an ISO-8601 UTC string with milliseconds."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _json_default(value: Any) -> Any:
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return tolist()
    if isinstance(value, dt.date):  # also datetime and pandas.Timestamp
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"value of type {type(value).__name__} is not JSON serializable")


def loads_json(text: str) -> Any:
    return json.loads(text)
