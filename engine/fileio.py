"""Atomic file output: write to a temporary file in the same folder, then rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from infersweep.errors import ConfigError


def _prepare(path: Path) -> Path:
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the output folder ({exc.strerror})", file=parent
        ) from None
    if path.is_dir():
        raise ConfigError("is a folder; expected a file path", file=path)
    return parent


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    parent = _prepare(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise ConfigError(
            f"cannot write to the output folder ({exc.strerror})", file=parent
        ) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def check_writable_file(path: str | os.PathLike) -> None:
    """Fail now, not after the work, when ``path`` cannot be written: its folder cannot be
    made or is not writable, or the path is a folder.  Creates the folder, writes nothing."""
    path = Path(path)
    parent = _prepare(path)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError("cannot write to the output folder (permission denied)", file=parent)
    if path.exists() and not os.access(path, os.W_OK) and not os.access(parent, os.W_OK):
        raise ConfigError("cannot overwrite the file (permission denied)", file=path)
