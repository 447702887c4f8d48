"""The sandbox itself, with raw programs (no test runner, no audit hook): each attack is contained by the
kernel-level mechanisms (namespaces, per-run uid, rlimits, wall clock, output cap) and the host is untouched.

These need bubblewrap: without it they fail with SandboxUnavailableError naming scripts/install_sandbox.sh.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

import pytest

from rlkit.rewards.code import sandbox
from rlkit.rewards.code.sandbox import RUN_UID_RANGE, SandboxLimits, SandboxUnavailableError, run_python

pytestmark = pytest.mark.sandbox

FAST = SandboxLimits(wall_s=3.0, cpu_s=3)


def run(source: str, limits: SandboxLimits = FAST, stdin: bytes = b"") -> sandbox.SandboxResult:
    return run_python({"main.py": source}, "main.py", stdin=stdin, limits=limits)


def leftover_processes(token: str | None = None) -> list[int]:
    """Host processes that belong to a sandbox run (their uid is a run uid) or carry `token` on their command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
        if (os.geteuid() == 0 and RUN_UID_RANGE[0] <= uid < RUN_UID_RANGE[1]) or (token and token in cmdline):
            found.append(int(entry.name))
    return found


def wait_for_no_leftovers(token: str | None = None, seconds: float = 3.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := leftover_processes(token)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_normal_program_runs_with_its_input_and_a_private_identity():
    result = run("import os, sys\nprint(sys.stdin.read().upper(), os.getuid() != 0, os.getcwd())", stdin=b"hello")
    assert result.ok
    assert result.stdout.decode().split() == ["HELLO", "True", "/tmp"]


def test_missing_bubblewrap_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    monkeypatch.setattr(sandbox.os, "access", lambda path, mode: False)
    with pytest.raises(SandboxUnavailableError, match=r"bubblewrap \(bwrap\).*scripts/install_sandbox.sh"):
        run("print(1)")


def test_fork_bomb_is_capped_and_leaves_nothing_behind():
    started = time.monotonic()
    result = run("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
                 SandboxLimits(wall_s=2.0, cpu_s=2, processes=8))
    assert not result.ok and time.monotonic() - started < 6
    assert wait_for_no_leftovers() == []
    assert run("print('alive')").stdout == b"alive\n"  # the next run is not starved of processes


def test_memory_bomb_hits_the_address_space_limit():
    result = run("x = bytearray(4 << 30)\nprint('allocated')", SandboxLimits(wall_s=5.0, memory_bytes=512 << 20))
    assert not result.ok and b"allocated" not in result.stdout and b"MemoryError" in result.stderr


MANY_CHILDREN_EACH_UNDER_THE_RLIMIT = """
import os, time
children = []
for _ in range(6):
    pid = os.fork()
    if pid == 0:
        block = b"x" * (150 << 20)  # under RLIMIT_AS (256 MiB) for each process; 900 MiB together
        time.sleep(1.5)
        os._exit(0)
    children.append(pid)
print([os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children])
"""


def test_the_runs_total_memory_is_capped_by_its_cgroup(monkeypatch):
    made = []  # this run's cgroups only: other sandbox runs on the machine (other tests, other users) make their own

    def create_and_record(memory_bytes: int, max_pids: int):  # the real function, its result kept
        cgroup = sandbox_create_run_cgroup(memory_bytes, max_pids)
        made.append(cgroup)
        return cgroup

    sandbox_create_run_cgroup = sandbox.create_run_cgroup
    monkeypatch.setattr(sandbox, "create_run_cgroup", create_and_record)
    limits = SandboxLimits(wall_s=8.0, memory_bytes=256 << 20)
    result = run(MANY_CHILDREN_EACH_UNDER_THE_RLIMIT, limits)
    if not result.cgroup:
        pytest.skip("this machine does not let the sandbox create a cgroup: rlimits alone bound memory per process")
    codes = eval(result.stdout)
    assert codes.count(-9) >= 3 and codes.count(0) <= 3  # 320 MiB (memory + /tmp) holds two 150 MiB children
    [cgroup] = made
    assert cgroup.directories and all(d.name.startswith("rlkit-sandbox-") for d in cgroup.directories)
    assert not any(d.exists() for d in cgroup.directories)  # removed after the run
    without = run(MANY_CHILDREN_EACH_UNDER_THE_RLIMIT, SandboxLimits(wall_s=8.0, memory_bytes=256 << 20, cgroup=False))
    assert eval(without.stdout) == [0] * 6


def test_busy_loop_is_killed_at_the_deadline():
    started = time.monotonic()
    result = run("while True:\n    pass", SandboxLimits(wall_s=1.5, cpu_s=1))
    assert not result.ok and time.monotonic() - started < 4
    assert result.timed_out or result.exit_code != 0  # the CPU limit (SIGXCPU) or the wall clock, whichever first


def test_sleep_forever_is_killed_at_the_wall_clock():
    started = time.monotonic()
    result = run("import time\ntime.sleep(10**6)", SandboxLimits(wall_s=1.0))
    assert result.timed_out and result.exit_code is None and time.monotonic() - started < 3


def test_no_connection_reaches_a_loopback_listener():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        result = run(
            "import socket\n"
            f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=1); print('connected')\n"
            "except OSError as e:\n    print('refused', e)\n"
        )
        assert b"connected" not in result.stdout and b"refused" in result.stdout
        with pytest.raises(socket.timeout):
            listener.accept()


def test_writes_outside_the_private_tmp_do_not_reach_the_host(tmp_path):
    targets = [tmp_path / "pwned", Path.cwd() / "pwned_by_sandbox", Path("/usr/pwned_by_sandbox"), Path(sandbox.sys.prefix) / "pwned"]
    source = "import os\nfor path in %r:\n" % [str(t) for t in targets] + (
        "    try:\n        os.makedirs(os.path.dirname(path), exist_ok=True)\n        open(path, 'w').write('x'); print('wrote', path)\n"
        "    except OSError as e:\n        print('denied', path, e.strerror)\n"
        "open('/tmp/inside', 'w').write('ok'); print('tmp ok')\n"
    )
    result = run(source)
    assert result.ok and b"tmp ok" in result.stdout
    for target in targets:
        assert not target.exists(), f"the sandbox wrote {target} on the host"


def test_killing_the_parent_does_not_reach_the_scorer():
    result = run("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.kill(-1, signal.SIGKILL)\nprint('after')")
    assert result.exit_code != 0 or b"after" in result.stdout  # whatever happened inside, it stayed inside
    assert run("print('alive')").stdout == b"alive\n"


def test_a_gigabyte_to_stdout_is_cut_off_early():
    started = time.monotonic()
    result = run("import sys\nblock = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(block)\n",
                 SandboxLimits(wall_s=20.0, output_bytes=1 << 20))
    assert result.output_exceeded and result.exit_code is None
    assert len(result.stdout) == 1 << 20 and time.monotonic() - started < 5


def test_a_daemon_dies_with_the_run():
    token = uuid.uuid4().hex
    source = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(2); print(\"MARKER\", flush=True)  # {token}'])\n"
        "    os._exit(0)\n"
        "time.sleep(0.3)\n"
        "print('parent done')\n"
    )
    started = time.monotonic()
    result = run(source, SandboxLimits(wall_s=8.0))
    assert result.ok and time.monotonic() - started < 4  # did not wait for the daemon
    time.sleep(2.5)  # past the daemon's sleep: it would have printed by now
    assert b"MARKER" not in result.stdout
    assert wait_for_no_leftovers(token) == []


def test_the_environment_is_scrubbed(monkeypatch):
    secret = "rlkit-secret-" + uuid.uuid4().hex
    monkeypatch.setenv("RLKIT_TEST_SECRET", secret)
    result = run(
        "import os\nprint(dict(os.environ))\n"
        "for path in ('/proc/self/environ', '/proc/1/environ'):\n"
        "    try:\n        print(open(path, 'rb').read())\n    except OSError as e:\n        print('no', path)\n"
    )
    assert result.ok
    assert secret.encode() not in result.stdout + result.stderr
    assert b"RLKIT_TEST_SECRET" not in result.stdout


def test_files_are_read_only_and_the_host_filesystem_is_mostly_absent():
    result = run_python(
        {"main.py": "import os\ntry:\n    open('/sandbox/main.py', 'a')\nexcept OSError as e:\n    print('ro', e.errno)\n"
                    "print(sorted(os.listdir('/')))\nprint(os.path.exists('/etc/passwd'), os.path.exists('/proc/self'))"},
        "main.py", limits=FAST)
    lines = result.stdout.decode().splitlines()
    assert lines[0] in ("ro 13", "ro 30")  # EACCES or EROFS
    python_tops = {Path(d).parts[1] for d in sandbox._python_mounts(sandbox.sys.executable)}
    allowed = {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "dev", "tmp", "sandbox"} | python_tops
    assert set(eval(lines[1])) <= allowed
    assert lines[2] == "False False"


def test_an_interpreter_under_tmp_runs_and_stays_read_only():
    """A venv under /tmp (CI workspaces, a clone in /tmp) was hidden by the sandbox's private /tmp."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="rlkit-venv-", dir="/tmp") as prefix:
        os.chmod(prefix, 0o755)  # as a clone's directory is; mkdtemp makes it 0700
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", prefix], check=True)
        python = f"{prefix}/bin/python"
        source = ("import os, sys\nprint(sys.prefix)\ntry:\n    open(os.path.join(sys.prefix, 'pwned'), 'w')\n"
                  "    print('wrote')\nexcept OSError as e:\n    print('denied', e.errno)\n")
        result = run_python({"main.py": source}, "main.py", limits=FAST, python=python)
        assert result.ok, result.stderr.decode()
        assert result.stdout.decode().split("\n")[:2] == [prefix, "denied 30"]  # EROFS: a read-only view
        assert not os.path.exists(os.path.join(prefix, "pwned"))
