"""Where the public data lives (benchmarks, 1-shot RLVR rows, HumanEval): one setting, read here only.

Recipes name a file in it as `shared:<path inside it>` (`shared:math/math500.jsonl`); named benchmarks
(`rlkit eval`, `eval.benchmarks`) read `<it>/math`, and so does SwS's decontamination. The folder is the
first of:
  1. the recipe key `shared_data` (`rlkit run RECIPE shared_data=DIR`; `rlkit eval --shared-data DIR`);
  2. the environment variable RLKIT_SHARED_DATA;
  3. a folder `shared/data` beside the current folder or beside any folder above it (`../shared/data`
     from a checkout, also from its subfolders), then the same from the recipe's folder, then from the
     rlkit checkout itself, so a command run from another folder finds the data beside its checkout.
The data is read where it lies, never copied.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from rlkit.errors import ConfigError

ENV = "RLKIT_SHARED_DATA"
PREFIX = "shared:"
HOW_TO_SET = f"set {ENV}=DIR, the recipe key shared_data (shared_data=DIR on the command line) or rlkit eval --shared-data DIR"
CHECKOUT = Path(__file__).resolve().parents[1]  # the folder holding the rlkit package (the repository, when installed editable)


def _beside_or_above(start: Path) -> Iterable[Path]:
    """start/../shared/data, then the same for each folder above start."""
    for folder in [start, *start.parents]:
        yield folder.parent / "shared" / "data"


def shared_data_root(setting: str | Path | None = None, near: Iterable[Path] = (), required: bool = True) -> Path | None:
    """The shared data folder (see the module docstring); `near` are extra folders to look from (a recipe's).

    An explicit setting (the key, or the variable) that is no folder is an error. Not found otherwise:
    ConfigError naming the settings when `required`, else None."""
    for value, origin in ((setting, "shared_data"), (os.environ.get(ENV), ENV)):
        if value:
            root = Path(value).expanduser()
            if not root.is_dir():
                raise ConfigError(f"{origin}={value}: no such folder (it should hold the shared data: math/, code/, ...)")
            return root.resolve()
    starts = [Path.cwd(), *(Path(p).resolve() for p in near), CHECKOUT]
    seen: set[Path] = set()
    for start in starts:
        for candidate in _beside_or_above(start):
            if candidate not in seen and candidate.is_dir():
                return candidate
            seen.add(candidate)
    if required:
        raise ConfigError(
            f"the shared data folder was not found: no shared/data beside {Path.cwd()}, the rlkit checkout {CHECKOUT}"
            + "".join(f", {Path(p)}" for p in near) + f" or any folder above them; {HOW_TO_SET}"
        )
    return None


def resolve_shared(path: str, setting: str | Path | None = None, near: Iterable[Path] = ()) -> str:
    """'shared:math/math500.jsonl' -> the file's path in the shared data folder; any other string unchanged."""
    if not path.startswith(PREFIX):
        return path
    inside = path[len(PREFIX) :].lstrip("/")
    try:
        root = shared_data_root(setting, near)
    except ConfigError as err:
        raise ConfigError(f"'{path}': {err}") from None
    return str(root / inside)  # type: ignore[operator]
