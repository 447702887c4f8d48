"""Resolve a reward spec (a built-in name, 'pkg.module:fn' or 'path/to/file.py:fn') to a function."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable

from rlkit.errors import ConfigError

RewardFn = Callable[[str, dict], Any]

BUILTIN = {
    "math": "rlkit.rewards.math:math_reward",
}


def register(name: str, target: str) -> None:
    """Make `target` ('pkg.module:fn') available under a short name."""
    BUILTIN[name] = target


def _load_file(path: Path) -> Any:
    name = f"rlkit_user_reward_{abs(hash(str(path.resolve())))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"reward file {path} cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def resolve_reward(spec: str, args: dict[str, Any] | None = None) -> RewardFn:
    target = BUILTIN.get(spec, spec)
    if ":" not in target:
        known = ", ".join(sorted(BUILTIN))
        raise ConfigError(f"unknown reward '{spec}': expected a built-in name ({known}), 'pkg.module:fn' or 'path/file.py:fn'")
    where, fn_name = target.rsplit(":", 1)
    try:
        if where.endswith(".py"):
            path = Path(where).expanduser()
            if not path.is_file():
                raise ConfigError(f"reward file not found: {where} (from '{spec}')")
            module = _load_file(path)
        else:
            module = importlib.import_module(where)
    except ConfigError:
        raise
    except Exception as err:  # a broken user module: say which and why
        raise ConfigError(f"reward '{spec}': importing {where} failed: {type(err).__name__}: {err}") from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise ConfigError(f"reward '{spec}': {where} has no function '{fn_name}'")
    return functools.partial(fn, **args) if args else fn
