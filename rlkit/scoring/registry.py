"""Resolve a reward spec (a built-in name, 'pkg.module:fn' or 'path/to/file.py:fn') to a function.

Worker processes resolve the same specs again by name (`portable_target`), so a user's function
from a file or module is imported inside each worker; nothing is pickled but the spec.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rlkit.errors import ConfigError, DataError
from rlkit.plugins import import_function

RewardFn = Callable[[str, dict], Any]

BUILTIN = {
    "math": "rlkit.rewards.math:math_reward",
    "format": "rlkit.rewards.format:format_reward",
    "length": "rlkit.rewards.length:length_reward",
    "unit_tests": "rlkit.rewards.code.unit_tests:unit_tests_reward",
    "code_quality": "rlkit.rewards.code.code_quality:code_quality_reward",
}


def reward_target(spec: str) -> str:
    """'math' -> 'rlkit.rewards.math:math_reward'; other specs are already targets."""
    target = BUILTIN.get(spec, spec)
    if ":" not in target:
        known = ", ".join(sorted(BUILTIN))
        raise ConfigError(f"unknown reward '{spec}': expected a built-in name ({known}), 'pkg.module:fn' or 'path/file.py:fn'")
    return target


def portable_target(spec: str) -> str:
    """The target with a file path made absolute, so a worker resolves it whatever its directory."""
    target = reward_target(spec)
    where, fn_name = target.rsplit(":", 1)
    if where.endswith(".py"):
        return f"{Path(where).expanduser().resolve()}:{fn_name}"
    return target


def reward_label(spec: str) -> str:
    """The name a reward's column has in metrics: the built-in name, else the function's name."""
    return spec if spec in BUILTIN else spec.rsplit(":", 1)[-1]


def reward_labels(specs: Sequence[str]) -> list[str]:
    """Labels for several rewards; a repeated label gets '#2', '#3' so no column is overwritten."""
    labels, seen = [], {}
    for spec in specs:
        label = reward_label(spec)
        seen[label] = seen.get(label, 0) + 1
        labels.append(label if seen[label] == 1 else f"{label}#{seen[label]}")
    return labels


def _check_args(fn: Callable, spec: str, args: dict[str, Any]) -> None:
    """Unknown keyword arguments are a config error now, not a failure on every call later."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # not introspectable (a C function): let the call tell
    try:
        signature.bind("", {}, **args)
    except TypeError as err:
        raise ConfigError(f"reward '{spec}': bad args {sorted(args)}: {err}; it is {fn.__name__}{signature}") from None
    hook = getattr(fn, "check_args", None)  # a reward may validate its arguments up front (see rewards/length.py)
    if callable(hook):
        try:
            hook(**args)
        except ConfigError:
            raise
        except Exception as err:  # noqa: BLE001
            raise ConfigError(f"reward '{spec}': bad args {args}: {type(err).__name__}: {err}") from None


def resolve_reward(spec: str, args: dict[str, Any] | None = None) -> RewardFn:
    """The function named by `spec`, with `args` bound as keyword arguments."""
    target = reward_target(spec)
    where = target.rsplit(":", 1)[0]
    if where.endswith(".py") and not Path(where).expanduser().is_file():
        raise ConfigError(f"reward file not found: {where} (from '{spec}')")
    fn = import_function(target, f"reward '{spec}'")
    _check_args(fn, spec, args or {})
    return functools.partial(fn, **args) if args else fn


def check_samples(specs: Sequence[Any], samples: Sequence[dict[str, Any]], source: str) -> None:
    """Before a run: every sample has what each reward reads. A reward declares that with a
    `check_sample(sample)` attribute that raises KeyError (the math reward checks for a gold answer);
    the first sample without it is a DataError naming the source, the row and the reward."""
    for spec in specs:
        fn = resolve_reward(spec.name, spec.args)
        hook = getattr(getattr(fn, "func", fn), "check_sample", None)
        if not callable(hook):
            continue
        for index, sample in enumerate(samples, 1):
            try:
                hook(sample)
            except KeyError as err:
                needs = getattr(err, "needs", None) or f"field {err}"
                fields = ", ".join(sorted(k for k in sample if k != "prompt")) or "none"
                raise DataError(f"{source} row {index}: reward '{spec.name}' needs {needs}, which the row does not have (its fields: {fields})") from None

