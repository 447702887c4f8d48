"""`code_quality`: unit tests plus program analysis, after REAL (Yao et al., arXiv 2505.22704).

REAL rewards code that is correct *and* free of security and maintainability defects found by program
analysis. Here:
- security: Bandit (PyCQA), the standard Python security linter, through its Python API. It flags SQL
  built by string formatting (B608), unsafe deserialization (B301 pickle, B506 yaml.load), shell calls
  (B602/B605), eval/exec (B307/B102), weak hashes, hard-coded passwords, ... `# nosec` is ignored.
- maintainability: ruff's JSON output (one fast binary, hundreds of rules; `# noqa` is ignored): missing
  type annotations (ANN), too complex functions (C901, PLR0911-PLR0915 branches/returns/arguments/statements),
  bare `except:` (E722).

Neither analyzer runs the code: they read its syntax tree, so they need no sandbox. Code that does not
parse has every defect (quality 0): otherwise an unparsable answer would look clean.

    reward = (w_tests * tests + w_security * security + w_maintainability * maintainability) / sum(w)

tests is the `unit_tests` fraction (run in the sandbox); security is 1 without any Bandit finding at or
above `min_severity`, else 0 (REAL's detector verdict); maintainability is 1 / (1 + number of ruff findings).
With `gate_on_tests` (default) the two quality terms are multiplied by the test score: an empty or broken
answer has no defects, and must not earn the quality half of the reward for it.

    >>> sample = {"tests": ["assert add(1, 2) == 3"]}
    >>> code_quality_reward("```python\\ndef add(a: int, b: int) -> int:\\n    return a + b\\n```", sample).score
    1.0
"""

from __future__ import annotations

import ast
import json
import logging
import os
import subprocess
import sys
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

from rlkit.errors import DataError, MissingExtraError
from rlkit.rewards.base import RewardResult
from rlkit.rewards.code.extract import extract_code
from rlkit.rewards.code.sandbox import SandboxLimits
from rlkit.rewards.code.unit_tests import program_and_tests, run_unit_tests

SEVERITIES = {"LOW": 1, "MEDIUM": 2, "HIGH": 3}
# assert statements and the `random` module are normal in solutions to programming problems
DEFAULT_SECURITY_SKIP = ("B101", "B311")
DEFAULT_MAINTAINABILITY_RULES = (
    "ANN001", "ANN002", "ANN003", "ANN201", "ANN202", "ANN205", "ANN206",
    "C901", "PLR0911", "PLR0912", "PLR0913", "PLR0915", "E722",
)


@lru_cache(maxsize=1)
def _bandit():
    """(bandit's manager module, a config), loaded once."""
    with warnings.catch_warnings():  # stevedore, under bandit, warns about its own deprecated argument
        warnings.simplefilter("ignore")
        try:
            from bandit.core import config as bandit_config
            from bandit.core import manager as bandit_manager
        except ImportError:
            raise MissingExtraError("the code_quality reward", "code", "bandit") from None
        logging.getLogger("bandit").setLevel(logging.ERROR)  # it logs every file it scans
        return bandit_manager, bandit_config.BanditConfig()


def security_findings(code: str, skip: tuple[str, ...] = DEFAULT_SECURITY_SKIP, min_severity: str = "LOW") -> list[dict[str, Any]]:
    """Bandit's findings for `code`: test id, severity, confidence, line and text."""
    bandit_manager, config = _bandit()
    floor = SEVERITIES[min_severity.upper()]
    with tempfile.TemporaryDirectory(prefix="rlkit-bandit-") as tmp:
        path = Path(tmp) / "solution.py"
        path.write_text(code)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            manager = bandit_manager.BanditManager(config, "file", ignore_nosec=True, quiet=True)
            manager.discover_files([str(path)])
            manager.run_tests()
        issues = manager.get_issue_list()
    return [
        {"id": issue.test_id, "severity": issue.severity, "confidence": issue.confidence, "line": issue.lineno,
         "text": issue.text}
        for issue in issues
        if issue.test_id not in skip and SEVERITIES.get(issue.severity, 0) >= floor
    ]


@lru_cache(maxsize=1)
def _ruff_binary() -> str:
    try:
        from ruff.__main__ import find_ruff_bin
    except ImportError:
        raise MissingExtraError("the code_quality reward", "code", "ruff") from None
    return os.fsdecode(find_ruff_bin())


def maintainability_findings(code: str, rules: tuple[str, ...] = DEFAULT_MAINTAINABILITY_RULES, max_complexity: int = 10) -> list[dict[str, Any]]:
    """ruff's findings for `code` with the given rules, ignoring project config and `# noqa` comments."""
    command = [
        _ruff_binary(), "check", "--isolated", "--ignore-noqa", "--no-cache", "--output-format", "json",
        "--select", ",".join(rules), "--config", f"lint.mccabe.max-complexity={max_complexity}",
        "--stdin-filename", "solution.py", "-",
    ]
    done = subprocess.run(command, input=code, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode not in (0, 1):  # 1 = findings
        raise RuntimeError(f"ruff failed (exit {done.returncode}): {done.stderr.strip()[:300]}")
    return [{"id": d["code"], "line": d["location"]["row"], "text": d["message"]} for d in json.loads(done.stdout or "[]")]


def quality_scores(code: str, security_skip: tuple[str, ...] = DEFAULT_SECURITY_SKIP, min_severity: str = "LOW",
                   rules: tuple[str, ...] = DEFAULT_MAINTAINABILITY_RULES, max_complexity: int = 10) -> tuple[float, float, dict[str, Any]]:
    """(security, maintainability, info) for one program."""
    try:
        ast.parse(code)
    except (SyntaxError, ValueError) as err:
        return 0.0, 0.0, {"syntax_error": f"{type(err).__name__}: {err}"}
    security = security_findings(code, tuple(security_skip), min_severity)
    maintainability = maintainability_findings(code, tuple(rules), max_complexity)
    info = {"security_findings": [f"{f['id']} line {f['line']}: {f['text']}" for f in security],
            "maintainability_findings": [f"{f['id']} line {f['line']}: {f['text']}" for f in maintainability]}
    return float(not security), 1.0 / (1 + len(maintainability)), info


def analysed_code(completion: str, program: str) -> str:
    """The model's own code when it stands alone (a whole function in a fenced block), else the program it
    completes (a HumanEval body needs its prompt to parse). Defects of a given prompt are not the model's."""
    code = extract_code(completion)
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return program
    return code if code.strip() else program


def code_quality_reward(
    completion: str,
    sample: dict[str, Any],
    test_weight: float = 0.5,
    security_weight: float = 0.25,
    maintainability_weight: float = 0.25,
    gate_on_tests: bool = True,
    min_severity: str = "LOW",
    security_skip: list[str] | tuple[str, ...] = DEFAULT_SECURITY_SKIP,
    maintainability_rules: list[str] | tuple[str, ...] = DEFAULT_MAINTAINABILITY_RULES,
    max_complexity: int = 10,
    timeout: float = 6.0,
    memory_mb: int = 1024,
) -> RewardResult:
    """REAL's hybrid reward: unit tests, Bandit security and ruff maintainability, weighted (see module doc)."""
    total_weight = test_weight + security_weight + maintainability_weight
    if total_weight <= 0 or min(test_weight, security_weight, maintainability_weight) < 0:
        raise ValueError("code_quality weights must be >= 0 with a positive sum")
    info: dict[str, Any] = {}
    if test_weight > 0 or gate_on_tests:
        program, tests, setup = program_and_tests(completion, sample)
        limits = SandboxLimits(wall_s=timeout, cpu_s=max(1, int(timeout)), memory_bytes=memory_mb << 20)
        outcome = run_unit_tests(program, tests, setup, limits)
        tests_score = outcome.fraction
        info.update(passed=sum(outcome.passed), total=len(tests))
        if outcome.reason:
            info["reason"] = outcome.reason
    else:  # analysis only: the sample needs no tests
        try:
            program = program_and_tests(completion, sample)[0]
        except DataError:
            program = extract_code(completion)
        tests_score = 1.0
    security, maintainability, analysis = quality_scores(
        analysed_code(completion, program), tuple(security_skip), min_severity, tuple(maintainability_rules), max_complexity
    )
    gate = tests_score if gate_on_tests else 1.0
    score = (test_weight * tests_score + gate * (security_weight * security + maintainability_weight * maintainability)) / total_weight
    info.update(tests=tests_score, security=security, maintainability=maintainability, **analysis)
    return RewardResult(score, info)


if __name__ == "__main__":  # quick look at one file: python -m rlkit.rewards.code.code_quality FILE.py
    source = Path(sys.argv[1]).read_text()
    print(json.dumps(quality_scores(source), indent=1))
