"""The test runner that executes inside the sandbox (copied to /sandbox/runner.py; stdlib only).

Protocol: stdin carries one JSON object {"nonce", "program", "setup", "tests"}. The runner reads it
and closes stdin, keeps a private copy of stdout for its verdict and points fd 1 at stderr, so whatever
the program prints never mixes with the verdict. It executes the program, then each test, and only
after the last test writes one line to the private fd: "<nonce> <one 0/1 flag per test>". The harness
(unit_tests.py) trusts a verdict only when that line carries its nonce, has one flag per test, and the
run exited 0. A program that exits (sys.exit, os._exit, a signal) before the tests end leaves no verdict.

Why the program cannot forge the verdict: the nonce exists only in a local variable of `main`. The
program runs in the same interpreter, so before it runs the runner installs an audit hook (PEP 578;
it cannot be removed from Python) that refuses every route from Python code to another function's
frame or to arbitrary objects: sys._getframe, sys._current_frames, tb_frame/gi_frame/cr_frame/ag_frame,
settrace/setprofile, the gc object walks, new audit hooks, ctypes and CPython's test modules; it also
refuses starting processes. Installing a Python signal handler (it receives the interrupted frame) and
_posixsubprocess.fork_exec are replaced in their modules. There is no /proc in the sandbox, so memory
cannot be read through /proc/self/mem. Every name the runner uses after the program has run is a local
bound beforehand, and tests run with a private copy of the builtins, so patching builtins, print,
sys.exit, json or this module changes nothing.

What it cannot stop (in-process limits, documented in the README): a returned object whose __eq__
always says True; a program that patches a module the tests import (e.g. math) from inside a call;
hand-made bytecode (code.replace, marshal.loads: both also serve ordinary imports and asyncio, so they
stay allowed) that reads interpreter memory. The namespaces and limits around the run hold regardless.
"""

import builtins
import json
import os
import sys

BLOCKED_EVENTS = frozenset({
    "sys._getframe", "sys._current_frames", "sys.settrace", "sys.setprofile", "sys.addaudithook",
    "gc.get_objects", "gc.get_referrers", "gc.get_referents",
    "os.fork", "os.forkpty", "os.vfork", "os.posix_spawn", "os.exec", "os.spawn", "os.system",
    "subprocess.Popen", "pty.spawn", "os.startfile",
    "ctypes.dlopen", "ctypes.dlsym", "ctypes.dlsym/handle", "ctypes.cdata", "ctypes.addressof", "ctypes.string_at",
    "ctypes.wstring_at", "ctypes.call_function", "ctypes.create_string_buffer",
})
FRAME_ATTRIBUTES = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back"})
BLOCKED_MODULES = frozenset({
    "ctypes", "_ctypes", "cffi", "_cffi_backend", "_testcapi", "_testinternalcapi", "_testmultiphase",
    "_xxsubinterpreters", "_xxinterpchannels", "_posixsubprocess", "signal", "_signal",
})


def install_guard() -> None:
    """Install the audit hook. Everything it reads is bound in its closure: it calls no patchable global."""
    blocked, frame_attributes, blocked_modules = BLOCKED_EVENTS, FRAME_ATTRIBUTES, BLOCKED_MODULES
    value_error, attribute_error, import_error, permission_error = ValueError, AttributeError, ImportError, PermissionError
    runtime_error, str_type, tuple_type = RuntimeError, str, tuple

    def guard(event, args):
        if event == "object.__getattr__":
            if type(args) is tuple_type and len(args) > 1 and type(args[1]) is str_type and args[1] in frame_attributes:
                raise attribute_error(f"{args[1]} is not available in the rlkit sandbox")
        elif event == "import":
            name = args[0] if type(args) is tuple_type and args else ""
            if type(name) is str_type and name.partition(".")[0] in blocked_modules:
                raise import_error(f"module {name} is not available in the rlkit sandbox")
        elif event in blocked:
            if event.startswith("sys._"):
                raise value_error(f"{event} is not available in the rlkit sandbox")  # what callers already expect
            if event.startswith(("os.", "subprocess", "pty")):
                raise permission_error(f"{event}: starting processes is not allowed in the rlkit sandbox")
            raise runtime_error(f"{event} is not allowed in the rlkit sandbox")

    sys.addaudithook(guard)


def disable_signals_and_fork_exec() -> None:
    """Replace, in the modules themselves, what the audit hook cannot see: installing a Python signal
    handler (it receives the interrupted frame) and _posixsubprocess.fork_exec (starts a process without an
    audit event). The modules are imported here, so a later import finds the patched ones; importing them
    afresh is refused by the hook."""

    def no_signals(*args, **kwargs):
        # ValueError is what signal.signal raises outside the main thread: asyncio and others handle it
        raise ValueError("signal handlers cannot be installed in the rlkit sandbox")

    def no_processes(*args, **kwargs):
        raise PermissionError("starting processes is not allowed in the rlkit sandbox")

    for name in ("signal", "_signal"):
        module = __import__(name)
        for attribute in ("signal", "setitimer", "alarm", "set_wakeup_fd", "pthread_kill", "sigaction"):
            if hasattr(module, attribute):
                setattr(module, attribute, no_signals)
    __import__("_posixsubprocess").fork_exec = no_processes


def read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def main() -> None:
    # ---- trusted phase: nothing of the program has run yet
    write, exit_now, dup2, open_fd = os.write, os._exit, os.dup2, os.open
    job = json.loads(read_all(0))
    nonce = job.pop("nonce")
    sys.path.extend(job.get("sys_path", []))  # started with -S: site-packages without .pth processing
    guarded = job.get("guard", True)  # off only in tests that show each attack works without the guard
    dup2(open_fd(os.devnull, os.O_RDONLY), 0)
    verdict_fd = os.dup(1)
    dup2(2, 1)  # the program's prints go to stderr
    sys.stdout = sys.stderr

    base_exception, exec_, dict_, type_, str_, len_, range_ = BaseException, exec, dict, type, str, len, range
    pristine_builtins = dict(builtins.__dict__)
    builtin_names = frozenset(pristine_builtins)
    tests = []
    for index, source in enumerate(job["tests"]):
        try:
            tests.append(compile(source, f"<test {index + 1}>", "exec"))
        except (SyntaxError, ValueError) as err:  # a broken test fails; the others still count
            write(2, f"rlkit: test {index + 1} does not compile: {err}\n".encode(errors="replace"))
            tests.append(None)
    setup = compile(job["setup"], "<setup>", "exec") if job.get("setup") else None
    try:
        program = compile(job["program"], "solution.py", "exec")
    except (SyntaxError, ValueError) as err:
        program = None
        write(2, f"rlkit: the program does not compile: {type(err).__name__}: {err}\n".encode(errors="replace"))
    del job
    flags = ""
    if guarded:
        disable_signals_and_fork_exec()
        install_guard()

    # ---- untrusted phase: only locals bound above are used from here on
    namespace = {"__name__": "solution", "__builtins__": builtins}
    program_ok = False
    if program is not None:
        try:
            exec_(program, namespace)
            program_ok = True
        except base_exception as err:  # an error at the program's top level fails every test
            write(2, b"rlkit: the program raised " + str_(type_(err).__name__).encode(errors="replace") + b"\n")
    for index in range_(len_(tests)):
        code = tests[index]
        passed = False
        if program_ok and code is not None:
            try:
                test_namespace = dict_()
                for name, value in namespace.items():
                    if type_(name) is str_ and name not in builtin_names:
                        test_namespace[name] = value
                test_namespace["__builtins__"] = dict_(pristine_builtins)
                test_namespace["__name__"] = "tests"
                if setup is not None:
                    exec_(setup, test_namespace)
                exec_(code, test_namespace)
                passed = True
            except base_exception as err:
                write(2, b"rlkit: test failed: " + str_(type_(err).__name__).encode(errors="replace") + b"\n")
        flags = flags + ("1" if passed else "0")
    write(verdict_fd, ("\n" + nonce + " " + flags + "\n").encode())
    exit_now(0)  # skips atexit handlers and thread joins the program may have arranged


if __name__ == "__main__":
    main()
