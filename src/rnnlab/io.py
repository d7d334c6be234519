"""Atomic file writes: a reader (or a crash) never sees a half-written checkpoint or config."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write through ``write(file)`` to a temporary file beside ``path``, fsync it, then rename it
    over ``path`` (atomic on POSIX) and fsync the directory so the rename itself survives a crash."""
    path = Path(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # permission denied, no such directory: name the file the user asked for
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except OSError as exc:  # disk full while writing: the old file is intact, the temporary one goes
        Path(tmp_name).unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # some filesystems do not open directories; the data itself is already synced
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class _WriteErrors:
    """A file handle that remembers the OSError of a failed write: torch.save wraps it in a RuntimeError that names
    neither the file nor the cause (a full disk), so the original is raised instead."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle, self.error = handle, None

    def write(self, data: Any) -> int:
        try:
            return self.handle.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.handle.flush()


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save, atomically, streamed to the file; a write error stays an OSError that names the path."""
    def write(handle: IO[bytes]) -> None:
        tracked = _WriteErrors(handle)
        try:
            torch.save(obj, tracked)
        except RuntimeError:
            if tracked.error is not None:
                raise tracked.error from None
            raise

    atomic_write(path, write)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def finite_or_null(value: Any) -> Any:
    """Strict JSON has no NaN or Infinity (JavaScript's JSON.parse and jq reject them): a number that is not
    finite (a diverged loss, a norm that overflowed) is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    return value


def strict_json(value: Any, **options: Any) -> str:
    """json.dumps that never writes NaN / Infinity (they become null): every JSON rnnlab writes goes through it."""
    return json.dumps(finite_or_null(value), allow_nan=False, **options)
