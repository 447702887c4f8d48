"""Benchmarks by name: where their file lives and how papers sample them.

A benchmark spec is one of
  - a known name (math500, aime24, ...): the file `<name>.jsonl` in the data directory (by default math/ in
    the shared data folder, rlkit/shared_data.py);
  - a path to a .jsonl / .jsonl.gz / .parquet file, or `shared:<path>` in the shared data folder (named after its stem);
  - `hf:<dataset id>` (its `test` split) or `tiny:arithmetic` (the tiny world's held-out split).

Sampling defaults follow the 1-shot RLVR paper's evaluation (Qwen2.5-Math's harness): greedy
decoding for the large test sets, and for the small competition sets (AIME, AMC) 8 samples at
temperature 0.6 reported as avg@8. A file named like a known benchmark takes its defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rlkit.errors import ConfigError
from rlkit.shared_data import HOW_TO_SET, PREFIX, resolve_shared, shared_data_root

FILE_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".parquet")


@dataclass(frozen=True)
class Benchmark:
    name: str  # short name: results go to <output>/<name>/
    title: str  # column header in the markdown table, as papers write it
    source: str  # a file path, 'hf:<id>' or 'tiny:arithmetic'
    n: int = 1  # samples per problem
    temperature: float = 0.0
    top_p: float = 1.0


# name -> (title, n, temperature); the file is <data_dir>/<name>.jsonl
KNOWN: dict[str, tuple[str, int, float]] = {
    "math500": ("MATH500", 1, 0.0),
    "aime24": ("AIME24", 8, 0.6),
    "aime25": ("AIME25", 8, 0.6),
    "amc23": ("AMC23", 8, 0.6),
    "minerva_math": ("Minerva", 1, 0.0),
    "olympiadbench": ("OlympiadBench", 1, 0.0),
    "gsm8k": ("GSM8K", 1, 0.0),
}
TINY = "tiny:arithmetic"


def default_data_dir(shared_data: str | Path | None = None) -> Path | None:
    """math/ in the shared data folder (rlkit/shared_data.py), None when no shared data folder is found."""
    root = shared_data_root(shared_data, required=False)
    return root / "math" if root else None


def split_specs(text: str) -> list[str]:
    """'math500, aime24' -> ['math500', 'aime24']; empty entries are dropped."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _looks_like_file(spec: str) -> bool:
    return spec.endswith(FILE_SUFFIXES) or "/" in spec or spec.startswith((".", "~"))


def resolve_benchmark(spec: str, data_dir: str | Path | None, shared_data: str | Path | None = None) -> Benchmark:
    """A spec (see the module docstring) -> a Benchmark whose source exists (hf: ids are checked on load)."""
    if spec == TINY:
        return Benchmark(name="tiny_arithmetic", title="Tiny arithmetic", source=TINY)
    if spec.startswith("hf:"):
        if len(spec) == 3:
            raise ConfigError("benchmark 'hf:': expected a dataset id after 'hf:', e.g. hf:HuggingFaceH4/MATH-500")
        name = spec[3:].rstrip("/").rsplit("/", 1)[-1].lower()
        return _with_known_defaults(Benchmark(name=name, title=spec[3:], source=spec))
    if spec in KNOWN:
        title, n, temperature = KNOWN[spec]
        if data_dir is None:
            raise ConfigError(
                f"benchmark '{spec}' is read from math/ in the shared data folder, and none was found: {HOW_TO_SET}, "
                f"or pass --data-dir DIR (eval.data_dir in a recipe), the folder holding {spec}.jsonl"
            )
        directory = Path(data_dir).expanduser()
        if not directory.is_dir():
            raise ConfigError(f"data directory not found: {directory} (from --data-dir, eval.data_dir or the shared data folder)")
        path = directory / f"{spec}.jsonl"
        if not path.is_file():
            raise ConfigError(f"benchmark '{spec}': file not found: {path}")
        return Benchmark(name=spec, title=title, source=str(path), n=n, temperature=temperature)
    if _looks_like_file(spec) or spec.startswith(PREFIX):
        path = Path(resolve_shared(spec, shared_data)).expanduser()
        if not path.is_file():
            raise ConfigError(f"benchmark file not found: {path}")
        name = path.name
        for suffix in FILE_SUFFIXES:
            name = name.removesuffix(suffix)
        return _with_known_defaults(Benchmark(name=name, title=name, source=str(path)))
    raise _unknown(spec)


def _unknown(spec: str) -> ConfigError:
    known = ", ".join(KNOWN)
    return ConfigError(
        f"unknown benchmark '{spec}': expected one of {known}, {TINY}, a .jsonl/.parquet file, shared:<path> or hf:<dataset id>"
    )


def check_names(specs: list[str]) -> None:
    """An unknown benchmark name is reported before any data folder is looked for (it is the likelier mistake)."""
    for spec in specs:
        if not (spec == TINY or spec in KNOWN or spec.startswith(("hf:", PREFIX)) or _looks_like_file(spec)):
            raise _unknown(spec)


def resolve_benchmarks(specs: list[str], data_dir: str | Path | None, shared_data: str | Path | None = None) -> list[Benchmark]:
    """Resolve `eval.benchmarks` of a recipe; data_dir None means math/ in the shared data folder."""
    check_names(specs)
    directory = data_dir if data_dir is not None else default_data_dir(shared_data)
    return [resolve_benchmark(spec, directory, shared_data) for spec in specs]


def _with_known_defaults(bench: Benchmark) -> Benchmark:
    """A file or dataset named like a known benchmark is sampled the way that benchmark is."""
    if bench.name in KNOWN:
        title, n, temperature = KNOWN[bench.name]
        return replace(bench, title=title, n=n, temperature=temperature)
    return bench


def check_gold_answers(bench: Benchmark, samples: list[dict[str, Any]]) -> None:
    """Fail before any generation when a row has no gold answer the math reward can read (DataError naming the row)."""
    from rlkit.rewards.math import gold_answers

    gold_answers(samples, f"benchmark '{bench.name}' ({bench.source})")
