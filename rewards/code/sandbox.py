"""One program run, isolated: bubblewrap namespaces, a private uid, rlimits, a wall clock, capped output.

What the program gets (and nothing else):
- its own PID, network, IPC, UTS and cgroup namespaces: no network at all (not even the host's loopback),
  no view of host processes, and every process it starts dies with the run (the namespace's init exits
  when the program does, or when we kill bwrap on a timeout; that also ends daemons);
- read-only views of /usr and of the Python installation; its files read-only at /sandbox; a private
  size-capped tmpfs at /tmp (the only writable place, also its HOME and working directory); no /proc;
- a scrubbed environment (PATH, HOME, LANG and single-threaded BLAS settings);
- rlimits: address space (memory), CPU seconds, processes, file size, open files, no core dumps;
- a wall-clock limit and a cap on stdout/stderr; past either the whole run is killed.
- where the machine allows (root, a writable cgroup hierarchy), a cgroup capping the run's total memory
  and process count (cgroup.py).

Process limit: RLIMIT_NPROC counts processes per real uid and is not enforced for root. Run as root
(the usual case in containers and CI), each run gets its own never-used uid (setpriv inside the
sandbox), so the limit applies to that run alone and a fork bomb in one run cannot starve another.
Run as another user, bwrap creates a user namespace, where the kernel counts the run's processes
separately from the user's others.
"""

from __future__ import annotations

import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rlkit.errors import RlkitError
from rlkit.rewards.code.cgroup import create_run_cgroup

INSTALL_HINT = "run scripts/install_sandbox.sh (installs the Debian/Ubuntu 'bubblewrap' package) or install bubblewrap yourself"
SANDBOX_DIR = "/sandbox"  # where the run's files are mounted, read-only
# uids for runs as root: far above any real account; one random uid per run keeps RLIMIT_NPROC per run
RUN_UID_RANGE = (1_000_000, 2_000_000_000)


class SandboxUnavailableError(RlkitError):
    """bubblewrap (or a tool the sandbox needs) is missing or cannot create namespaces here."""


@dataclass(frozen=True)
class SandboxLimits:
    wall_s: float = 10.0  # wall clock for the program, from the moment bwrap has started it
    setup_s: float = 10.0  # for bwrap to build the namespaces (seconds on a loaded machine, now and then)
    cpu_s: int = 10  # RLIMIT_CPU per process
    memory_bytes: int = 1 << 30  # RLIMIT_AS per process
    processes: int = 16  # RLIMIT_NPROC: processes and threads of the run
    file_bytes: int = 16 << 20  # RLIMIT_FSIZE: largest file the program may write
    tmp_bytes: int = 64 << 20  # size of the private /tmp
    output_bytes: int = 1 << 20  # cap on stdout and on stderr, each; past it the run is killed
    open_files: int = 256
    cgroup: bool = True  # also cap the run's total memory (+ /tmp) and processes with a cgroup, where one can be made


@dataclass
class SandboxResult:
    exit_code: int | None  # None when the run was killed (timeout or output cap)
    stdout: bytes
    stderr: bytes
    timed_out: bool
    output_exceeded: bool
    wall_s: float
    cgroup: bool = False  # whether a cgroup bounded the run (see cgroup.py)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.output_exceeded


def find_tool(name: str) -> str:
    path = shutil.which(name) or next((p for p in (f"/usr/bin/{name}", f"/bin/{name}") if os.access(p, os.X_OK)), None)
    if path is None:
        what = "bubblewrap (bwrap)" if name == "bwrap" else f"'{name}' (util-linux)"
        raise SandboxUnavailableError(f"the code sandbox needs {what}, which is not installed: {INSTALL_HINT}")
    return path


def require_sandbox() -> None:
    """Raise SandboxUnavailableError with an install hint when this machine cannot run the sandbox."""
    find_tool("bwrap")
    find_tool("prlimit")
    if os.geteuid() == 0:
        find_tool("setpriv")


def _python_mounts(python: str) -> list[str]:
    """Directories a Python interpreter needs: its installation, the venv, their real locations."""
    dirs = {sys.base_prefix, sys.prefix, str(Path(python).resolve().parent.parent), str(Path(python).parent.parent)}
    # /usr is mounted whole; "/" would expose the host
    return sorted(d for d in dirs if d not in ("", "/", "/usr") and not d.startswith("/usr/") and Path(d).is_dir())


def _mount_args(python: str, files_dir: str, tmp_bytes: int) -> list[str]:
    args: list[str] = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):  # merged /usr: keep the symlink
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    if os.path.isfile("/etc/ld.so.cache"):
        args += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    args += ["--ro-bind", files_dir, SANDBOX_DIR, "--dev", "/dev"]
    # the private /tmp comes before the Python mounts: bwrap mounts in order, so an interpreter that lives
    # under /tmp (CI workspaces, throw-away venvs) is bound read-only on top of the tmpfs instead of hidden by it
    args += ["--size", str(tmp_bytes), "--perms", "1777", "--tmpfs", "/tmp"]
    made: set[str] = {"/tmp"}  # the tmpfs keeps its 1777
    for directory in _python_mounts(python):
        # bwrap would create missing parents with mode 0700, unreadable to the run's uid
        parents = list(Path(directory).parents)[::-1][1:]
        for parent in parents:
            if str(parent) not in made:
                made.add(str(parent))
                args += ["--perms", "0755", "--dir", str(parent)]
        args += ["--ro-bind", directory, directory]
    return args


def build_command(
    python: str, entry: str, files_dir: str, limits: SandboxLimits, argv: list[str], python_flags: tuple[str, ...] = ("-I",),
    status_fd: int | None = None,
) -> list[str]:
    """The bwrap command line for one run (exposed for tests and for debugging by hand)."""
    as_root = os.geteuid() == 0
    cmd = [find_tool("bwrap"), "--die-with-parent", "--new-session"]
    if status_fd is not None:  # bwrap reports there when the program has been started
        cmd += ["--json-status-fd", str(status_fd)]
    cmd += ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if not as_root:
        cmd += ["--unshare-user", "--disable-userns"]
    cmd += _mount_args(python, files_dir, limits.tmp_bytes)
    cmd += ["--clearenv", "--chdir", "/tmp"]
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8",
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for key, value in env.items():
        cmd += ["--setenv", key, value]
    if as_root:
        # the drop to a fresh uid happens inside: bwrap needs root to mount, the program must not be root
        cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--"]
        uid = str(secrets.SystemRandom().randrange(*RUN_UID_RANGE))
        cmd += [find_tool("setpriv"), "--reuid", uid, "--regid", uid, "--clear-groups", "--no-new-privs",
                "--bounding-set=-all", "--inh-caps=-all"]
    else:
        cmd += ["--"]
    cmd += [find_tool("prlimit"), f"--as={limits.memory_bytes}", f"--cpu={limits.cpu_s}",
            f"--nproc={limits.processes}", f"--fsize={limits.file_bytes}", f"--nofile={limits.open_files}",
            "--core=0", "--"]
    cmd += [python, *python_flags, f"{SANDBOX_DIR}/{entry}", *argv]
    return cmd


def _feed_stdin(pipe, data: bytes) -> None:
    try:
        if data:
            pipe.write(data)
    except (BrokenPipeError, OSError):
        pass  # the program did not read its input, or was killed
    finally:
        try:
            pipe.close()
        except OSError:
            pass


def _kill(proc: subprocess.Popen) -> None:
    """Kill bwrap's process group; --die-with-parent then kills the namespace's init, and with it every process."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_python(
    files: dict[str, str | bytes],
    entry: str,
    stdin: bytes = b"",
    limits: SandboxLimits | None = None,
    argv: list[str] | None = None,
    python: str | None = None,
    python_flags: tuple[str, ...] = ("-I",),
) -> SandboxResult:
    """Run `python -I /sandbox/<entry>` in the sandbox, with `files` mounted read-only at /sandbox.
    (`python_flags=("-I", "-S")` starts 3x faster: no site-packages .pth processing.)

    The caller's process is never at risk: whatever the program does, this returns within about
    `limits.wall_s` seconds, with at most `limits.output_bytes` of each stream.
    """
    limits = limits or SandboxLimits()
    python = python or sys.executable
    if entry not in files:
        raise ValueError(f"entry {entry!r} is not one of the files {sorted(files)}")
    with tempfile.TemporaryDirectory(prefix="rlkit-sandbox-") as files_dir:
        os.chmod(files_dir, 0o755)  # readable by the run's uid, read-only by the mount
        for name, content in files.items():
            if "/" in name or name.startswith("."):
                raise ValueError(f"sandbox file names are plain names, got {name!r}")
            path = Path(files_dir) / name
            path.write_bytes(content.encode() if isinstance(content, str) else content)
            path.chmod(0o644)
        status_read, status_write = os.pipe()
        # the run's total: every process's memory plus its tmpfs; bwrap's own two processes besides the program's
        cgroup = create_run_cgroup(limits.memory_bytes + limits.tmp_bytes, limits.processes + 2) if limits.cgroup else None
        try:
            cmd = build_command(python, entry, files_dir, limits, argv or [], python_flags, status_write)
            result = _run(cgroup.wrap(cmd) if cgroup else cmd, stdin, limits, status_read, status_write)
            if cgroup is not None and result.exit_code == 125 and b"cgroup.procs" in result.stderr:
                raise SandboxUnavailableError(f"cannot join the run's cgroup ({result.stderr.decode(errors='replace').strip()}); "
                                              "set RLKIT_SANDBOX_CGROUP=0 to run with rlimits alone")
            result.cgroup = cgroup is not None
            return result
        finally:
            if cgroup is not None:
                cgroup.remove()
            for fd in (status_read, status_write):
                try:
                    os.close(fd)
                except OSError:
                    pass  # closed already


def _run(cmd: list[str], stdin: bytes, limits: SandboxLimits, status_read: int, status_write: int) -> SandboxResult:
    started = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, close_fds=True, pass_fds=(status_write,))
    except OSError as err:
        raise SandboxUnavailableError(f"cannot start the sandbox ({cmd[0]}): {err}; {INSTALL_HINT}") from None
    os.close(status_write)  # bwrap holds it now; EOF or data on status_read tells us it got going
    feeder = threading.Thread(target=_feed_stdin, args=(proc.stdin, stdin), daemon=True)
    feeder.start()
    out = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    timed_out = exceeded = False
    # the program's clock starts when bwrap reports it running: namespace set-up (network namespaces
    # especially) now and then takes seconds on a loaded machine, and must not fail a correct program
    deadline = started + limits.setup_s + limits.wall_s
    with selectors.DefaultSelector() as selector:
        for stream in out:
            os.set_blocking(stream.fileno(), False)
            selector.register(stream, selectors.EVENT_READ)
        selector.register(status_read, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            for key, _ in selector.select(timeout=min(remaining, 0.5)):
                if key.fileobj == status_read:  # started (data) or bwrap gone (EOF): the wall clock runs
                    selector.unregister(status_read)
                    deadline = min(deadline, time.monotonic() + limits.wall_s)
                    continue
                chunk = os.read(key.fileobj.fileno(), 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                buffer = out[key.fileobj]
                buffer += chunk[: limits.output_bytes + 1 - len(buffer)]
                if len(buffer) > limits.output_bytes:
                    exceeded = True
            if exceeded:
                break
    if timed_out or exceeded:
        _kill(proc)
    try:
        exit_code = proc.wait(timeout=max(deadline - time.monotonic(), 0) + 5)
    except subprocess.TimeoutExpired:  # output closed but bwrap lingers
        timed_out = True
        _kill(proc)
        exit_code = proc.wait()
    feeder.join(timeout=1)
    for stream in out:
        stream.close()
    if exit_code == 1 and not out[proc.stdout] and out[proc.stderr].startswith(b"bwrap:"):
        raise SandboxUnavailableError(f"bubblewrap could not create the sandbox: {out[proc.stderr].decode(errors='replace').strip()}")
    killed = timed_out or exceeded
    return SandboxResult(
        exit_code=None if killed else exit_code,
        stdout=bytes(out[proc.stdout][: limits.output_bytes]),
        stderr=bytes(out[proc.stderr][: limits.output_bytes]),
        timed_out=timed_out,
        output_exceeded=exceeded,
        wall_s=time.monotonic() - started,
    )
