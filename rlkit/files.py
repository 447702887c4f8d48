"""Durable, atomic file writes: a crash or a full disk leaves the old file or the new one, never a mix,
and no partial temporary file behind."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path


def fsync_path(path: Path) -> None:
    """Flush a file's or directory's data and metadata to the disk (a rename is durable only after its
    directory is synced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    for directory, _, files in os.walk(root):
        for name in files:
            fsync_path(Path(directory) / name)
        fsync_path(Path(directory))


def atomic_dir(final: Path, write: Callable[[Path], None]) -> Path:
    """Call write(tmp_dir), sync it, then rename it to `final`. A crash or an error (a full disk) leaves
    no half-written `final` and no partial temporary directory."""
    final = Path(final)
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir(parents=True)
        write(tmp)
        fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a partial copy would keep filling the disk
        raise
    old = final.with_name(final.name + ".old")
    if final.exists():  # keep the previous version until the new one is in place
        if old.exists():
            shutil.rmtree(old)
        os.rename(final, old)
    os.rename(tmp, final)
    fsync_path(final.parent)
    shutil.rmtree(old, ignore_errors=True)
    return final


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a synced temporary file and a rename: readers see the old or the new
    file, never a mix, and an error (a full disk) leaves no temporary file behind."""
    path = Path(path)
    tmp = Path(str(path) + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)
