"""Datasets as lists of sample dicts: the tiny world, jsonl/parquet files, the HF hub, or a loader
function of the user's ('file.py:fn' / 'pkg.module:fn', called with `split=` and returning rows).

Every sample gets an `id` and a `prompt` (chat messages). The other fields are kept as
they are, for rewards to read (e.g. the math reward's gold answer).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlkit.config import DataConfig
from rlkit.errors import ConfigError, DataError
from rlkit.plugins import import_function, is_target
from rlkit.templates import render_prompt, resolve_template
from rlkit.where import filter_rows
from rlkit.world.arithmetic import arithmetic_samples

if TYPE_CHECKING:
    from rlkit.eval.benchmarks import Benchmark

PROBLEM_FIELDS = ("problem", "question", "prompt", "instruction")


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) for each non-blank line of a .jsonl (or .jsonl.gz) file; a line that is not
    UTF-8 or not a JSON object is a DataError naming the file and the line."""
    opener = open
    if path.suffix == ".gz":
        import gzip

        opener = gzip.open  # type: ignore[assignment]
    with opener(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{path} line {line_no}: not valid UTF-8 (byte {raw[err.start]:#04x} at column {err.start + 1})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path} line {line_no}: not valid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path} line {line_no}: expected a JSON object, got {type(row).__name__}")
            yield line_no, row


def read_rows(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    return [row for _, row in iter_jsonl(path)]


def _prompt_of(row: dict[str, Any], template: str, where: str) -> list[dict[str, str]]:
    for field in PROBLEM_FIELDS:
        value = row.get(field)
        if value is None:
            continue
        if isinstance(value, str):
            return render_prompt(value, template)
        if isinstance(value, (list, tuple)) and value and all(isinstance(m, dict) and "content" in m for m in value):
            return [{"role": m.get("role", "user"), "content": m["content"]} for m in value]  # already chat messages
    raise DataError(f"{where}: no prompt field; expected one of {', '.join(PROBLEM_FIELDS)} (a string or chat messages)")


def _flatten_verl_answer(sample: dict[str, Any]) -> None:
    """verl's row format keeps the gold answer in reward_model.ground_truth (the 1-shot RLVR parquet
    files); expose it as `answer`, the field the math reward reads. An existing `answer` wins."""
    reward_model = sample.get("reward_model")
    if isinstance(reward_model, dict) and reward_model.get("ground_truth") not in (None, "") and sample.get("answer") in (None, ""):
        sample["answer"] = str(reward_model["ground_truth"])


def load_samples(data: DataConfig) -> list[dict[str, Any]]:
    """Load, template and replicate the rows of one data config. Loading is deterministic: the run's seed
    orders the rows later (PromptStream), and the tiny world's problems are fixed (seed 0), so every run
    and its held-out eval see the same train and test problems."""
    source = data.source
    template = resolve_template(data.template, source)
    if source == "tiny:arithmetic":
        rows = arithmetic_samples(data.split, data.size, seed=0, unboxed_fraction=data.unboxed_fraction, mix=data.mix)
        label = f"tiny:arithmetic[{data.split}]"
    elif source.startswith("hf:"):
        import datasets

        rows = list(datasets.load_dataset(source[3:], split=data.split))
        label = source
    elif is_target(source):  # a user's loader function (examples/custom_dataset.py)
        loaded = import_function(source, f"data.source '{source}'")(split=data.split)
        rows = [dict(row) for row in loaded]
        label = source.rsplit(":", 1)[-1]
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise DataError(f"data file not found: {path}")
        rows = read_rows(path)
        label = str(path)
    if not rows:
        raise DataError(f"{label}: no rows")
    ids = [str(row.get("id", f"{Path(label).stem}-{index}")) for index, row in enumerate(rows)]
    chosen = list(range(len(rows)))
    if data.where:
        chosen = filter_rows(rows, data.where, label)
        if not chosen:
            raise DataError(f"{label}: no row passes data.where {data.where}")
    if data.ids:
        index_of = {ids[index]: index for index in chosen}
        missing = [i for i in data.ids if i not in index_of]
        if missing:
            raise DataError(f"{label}: data.ids {missing} not found" + (" among the rows data.where keeps" if data.where else "") + f" (ids look like {ids[chosen[0]]!r})")
        chosen = [index_of[i] for i in data.ids]
    if data.limit:
        chosen = chosen[: data.limit]
    samples = []
    for index in chosen:  # only the rows used are templated (and checked)
        sample = dict(rows[index])
        sample["id"] = ids[index]
        sample["prompt"] = _prompt_of(rows[index], template, f"{label} row {index + 1}")
        _flatten_verl_answer(sample)
        samples.append(sample)
    return samples * data.repeat


def load_benchmark(bench: Benchmark, template: str = "auto", limit: int | None = None) -> list[dict[str, Any]]:
    """A benchmark's samples (prompt as chat messages, other fields kept for the reward)."""
    if template != "auto":
        from rlkit.templates import TEMPLATES

        if template not in TEMPLATES:
            raise ConfigError(f"unknown template '{template}': expected auto or one of {', '.join(TEMPLATES)}")
    return load_samples(DataConfig(source=bench.source, split="test", limit=limit, shuffle=False, template=template, size=200))


class PromptStream:
    """An endless, seeded, shuffled stream of samples whose position can be saved and restored."""

    def __init__(self, samples: list[dict[str, Any]], seed: int, shuffle: bool = True):
        self.samples, self.seed, self.shuffle = samples, seed, shuffle
        self.position = 0  # samples consumed so far, over all epochs
        self._cached: tuple[int, list[int]] = (-1, [])

    def _order(self, epoch: int) -> list[int]:
        if self._cached[0] != epoch:
            order = list(range(len(self.samples)))
            if self.shuffle:
                random.Random(f"{self.seed}-{epoch}").shuffle(order)
            self._cached = (epoch, order)
        return self._cached[1]

    def take(self, count: int) -> list[dict[str, Any]]:
        out = []
        while len(out) < count:
            epoch, offset = divmod(self.position, len(self.samples))
            out.append(self.samples[self._order(epoch)[offset]])
            self.position += 1
        return out

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            yield self.take(1)[0]
