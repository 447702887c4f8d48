"""A memory + pids cgroup for one sandbox run, where the machine lets us make one.

rlimits bound each process (RLIMIT_AS) and the number of processes (RLIMIT_NPROC), so a run's
total memory could still reach processes x memory. A cgroup bounds the run's total, its private
/tmp (tmpfs pages are charged to the writer's cgroup) included, and its process count. Needs write access to
the cgroup hierarchy (root in a container or on a host); cgroup v1 (memory and pids hierarchies) and
v2 (the unified hierarchy, when memory/pids are enabled for our subtree) are both handled. When neither
works the sandbox runs with rlimits alone.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
STALE_AFTER_S = 600  # far longer than any run: a younger one may be a run that is starting
# joins the cgroups named before "--", then becomes the command after it: no window where the
# program runs outside its cgroup
JOIN_SCRIPT = 'while [ "$1" != "--" ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'


def _own_cgroups() -> dict[str, str]:
    """controller (or '' for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    found = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            found[controller] = path
    return found


def _parent_dir(mount: Path, own_path: str) -> Path:
    """Our cgroup's directory: below the mount, or the mount itself when a container mounts its own cgroup as root."""
    candidate = mount / own_path.lstrip("/")
    return candidate if candidate.is_dir() else mount


def _remove_stale(parent: Path) -> None:
    """Empty cgroups of runs whose scorer was killed before it could remove them (rmdir fails on busy ones)."""
    try:
        stale = [d for d in parent.glob("rlkit-sandbox-*") if time.time() - d.stat().st_mtime > STALE_AFTER_S]
    except OSError:
        return
    for directory in stale:
        try:
            directory.rmdir()
        except OSError:
            pass


def _make_child(parent: Path, name: str, settings: dict[str, int]) -> Path | None:
    """Create parent/name and write each setting it has a file for; None when that fails."""
    _remove_stale(parent)
    child = parent / name
    try:
        child.mkdir()
    except OSError:
        return None
    written = 0
    for filename, value in settings.items():
        target = child / filename
        if target.exists():
            try:
                target.write_text(str(value))
                written += 1
            except OSError:
                pass
    if written == 0:
        _remove(child)
        return None
    return child


def _remove(directory: Path, wait_s: float = 2.0) -> None:
    """rmdir once the run's processes are gone (the kernel reaps a killed namespace asynchronously)."""
    deadline = time.monotonic() + wait_s
    pause = 0.001  # usually empty within a few ms of bwrap's exit
    while True:
        try:
            directory.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                return  # still busy: removed by a later run's clean-up (_remove_stale)
            time.sleep(pause)
            pause = min(pause * 2, 0.05)


@dataclass
class RunCgroup:
    directories: list[Path]

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.directories]

    def wrap(self, command: list[str]) -> list[str]:
        """`command`, started inside these cgroups."""
        return ["/bin/sh", "-c", JOIN_SCRIPT, "sh", *self.procs_files, "--", *command]

    def remove(self) -> None:
        for directory in self.directories:
            _remove(directory)


def create_run_cgroup(memory_bytes: int, max_pids: int) -> RunCgroup | None:
    """A fresh cgroup with these limits, or None where this machine does not let us create one."""
    if os.environ.get("RLKIT_SANDBOX_CGROUP", "1") == "0" or not os.path.exists("/bin/sh"):
        return None
    name = f"rlkit-sandbox-{secrets.token_hex(6)}"
    own = _own_cgroups()
    directories: list[Path] = []
    unified = CGROUP_ROOT / "cgroup.controllers"
    if unified.exists():  # cgroup v2 only
        child = _make_child(_parent_dir(CGROUP_ROOT, own.get("", "/")), name, {"memory.max": memory_bytes, "memory.swap.max": 0, "pids.max": max_pids})
        if child is not None:
            directories.append(child)
    else:  # v1: one directory per hierarchy
        for controller, settings in (
            ("memory", {"memory.limit_in_bytes": memory_bytes, "memory.memsw.limit_in_bytes": memory_bytes}),
            ("pids", {"pids.max": max_pids}),
        ):
            mount = CGROUP_ROOT / controller
            if mount.is_dir():
                child = _make_child(_parent_dir(mount, own.get(controller, "/")), name, settings)
                if child is not None:
                    directories.append(child)
    return RunCgroup(directories) if directories else None
