"""The SwS pipeline: weaknesses -> concepts -> budget and combinations -> problems -> dedup ->
quality -> answers -> difficulty, each step a plain function of synth/, chained here.

Every step writes what it finishes to `<out>/steps/<step>.jsonl` as it goes, one line per finished
chunk ({"ids": the inputs done, "rows": the outputs kept, "counts": what was dropped and why}).
A rerun reads those lines back and does only the inputs not yet done, so an interrupted run (or a
backend that went down) loses at most the chunk in flight; a torn last line is ignored.

Deduplication runs right after the problems are written rather than last: it needs only the problem
text, and every duplicate removed early is one problem the raters, the answer model and the policy
need not be asked about. The kept set is the same.

The result is `<out>/synthetic.jsonl` (id, problem, answer, category, concepts, level) and
`<out>/funnel.json`: the paper's funnel, the per-category failure rates and budgets, and the failures.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlkit.config import SynthConfig
from rlkit.errors import ConfigError
from rlkit.shared_data import resolve_shared
from rlkit.synth import answers, budget, combinations, concepts, dedup, difficulty, problems, quality, weaknesses
from rlkit.synth.asking import AskStats, Generator, Sampling

STEPS = ("weaknesses", "concepts", "combinations", "problems", "dedup", "quality", "answers", "difficulty")
FUNNEL_LABELS = {
    "original": "original problems",
    "weaknesses": "weaknesses (failed problems)",
    "concepts": "with concepts extracted",
    "combinations": "concept combinations",
    "problems": "problems written",
    "dedup": "after dedup / decontamination",
    "quality": "after the quality filter",
    "answers": "with a majority answer",
    "difficulty": "after the difficulty filter",
}
Progress = Callable[[str, int, int], None]  # (step, items done, items in the step)
OUTPUT_FIELDS = ("id", "problem", "answer", "category", "concepts", "level")


@dataclass
class Backends:
    """Who answers each step. The raters are two models in the paper; the policy is the RL stage's model."""

    concepts: Generator
    writer: Generator
    raters: Sequence[Generator]
    solver: Generator
    policy: Generator
    policy_prompt: Callable[[dict[str, Any]], Any] = lambda row: row["problem"]  # as the policy is prompted in training
    policy_temperature: float = 1.0  # the stage passes the run's rollout settings
    policy_max_tokens: int = 8192
    embed: Callable[[list[str]], list[list[float]]] | None = None  # None: co-occurrence only


@dataclass
class Result:
    rows: list[dict[str, Any]]
    funnel: dict[str, int]
    failure_rates: dict[str, float] = field(default_factory=dict)
    budgets: dict[str, int] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # per step: reason -> items lost
    message: str = ""


class StepLog:
    """One step's finished chunks on disk: which inputs are done, the rows kept, the counts of the rest."""

    def __init__(self, path: Path):
        self.path = path
        self.done: set[str] = set()
        self.rows: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the chunk being written when the run stopped: it is redone
                self.done.update(record["ids"])
                self.rows += record["rows"]
                self.counts.update(record["counts"])

    def append(self, ids: list[str], rows: list[dict[str, Any]], counts: Mapping[str, int]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps({"ids": ids, "rows": rows, "counts": dict(counts)}) + "\n")
        self.done.update(ids)
        self.rows += rows
        self.counts.update(counts)


StepFn = Callable[[list[dict[str, Any]], AskStats, Counter[str]], list[dict[str, Any]]]


def run_step(
    name: str, items: Sequence[dict[str, Any]], fn: StepFn, out: Path, chunk_size: int | None, progress: Progress | None
) -> StepLog:
    """Apply `fn` to the items not yet done, chunk by chunk (chunk_size None: all at once, and only
    once: a whole-set step such as sampling or dedup is not topped up), appending each finished chunk
    to the step's log."""
    log = StepLog(out / "steps" / f"{name}.jsonl")
    todo = [] if chunk_size is None and log.done else [item for item in items if item["id"] not in log.done]
    chunk_size = chunk_size or max(1, len(todo))
    done = len(items) - len(todo)
    if progress:
        progress(name, done, len(items))
    for start in range(0, len(todo), chunk_size):
        chunk = todo[start : start + chunk_size]
        stats, dropped = AskStats(), Counter[str]()
        kept = fn(chunk, stats, dropped)
        log.append([item["id"] for item in chunk], kept, dropped + Counter(stats.failed))
        done += len(chunk)
        if progress:
            progress(name, done, len(items))
    return log


def _whole(fn: Callable[[list[dict[str, Any]], Counter[str]], list[dict[str, Any]]]) -> StepFn:
    """A step that needs all its inputs at once (sampling, dedup): one chunk, no backend."""
    return lambda items, stats, dropped: fn(items, dropped)


def run_pipeline(
    original: Sequence[dict[str, Any]],
    histories: Mapping[str, Sequence[float]],
    backends: Backends,
    config: SynthConfig,
    out: Path,
    seed: int = 0,
    progress: Progress | None = None,
) -> Result:
    """Run every step (resuming finished work under `out`) and write synthetic.jsonl and funnel.json."""
    out.mkdir(parents=True, exist_ok=True)
    seen = [  # the problems the RL run sampled, each with its category under the one name the steps read
        {**row, "category": row.get(config.category_field) or budget.UNCATEGORIZED} for row in original if row["id"] in histories
    ]
    funnel: dict[str, int] = {"original": len(seen)}
    counts: dict[str, dict[str, int]] = {}

    def step(name: str, items: Sequence[dict[str, Any]], fn: StepFn, chunk: int | None = config.chunk_size) -> list[dict[str, Any]]:
        log = run_step(name, items, fn, out, chunk, progress)
        funnel[name] = len(log.rows)
        counts[name] = dict(log.counts)
        return log.rows

    weak = step("weaknesses", seen, _whole(lambda rows, _: weaknesses.weak_rows(rows, histories, config.threshold, config.max_slope)), None)
    rates = budget.failure_rates(seen, [row["id"] for row in weak])
    if not weak:
        message = (
            f"no weaknesses: none of the {len(seen)} problems the RL run sampled stayed at or below accuracy "
            f"{config.threshold} in every epoch with a slope of at most {config.max_slope} (an accuracy history needs "
            "at least two epochs for a slope); nothing is synthesized and the original data passes through"
        )
        return _finish(out, [], funnel, rates, {}, counts, message)

    ask_retries = config.retries
    with_concepts = step("concepts", weak, lambda rows, stats, _: concepts.extract_concepts(
        rows, backends.concepts, stats, config.concepts_template, retries=ask_retries))
    shares = budget.allocate(budget.failure_rates(seen, [r["id"] for r in with_concepts]), config.budget)
    vectors = _concept_embeddings(with_concepts, backends.embed)
    combos = step("combinations", with_concepts, _whole(lambda rows, _: combinations.sample_combinations(
        rows, shares, seed=seed, size=config.combination_size, temperature=config.combination_temperature,
        levels=config.levels, embeddings=vectors)), None)

    writing = Sampling(n=1, temperature=config.problem_temperature, max_tokens=config.problem_max_tokens)
    written = step("problems", combos, lambda rows, stats, dropped: problems.write_problems(
        rows, backends.writer, stats, dropped, config.problem_template, writing, ask_retries))

    references = list(dedup.benchmark_texts(decontamination_dir(config))) if config.decontaminate_dir else []
    unique = step("dedup", written, _whole(lambda rows, dropped: dedup.deduplicate(
        rows, (dedup.problem_text(r) for r in original), references, config.ngram, config.overlap_threshold, dropped)),
        None)

    def rate(rows: list[dict[str, Any]], stats: AskStats, dropped: Counter[str]) -> list[dict[str, Any]]:
        rated = quality.rate_problems(rows, backends.raters, stats, config.rating_template, retries=ask_retries)
        dropped["rated below the bar"] += sum(not r["quality_ok"] for r in rated)
        return [r for r in rated if r["quality_ok"]]

    good = step("quality", unique, rate)

    solving = Sampling(n=config.answer_samples, temperature=config.answer_temperature, max_tokens=config.answer_max_tokens)

    def label(rows: list[dict[str, Any]], stats: AskStats, dropped: Counter[str]) -> list[dict[str, Any]]:
        labelled = answers.label_answers(rows, backends.solver, stats, config.solve_template, solving, config.answer_min_share, ask_retries)
        dropped["no majority answer"] += sum(r["answer"] is None for r in labelled)
        return [r for r in labelled if r["answer"] is not None]

    answered = step("answers", good, label)

    policy_sampling = Sampling(n=config.difficulty_samples, temperature=backends.policy_temperature, max_tokens=backends.policy_max_tokens)

    def filter_difficulty(rows: list[dict[str, Any]], stats: AskStats, dropped: Counter[str]) -> list[dict[str, Any]]:
        scored = difficulty.policy_accuracy(rows, backends.policy, backends.policy_prompt, stats, policy_sampling, ask_retries)
        low, high = config.difficulty_band
        dropped["too hard for the policy"] += sum(r["policy_accuracy"] < low for r in scored)
        dropped["too easy for the policy"] += sum(r["policy_accuracy"] > high for r in scored)
        return [r for r in scored if difficulty.in_band(r["policy_accuracy"], config.difficulty_band)]

    final = step("difficulty", answered, filter_difficulty)
    rows = [{key: row[key] for key in OUTPUT_FIELDS if key in row} | {"source": "sws"} for row in final]
    return _finish(out, rows, funnel, rates, shares, counts, "")


def decontamination_dir(config: SynthConfig) -> Path:
    """`synth.decontaminate_dir` as a folder ('shared:math' = math/ in the shared data folder); a missing one is an
    error, not a silent run without decontamination."""
    try:
        directory = Path(resolve_shared(str(config.decontaminate_dir))).expanduser()
    except ConfigError as err:
        raise ConfigError(f"synth.decontaminate_dir: {err} (or set synth.decontaminate_dir: null to skip decontamination)") from None
    if not directory.is_dir():
        raise ConfigError(f"synth.decontaminate_dir: no such folder: {directory} (or set it to null to skip decontamination)")
    return directory


def _concept_embeddings(rows: Sequence[dict[str, Any]], embed: Callable[[list[str]], list[list[float]]] | None) -> dict[str, list[float]] | None:
    if embed is None:
        return None
    names = sorted({c for row in rows for c in row["concepts"]})
    return dict(zip(names, embed(names), strict=True)) if names else None


def _finish(
    out: Path, rows: list[dict[str, Any]], funnel: dict[str, int], rates: dict[str, float],
    shares: dict[str, int], counts: dict[str, dict[str, int]], message: str,
) -> Result:
    with (out / "synthetic.jsonl").open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    result = Result(rows, funnel, rates, shares, counts, message)
    summary = {"funnel": funnel, "failure_rates": rates, "budgets": shares, "counts": counts, "message": message}
    (out / "funnel.json").write_text(json.dumps(summary, indent=1) + "\n")
    return result
