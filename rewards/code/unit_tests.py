"""`unit_tests`: the fraction of a sample's unit tests the completion's code passes, run in the sandbox.

Sample formats:
- HumanEval: `prompt` (the function's signature and docstring), `test` (defines `check(candidate)`),
  `entry_point`. The program is prompt + code; the one test is `check(<entry_point>)`: 0 or 1.
- Generic: `tests` (a list of assert statements, each one test, or a test program as one string) and an
  optional `setup` run before each test; MBPP's `test_list` / `test_setup_code` are read the same way.
  The program is the code alone.

The code is the completion's last fenced python block when there is one, else the completion itself.
All tests of a sample run in one sandbox run (one interpreter start-up); a test passes only when the
runner reports it, with this call's nonce, after the last test ran (see runner.py for why the program
cannot forge that report). A run that times out, crashes or exits early scores 0.

    >>> sample = {"tests": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]}
    >>> unit_tests_reward("```python\\ndef add(a, b):\\n    return a + b\\n```", sample).score
    1.0
"""

from __future__ import annotations

import json
import secrets
import site
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlkit.errors import DataError
from rlkit.rewards.base import RewardResult
from rlkit.rewards.code.extract import extract_code
from rlkit.rewards.code.sandbox import SandboxLimits, require_sandbox, run_python

require_sandbox()  # fail when the reward is resolved, naming bubblewrap and the install script, not at every call

RUNNER_SOURCE = (Path(__file__).parent / "runner.py").read_text()
SITE_PACKAGES = [p for p in site.getsitepackages() if Path(p).is_dir()]  # importable by tested code (numpy, ...)
STDERR_TAIL = 400  # characters of the program's stderr kept in the reward's info


@dataclass
class TestOutcome:
    passed: list[bool]
    reason: str = ""  # why nothing passed, when the run itself failed
    stderr: str = ""
    wall_s: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return sum(self.passed) / len(self.passed) if self.passed else 0.0


class MissingTestsError(DataError, KeyError):
    """The sample has no tests. A KeyError with `needs`, so `rlkit reward score` names what the row lacks."""

    needs = "'test' and 'entry_point' (HumanEval) or 'tests' (a list of asserts or a test program)"

    def __str__(self) -> str:
        return DataError.__str__(self)  # not KeyError's quoted repr


def _prompt_text(sample: dict[str, Any]) -> str:
    """The code prompt as a string. Training samples carry chat messages (rlkit.data renders the prompt
    field); with the 'plain' template the last user message is the original prompt."""
    prompt = sample.get("code_prompt", sample.get("prompt", ""))
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, (list, tuple)):
        users = [m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role", "user") == "user"]
        return str(users[-1]) if users else ""
    raise DataError(f"sample {sample.get('id')}: 'prompt' must be a string or chat messages, got {type(prompt).__name__}")


def program_and_tests(completion: str, sample: dict[str, Any]) -> tuple[str, list[str], str | None]:
    """(program, tests, setup) for one sample, in either format."""
    code = extract_code(completion)
    if "test" in sample and "entry_point" in sample:
        prompt = _prompt_text(sample)
        separator = "" if not prompt or prompt.endswith("\n") else "\n"
        test = f"{sample['test']}\n\ncheck({sample['entry_point']})\n"
        return prompt + separator + code, [test], None
    tests = sample.get("tests", sample.get("test_list"))
    if tests is None:
        raise MissingTestsError(f"sample {sample.get('id')}: the unit_tests reward needs {MissingTestsError.needs}; the sample has {sorted(sample)}")
    if isinstance(tests, str):
        tests = [tests]
    if not isinstance(tests, (list, tuple)) or not tests or not all(isinstance(t, str) for t in tests):
        raise DataError(f"sample {sample.get('id')}: 'tests' must be a non-empty list of strings or a string")
    setup = sample.get("setup", sample.get("test_setup_code")) or None
    return code, list(tests), setup


def parse_verdict(stdout: bytes, nonce: str, count: int) -> list[bool] | None:
    """The runner's flags, or None unless a well-formed line with this run's nonce is there."""
    marker = f"\n{nonce} ".encode()
    position = stdout.rfind(marker)
    if position < 0:
        return None
    flags = stdout[position + len(marker):].split(b"\n", 1)[0]
    if len(flags) != count or flags.strip(b"01"):
        return None
    return [flag == ord("1") for flag in flags]


def run_unit_tests(
    program: str, tests: list[str], setup: str | None = None, limits: SandboxLimits | None = None, guard: bool = True
) -> TestOutcome:
    """Run the program and each test in one sandbox run; a test counts only with a verified verdict.
    `guard=False` turns off the runner's audit hook: only for tests that show what it stops."""
    nonce = secrets.token_hex(16)
    job = {"nonce": nonce, "program": program, "setup": setup, "tests": tests, "guard": guard, "sys_path": SITE_PACKAGES}
    # -S: no site processing (a third of the start-up time); the runner puts site-packages on sys.path itself
    result = run_python({"runner.py": RUNNER_SOURCE}, "runner.py", stdin=json.dumps(job).encode(), limits=limits, python_flags=("-I", "-S"))
    stderr = result.stderr.decode(errors="replace")[-STDERR_TAIL:]
    failed = [False] * len(tests)
    if result.timed_out:
        return TestOutcome(failed, "timeout", stderr, result.wall_s)
    if result.output_exceeded:
        return TestOutcome(failed, "output limit exceeded", stderr, result.wall_s)
    verdict = parse_verdict(result.stdout, nonce, len(tests))
    if result.exit_code != 0 or verdict is None:
        return TestOutcome(failed, f"no verdict from the test runner (exit code {result.exit_code})", stderr, result.wall_s)
    return TestOutcome(verdict, "", stderr, result.wall_s)


def unit_tests_reward(
    completion: str,
    sample: dict[str, Any],
    all_or_nothing: bool = False,
    timeout: float = 6.0,
    memory_mb: int = 1024,
) -> RewardResult:
    """Fraction of the sample's tests passed (1.0 or 0.0 with all_or_nothing=True)."""
    program, tests, setup = program_and_tests(completion, sample)
    limits = SandboxLimits(wall_s=timeout, cpu_s=max(1, int(timeout)), memory_bytes=memory_mb << 20)
    outcome = run_unit_tests(program, tests, setup, limits)
    score = float(all(outcome.passed)) if all_or_nothing else outcome.fraction
    info: dict[str, Any] = {"passed": sum(outcome.passed), "total": len(tests), "wall_s": round(outcome.wall_s, 3)}
    if outcome.reason:
        info["reason"] = outcome.reason
    if score < 1.0 and outcome.stderr:
        info["stderr"] = outcome.stderr
    return RewardResult(score, info)
