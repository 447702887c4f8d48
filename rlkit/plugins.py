"""Functions a recipe names by reference: 'path/to/file.py:fn' or 'package.module:fn'.

Rewards (`rewards[].name`) and data loaders (`data.source`) are plain functions a user writes; this
imports one. A file is imported once per process under a name derived from its absolute path, so two
files called `reward.py` never shadow each other.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlkit.errors import ConfigError

# 'pkg.module:fn' (dotted identifiers) or 'path/file.py:fn'
_MODULE_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def is_target(text: str) -> bool:
    """True for 'file.py:fn' and 'pkg.module:fn' (not 'hf:<id>' or 'tiny:<task>')."""
    where, _, fn_name = text.rpartition(":")
    if not where or not fn_name.isidentifier():
        return False
    return where.endswith(".py") or (bool(_MODULE_TARGET.match(text)) and where not in ("hf", "tiny"))


def _load_file(path: Path) -> Any:
    resolved = path.resolve()
    name = "rlkit_user_" + hashlib.sha1(str(resolved).encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{path} cannot be imported as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]  # a fixed file is imported afresh next time
        raise
    return module


def import_function(target: str, what: str) -> Callable[..., Any]:
    """The function `target` names; errors say `what` asked for it (e.g. "reward 'x.py:fn'")."""
    where, fn_name = target.rsplit(":", 1)
    try:
        if where.endswith(".py"):
            path = Path(where).expanduser()
            if not path.is_file():
                raise ConfigError(f"{what}: file not found: {where}")
            module = _load_file(path)
        else:
            module = importlib.import_module(where)
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - a broken user module: say which and why
        raise ConfigError(f"{what}: importing {where} failed: {type(err).__name__}: {err}") from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise ConfigError(f"{what}: {where} has no function '{fn_name}'")
    return fn
