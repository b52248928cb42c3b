"""Atomic file output (re-exported from infersweep.fileio for the CLI layer)."""

from infersweep.fileio import atomic_write_bytes, atomic_write_text, check_writable_file

__all__ = ["atomic_write_bytes", "atomic_write_text", "check_writable_file"]
