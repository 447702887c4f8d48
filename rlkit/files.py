"""Durable, atomic file writes: a crash or a full disk leaves the old file or the new one, never a mix,
and no partial temporary file behind."""

from __future__ import annotations

import errno
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


# how libraries that do not raise OSError report a full disk (safetensors: "I/O error: No space left on
# device (os error 28)"; torch.save: "basic_ios::clear" or "file write failed")
NO_SPACE_MESSAGES = (os.strerror(errno.ENOSPC), f"os error {errno.ENOSPC}")


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
    except BaseException as err:
        full = isinstance(err, Exception) and (disk_full(tmp) or any(m in str(err) for m in NO_SPACE_MESSAGES))
        shutil.rmtree(tmp, ignore_errors=True)  # a partial copy would keep filling the disk
        if isinstance(err, OSError) and err.errno is not None:
            raise OSError(err.errno, err.strerror, str(final)) from err  # name what was being written, not the .tmp
        if full:  # torch.save says 'basic_ios::clear' or 'file write failed', safetensors its own words
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(final)) from err
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


def disk_full(path: Path, margin: int = 1 << 20) -> bool:
    """Whether the file system holding `path` (or its nearest existing parent) has less than `margin` bytes left."""
    for candidate in (Path(path), *Path(path).parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free < margin
    return False


def describe_os_error(err: OSError) -> str:
    """One line naming the path and the cause: 'cannot write runs/x: No space left on device'."""
    where = f"{err.filename}" + (f" -> {err.filename2}" if err.filename2 else "")
    return f"cannot write {where}: {err.strerror or err}" if err.filename else f"{err.strerror or err}"


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


def missing_model_dir(value: str) -> str | None:
    """Why `value`, meant as a model, names a local directory that is not there (None when it exists or reads as a
    Hugging Face hub id). A hub id is 'name' or 'org/name'; a value with more parts, a leading '.', '/' or '~',
    a trailing '/', or whose first part is a local directory is a path, and a typo in it deserves
    'directory not found' rather than the hub's 'not a valid repository id'."""
    path = Path(value).expanduser()
    if value == "tiny" or path.is_dir():
        return None
    parts = Path(value).parts
    looks_local = value.startswith((".", "/", "~")) or value.endswith("/") or len(parts) > 2 or Path(parts[0]).is_dir()
    if not looks_local:
        return None
    parent = next((p for p in path.parents if p.is_dir()), None)
    if path.exists():
        return f"{value} is a file, not a model directory"
    if parent is None or str(parent) in (".", "/"):
        return f"directory not found: {value}"
    entries = sorted(p.name for p in parent.iterdir() if p.is_dir())
    shown = ", ".join(entries[:8]) + (", ..." if len(entries) > 8 else "")
    return f"directory not found: {value} ({parent} holds: {shown or 'no directories'})"
