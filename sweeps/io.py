"""Atomic file output (re-exported from engine.fileio for the CLI layer)."""

from engine.fileio import atomic_write_bytes, atomic_write_text

__all__ = ["atomic_write_bytes", "atomic_write_text"]
