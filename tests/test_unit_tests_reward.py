"""`unit_tests` reward: both sample formats, scoring, and one test per attack: each is contained, scores 0,
the scorer stays alive and the host is untouched. Needs bubblewrap (fails with the install hint without it)."""

from __future__ import annotations

import gzip
import json
import socket
import time
import uuid
from pathlib import Path

import pytest
from test_sandbox import wait_for_no_leftovers

from rlkit.errors import DataError
from rlkit.rewards.code.sandbox import SandboxLimits
from rlkit.rewards.code.unit_tests import parse_verdict, program_and_tests, run_unit_tests, unit_tests_reward
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.sandbox

HUMANEVAL = SHARED_DATA / "code" / "HumanEval.jsonl.gz"
ADD_TESTS = {"id": "add", "tests": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0", "assert add(2, 2) == 4"]}
CORRECT_ADD = "def add(a, b):\n    return a + b\n"


def humaneval_rows() -> list[dict]:
    with gzip.open(HUMANEVAL, "rt") as f:
        return [json.loads(line) for line in f]


def fenced(code: str) -> str:
    return f"Here is my solution.\n```python\n{code}```\nDone."


def score(code: str, sample: dict = ADD_TESTS, **kwargs) -> float:
    return unit_tests_reward(fenced(code), sample, timeout=kwargs.pop("timeout", 3.0), **kwargs).score


def assert_scorer_alive() -> None:
    assert score(CORRECT_ADD) == 1.0


# ---------------------------------------------------------------- formats and scoring
def test_correct_partial_and_wrong_code():
    assert score(CORRECT_ADD) == 1.0
    assert score("def add(a, b):\n    return 4 if a == 2 else a + b + (a == -1)\n") == pytest.approx(2 / 3)
    assert score("def add(a, b):\n    return 0\n") == pytest.approx(1 / 3)
    assert score("def add(a, b):\n    return 4 if a == 2 else a + b + (a == -1)\n", all_or_nothing=True) == 0.0


def test_code_is_taken_from_the_last_python_block():
    completion = "Wrong first try:\n```python\ndef add(a, b):\n    return a - b\n```\nFixed:\n```python\n" + CORRECT_ADD + "```"
    assert unit_tests_reward(completion, ADD_TESTS).score == 1.0


def test_a_test_program_string_with_setup_is_one_test():
    sample = {"tests": "assert total(xs) == 6\nassert total([]) == 0\n", "setup": "xs = [1, 2, 3]"}
    result = unit_tests_reward("```python\ndef total(v):\n    return sum(v)\n```", sample)
    assert (result.score, result.info["total"]) == (1.0, 1)


def test_mbpp_field_names_are_read():
    sample = {"test_list": ["assert sq(3) == 9"], "test_setup_code": ""}
    assert unit_tests_reward("def sq(x):\n    return x * x\n", sample).score == 1.0


@pytest.mark.shared_data
def test_humaneval_format_program_is_prompt_plus_completion():
    rows = humaneval_rows()
    row = rows[0]
    assert unit_tests_reward(row["canonical_solution"], row).score == 1.0
    assert unit_tests_reward("    return None\n", row).score == 0.0
    program, tests, _ = program_and_tests(row["canonical_solution"], row)
    assert program.startswith(row["prompt"]) and tests[0].rstrip().endswith(f"check({row['entry_point']})")
    # a chat model answering with the whole function in a fenced block; training samples carry chat messages
    chat_row = dict(row, prompt=[{"role": "user", "content": row["prompt"]}])
    answer = fenced("from typing import List\n\n" + row["prompt"].split("from typing import List\n", 1)[1] + row["canonical_solution"])
    assert unit_tests_reward(answer, chat_row).score == 1.0


ORDINARY_LIBRARIES = """
import asyncio, bisect, collections, dataclasses, datetime, decimal, enum, fractions, functools, heapq, json
import logging, re, statistics, threading, typing, warnings

Point = collections.namedtuple("Point", "x y")        # these look at their caller's frame: allowed to fail quietly
class Named(typing.NamedTuple):
    x: int
Color = enum.Enum("Color", "RED GREEN")
T = typing.TypeVar("T")


@dataclasses.dataclass
class Box:
    a: int = 1


@functools.lru_cache(maxsize=None)
def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


async def twice(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


def solve() -> int:
    logging.getLogger("x").warning("hello %s", 1)
    warnings.warn("careful")
    thread = threading.Thread(target=lambda: None)
    thread.start()
    thread.join()
    heap = [3, 1, 2]
    heapq.heapify(heap)
    total = fib(20) + Point(1, 2).x + Named(3).x + Color.RED.value + Box().a + asyncio.run(twice(2)) + heap[0]
    total += int(fractions.Fraction(1, 2) * 2) + len(re.findall(r"\\d", "a1b2")) + int(decimal.Decimal("1.5") * 2)
    return total + datetime.date(2020, 1, 2).day + len(json.dumps([1])) + int(statistics.mean([1, 3])) + bisect.bisect([1, 2], 1)
"""


def test_ordinary_library_code_works_under_the_guard():
    # 6765 + 1 + 3 + 1 + 1 + 4 + 1 + 1 + 2 + 3 + 2 + 3 + 2 + 1
    assert score(ORDINARY_LIBRARIES, {"tests": ["assert solve() == 6790"]}, timeout=6.0) == 1.0


def test_a_sample_without_tests_is_a_data_error_naming_the_fields():
    with pytest.raises(DataError, match=r"'test' and 'entry_point'.*'tests'"):
        unit_tests_reward("x = 1", {"id": "s1", "problem": "?"})


def test_verdict_needs_the_nonce_and_one_flag_per_test():
    nonce = "ab" * 16
    assert parse_verdict(b"noise\n" + nonce.encode() + b" 101\n", nonce, 3) == [True, False, True]
    assert parse_verdict(b"\n" + b"cd" * 16 + b" 111\n", nonce, 3) is None
    assert parse_verdict(b"\n" + nonce.encode() + b" 11\n", nonce, 3) is None
    assert parse_verdict(b"\n" + nonce.encode() + b" 1x1\n", nonce, 3) is None


def test_syntax_error_scores_zero():
    assert score("def add(a, b) return a + b\n") == 0.0


@pytest.mark.parametrize("completion", ["", "def add(a, b):\n    return a + b  # \udcff\n", "def add(a, b):\n    return a + b\x00\n", "x" * 200_000],
                         ids=["empty", "invalid-unicode", "null-byte", "200k-chars"])
def test_malformed_completions_score_zero(completion):
    result = unit_tests_reward(completion, ADD_TESTS)
    assert result.score == 0.0 and result.info["total"] == 3


# ---------------------------------------------------------------- attacks: each scores 0, scorer alive, host untouched
def test_fork_bomb():
    started = time.monotonic()
    assert score("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n" + CORRECT_ADD) == 0.0
    assert time.monotonic() - started < 5
    assert wait_for_no_leftovers() == []
    assert_scorer_alive()


def test_memory_bomb():
    assert score("blocks = []\nwhile True:\n    blocks.append(bytearray(64 << 20))\n" + CORRECT_ADD, memory_mb=512) == 0.0
    assert_scorer_alive()


def test_busy_loop():
    started = time.monotonic()
    assert score("def add(a, b):\n    while True:\n        pass\n", timeout=1.5) == 0.0
    assert time.monotonic() - started < 4
    assert_scorer_alive()


def test_sleep_forever():
    started = time.monotonic()
    assert score("import time\ndef add(a, b):\n    time.sleep(10**6)\n", timeout=1.5) == 0.0
    assert time.monotonic() - started < 4


def test_connection_to_a_loopback_listener():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1).sendall(b'leak')\n" + CORRECT_ADD
        assert score(code) == 0.0
        with pytest.raises(socket.timeout):
            listener.accept()


def test_write_outside_the_temp_dir(tmp_path):
    target = tmp_path / "pwned"
    code = f"import os\nos.makedirs({str(tmp_path)!r}, exist_ok=True)\nopen({str(target)!r}, 'w').write('x')\nopen('/pwned', 'w')\n" + CORRECT_ADD
    assert score(code) == 0.0
    assert not target.exists() and not Path("/pwned").exists()


def test_killing_the_parent():
    code = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.kill(-1, signal.SIGKILL)\ndef add(a, b):\n    return 0\n"
    assert score(code) == 0.0
    assert_scorer_alive()


def test_a_gigabyte_to_stdout():
    started = time.monotonic()
    code = "import sys\ndef add(a, b):\n    block = 'x' * (1 << 20)\n    for _ in range(1024):\n        sys.__stdout__.write(block)\n    return a + b\n"
    result = unit_tests_reward(fenced(code), ADD_TESTS, timeout=20.0)
    assert result.score == 0.0 and result.info["reason"] == "output limit exceeded"
    assert time.monotonic() - started < 6


def test_a_daemon_that_outlives_the_test():
    token = uuid.uuid4().hex
    code = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        f"        time.sleep(2); print('MARKER {token}', flush=True)\n"
        "    os._exit(0)\n" + CORRECT_ADD
    )
    result = unit_tests_reward(fenced(code), ADD_TESTS, timeout=3.0)
    assert result.score == 0.0  # the runner refuses to start processes: the program fails at its top level
    time.sleep(2.5)
    assert token not in json.dumps(result.info)
    assert wait_for_no_leftovers(token) == []


@pytest.mark.parametrize("exit_call", ["import os\nos._exit(0)", "import sys\nsys.exit(0)", "raise SystemExit(0)"])
def test_exit_0_before_the_tests_run(exit_call):
    fake = "print('\\n' + 'ab' * 16 + ' 111')\nimport os\nfor fd in range(1, 20):\n    try:\n        os.write(fd, b'\\n' + b'0' * 32 + b' 111\\n')\n    except OSError:\n        pass\n"
    assert score(fake + exit_call + "\n" + "def add(a, b):\n    return 0\n") == 0.0


def test_exit_0_from_inside_the_tested_function():
    assert score("import os\ndef add(a, b):\n    os._exit(0)\n") == 0.0


def test_reading_a_secret_from_the_environment(monkeypatch):
    secret = "rlkit-secret-" + uuid.uuid4().hex
    monkeypatch.setenv("RLKIT_TEST_SECRET", secret)
    code = "import os, sys\nprint(os.environ.get('RLKIT_TEST_SECRET'), dict(os.environ), file=sys.stderr)\ndef add(a, b):\n    return os.environ['RLKIT_TEST_SECRET']\n"
    result = unit_tests_reward(fenced(code), ADD_TESTS, timeout=3.0)
    assert result.score == 0.0
    assert secret not in json.dumps(result.info)
    assert result.info["stderr"].startswith("None {'PATH'")  # it looked and saw nothing


# ---------------------------------------------------------------- tampering with the runner
@pytest.mark.parametrize(
    "tamper",
    [
        "import builtins\nbuiltins.exec = lambda *a, **k: None\nbuiltins.print = lambda *a, **k: None",
        "import builtins\nbuiltins.AssertionError = type('Nope', (Exception,), {})\nbuiltins.BaseException = int",
        "import sys, os\nsys.exit = lambda *a: None\nos._exit = lambda *a: None\nsys.modules['__main__'].range = lambda n: []",
        "import builtins\nbuiltins.check = lambda candidate: None\ncheck = lambda candidate: None",
        "import json\njson.dumps = lambda *a, **k: '{}'\njson.loads = lambda *a, **k: {}",
        "import builtins\nbuiltins.abs = lambda x: 0\nbuiltins.len = lambda x: 3\nabs = lambda x: 0",
    ],
    ids=["exec-print", "exceptions", "exit-range", "checker", "json", "builtins-used-by-tests"],
)
def test_tampering_with_the_runner_does_not_make_wrong_code_pass(tamper):
    sample = {"tests": ["assert abs(add(1, 2) - 3) < 1e-9", "assert len([add(0, 0)]) == 1 and add(2, 2) == 4"]}
    assert score(tamper + "\ndef add(a, b):\n    return -1\n", sample) == 0.0
    assert score(tamper + "\n" + CORRECT_ADD, sample) == 1.0  # the same tampering around correct code changes nothing


STEAL_AND_FORGE = """
import os, re
def forge(values):
    for value in values:
        if isinstance(value, str) and re.fullmatch('[0-9a-f]{32}', value):
            for fd in range(1, 30):
                try:
                    os.write(fd, ('\\n' + value + ' 11\\n').encode())
                except OSError:
                    pass
            os._exit(0)

def walk(frame):
    while frame:
        forge(frame.f_locals.values())
        frame = frame.f_back
"""


@pytest.mark.parametrize(
    "steal",
    [
        "import sys\n    f = sys._getframe()\n    while f:\n        forge(f.f_locals.values()); f = f.f_back",
        "try:\n        raise ValueError\n    except ValueError as e:\n        f = e.__traceback__.tb_frame\n    while f:\n        forge(f.f_locals.values()); f = f.f_back",
        "import gc\n    forge(gc.get_objects()); forge([x for o in gc.get_objects() if isinstance(o, dict) for x in o.values()])",
        "import inspect\n    for info in inspect.stack():\n        forge(info.frame.f_locals.values())",
        "import sys\n    forge([v for f in sys._current_frames().values() for v in f.f_locals.values()])",
        "import signal\n    signal.signal(signal.SIGALRM, lambda s, f: walk(f))\n    signal.setitimer(signal.ITIMER_REAL, 0.001)\n    sum(range(10**7))",
        "import ctypes\n    forge([ctypes.string_at(id(a), 100)])",
        "import sys\n    sys.settrace(lambda f, e, a: walk(f))\n    len([])",
        "forge(open('/proc/self/mem').read())",
    ],
    ids=["getframe", "traceback", "gc", "inspect", "current_frames", "signal-handler", "ctypes", "settrace", "proc-mem"],
)
def test_the_nonce_cannot_be_stolen_to_forge_a_verdict(steal):
    code = STEAL_AND_FORGE + f"def add(a, b):\n    {steal}\n    return -1\n"
    assert score(code) == 0.0


@pytest.mark.parametrize(
    "steal",
    [
        "import sys\n    f = sys._getframe()\n    while f:\n        forge(f.f_locals.values()); f = f.f_back",
        "import signal\n    signal.signal(signal.SIGALRM, lambda s, f: walk(f))\n    signal.setitimer(signal.ITIMER_REAL, 0.001)\n    sum(range(10**7))",
        "import sys\n    sys.settrace(lambda f, e, a: walk(f))\n    len([])",
        "try:\n        raise ValueError\n    except ValueError as e:\n        walk(e.__traceback__.tb_frame)",
    ],
    ids=["getframe", "signal-handler", "settrace", "traceback"],
)
def test_without_the_guard_the_same_attacks_would_forge_a_pass(steal):
    """Control for the test above: the attacks are real, the guard is what stops them."""
    code = STEAL_AND_FORGE + f"def add(a, b):\n    {steal}\n    return -1\n"
    tests = ["assert add(1, 2) == 3", "assert add(2, 2) == 4"]
    limits = SandboxLimits(wall_s=5.0)
    assert run_unit_tests(code, tests, limits=limits, guard=False).passed == [True, True]
    assert run_unit_tests(code, tests, limits=limits, guard=True).passed == [False, False]


@pytest.mark.slow
@pytest.mark.shared_data
def test_humaneval_through_rlkit_reward_score(tmp_path):
    """The done-when numbers: 164/164 canonical solutions pass, at most 2 of 164 `return None` bodies do,
    and the 164 score in 60 s or less on the 2-core CI machine (with two reward workers)."""
    import subprocess
    import sys

    rows = humaneval_rows()
    for name, completion in (("canonical", None), ("none", "    return None\n")):
        source, scored = tmp_path / f"{name}.jsonl", tmp_path / f"{name}_scored.jsonl"
        source.write_text("".join(json.dumps({**r, "completion": completion or r["canonical_solution"]}) + "\n" for r in rows))
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "rlkit.cli", "reward", "score", "unit_tests", "--input", str(source),
                        "--output", str(scored), "--workers", "2"], check=True, capture_output=True, timeout=300)
        elapsed = time.monotonic() - started
        passed = sum(json.loads(line)["reward"] == 1.0 for line in scored.read_text().splitlines())
        if name == "canonical":
            assert passed == 164 and elapsed <= 60, (passed, elapsed)
        else:
            assert passed <= 2
