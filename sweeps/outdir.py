"""The result folder of a sweep: one writer at a time, no stray files, and what its chunks
were computed from.

- ``OutLock``: an exclusive ``fcntl.flock`` on ``OUT/.lock`` held for the whole run; a second
  sweep into the same folder refuses at once (whatever its spec or ``--force``).
- ``clean_stray``: under the lock, temporary files of a killed run (``.result.parquet.tmp-*``,
  half-written chunk files, ``.write-test``) can only be leftovers, and are removed.
- ``input_digests``: a content digest of every input file the points read (hardware configs,
  model configs, bench-data folders, traces) and the engine version, recorded in the manifest;
  a resumed sweep recomputes the chunks whose points use an input that changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from infersweep.errors import ConfigError

LOCK = ".lock"


class OutLock:
    """``with OutLock(out):`` holds an exclusive lock on the result folder ``out``."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self._fd: int | None = None

    def __enter__(self) -> OutLock:
        import fcntl

        path = self.out / LOCK
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the lock file ({exc.strerror})", file=path, field="--out"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                holder = os.pread(fd, 64, 0).decode().strip()
            os.close(fd)
            raise ConfigError(
                "the output folder is in use by another sweep"
                + (f" (process {holder})" if holder else ""),
                file=self.out,
                field="--out",
                hint="wait for it to finish, or give another --out",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing releases the flock
            self._fd = None


def clean_stray(out: Path) -> list[Path]:
    """Remove the temporary files a killed run left in ``out`` (call under the lock)."""
    removed = []
    patterns = [".result.parquet.tmp-*", ".instances.parquet.tmp-*", ".write-test", ".*.tmp"]
    folders = [out, out / "chunks"]
    pr = out / "per_request"
    if pr.is_dir():
        folders += [p for p in pr.iterdir() if p.is_dir()]
    for folder in folders:
        if not folder.is_dir():
            continue
        for pat in patterns:
            for p in folder.glob(pat):
                if p.is_file() and p.name != LOCK:
                    with contextlib.suppress(OSError):
                        p.unlink()
                        removed.append(p)
    return removed


# --------------------------------------------------------------------------------------------
# input digests
# --------------------------------------------------------------------------------------------

_FILE_DIGESTS: dict[tuple, str] = {}


def _file_digest(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    d = _FILE_DIGESTS.get(key)
    if d is None:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        d = _FILE_DIGESTS[key] = h.hexdigest()[:16]
    return d


def _folder_digest(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(path)).encode() + b"\0" + _file_digest(p).encode() + b"\0")
    return h.hexdigest()[:16]


def point_inputs(s: dict) -> tuple[str, ...]:
    """The input ids a point's result depends on (``kind:absolute path``)."""
    from infersweep.config.catalog import (
        resolve_bench_dir,
        resolve_hardware_file,
        resolve_model_folder,
    )

    ids = [
        "hardware_config:" + str(resolve_hardware_file(s["hardware_config"]).resolve()),
        "model_config:"
        + str(
            (resolve_model_folder(s["model"], s["model_config_folder"]) / "config.json").resolve()
        ),
    ]
    if s.get("step_model") != "v1":
        ids.append("bench_data:" + str(resolve_bench_dir(s["bench_data"]).resolve()))
    if s.get("workload") == "traces" and s.get("trace"):
        ids.append("trace:" + str(Path(s["trace"]).expanduser().resolve()))
    return tuple(ids)


def digest_of(input_id: str) -> str:
    kind, _, path = input_id.partition(":")
    p = Path(path)
    try:
        return _folder_digest(p) if kind == "bench_data" else _file_digest(p)
    except OSError:
        return "missing"


#: the settings a point's inputs depend on
INPUT_SETTINGS = (
    "hardware_config",
    "model",
    "model_config_folder",
    "bench_data",
    "step_model",
    "workload",
    "trace",
)


def spec_inputs(spec) -> dict[str, str]:
    """Every input id of a sweep's points -> its content digest (axes that name inputs are
    crossed; other axes do not change which files are read)."""
    import itertools

    base = spec.point(0)
    axes = {k: v for k, v in spec.axes.items() if k in INPUT_SETTINGS}
    ids: set[str] = set()
    for combo in itertools.product(*axes.values()):
        s = {**base, **dict(zip(axes, combo))}
        try:
            ids.update(point_inputs(s))
        except ConfigError:
            continue  # an invalid point reads nothing
    return {i: digest_of(i) for i in sorted(ids)}


def changed_inputs(old: dict | None, new: dict[str, str]) -> list[str]:
    """Input ids whose digest differs from the manifest's (all, when it recorded none)."""
    if old is None:
        return []
    return [i for i, d in new.items() if old.get(i) != d]


def chunks_using(spec, changed: list[str], chunks: list[int], span) -> set[int]:
    """The chunks (of ``chunks``) holding a point that reads one of the ``changed`` inputs."""
    if not changed:
        return set()
    changed_set = set(changed)
    axes = [k for k in spec.axes if k in INPUT_SETTINGS]
    if not axes:  # every point reads the same inputs
        return set(chunks)
    hit = set()
    memo: dict[tuple, bool] = {}
    for c in chunks:
        a, b = span(c)
        for i in range(a, b):
            s = spec.point(i)
            key = tuple(s[k] for k in INPUT_SETTINGS)
            uses = memo.get(key)
            if uses is None:
                try:
                    uses = bool(changed_set.intersection(point_inputs(s)))
                except ConfigError:
                    uses = False
                memo[key] = uses
            if uses:
                hit.add(c)
                break
    return hit
