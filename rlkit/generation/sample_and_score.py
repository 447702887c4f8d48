"""Sample n completions per problem from a Generator, score each with the recipe's rewards, and append
one row per completion to a .jsonl file: the core of rejection-sampled distillation data and best-of-n
(`rlkit generate`, and the data stages built on it).

A row is the problem's fields plus `sample_index`, `completion`, `finish_reason`, `reward` (the weighted
total), `rewards` (each reward's score), `correct` (the accuracy reward scored 1) and `pass_rate` (the
problem's mean accuracy over its n samples). Rows are keyed by (problem id, sample index) and a problem's
n rows are written together, after scoring: an interrupted job rerun with the same output skips the
problems already written, drops the rows of a problem cut off mid-write, and never writes a key twice.
A prompt whose request failed is recorded (`<output>.failures.jsonl`: id and reason) and skipped; a rerun
samples it again.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlkit.generation.base import Generator
from rlkit.progress import ProgressBar
from rlkit.scoring.pool import RewardPool


@dataclass
class Funnel:
    problems: int = 0  # in the input
    resumed: int = 0  # already complete in the output when the job started
    sampled: int = 0  # problems whose samples this job wrote
    samples: int = 0  # rows this job wrote
    correct: int = 0
    solved: int = 0  # problems (of those sampled now) with at least one correct sample
    failed_requests: int = 0
    reward_errors: int = 0
    reward_timeouts: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)  # {"id", "error"} per failed prompt
    seconds: float = 0.0

    def lines(self) -> list[tuple[str, str]]:
        rate = f"{self.correct / self.samples:.3f}" if self.samples else "-"
        return [
            ("problems in the input", str(self.problems)),
            ("already done (resumed)", str(self.resumed)),
            ("problems sampled now", str(self.sampled)),
            ("samples written", str(self.samples)),
            ("correct samples", f"{self.correct} ({rate})"),
            ("problems with a correct sample", str(self.solved)),
            ("failed requests (skipped)", str(self.failed_requests)),
            ("reward errors / timeouts", f"{self.reward_errors} / {self.reward_timeouts}"),
        ]


def failures_path(output: Path) -> Path:
    return output.with_name(output.name + ".failures.jsonl")


def completed_problems(output: Path, n: int) -> set[str]:
    """Ids whose sample indices 0..n-1 are all in `output`. Rows of other problems (a write cut off by a
    crash, or a different n) and a torn last line are removed from the file, so they are redone once."""
    if not output.exists():
        return set()
    rows, torn = [], False
    for line in output.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            torn = True  # only a crash mid-line writes this; the problem is redone
    indices: dict[str, set[int]] = {}
    for row in rows:
        indices.setdefault(str(row["id"]), set()).add(int(row["sample_index"]))
    done = {pid for pid, got in indices.items() if set(range(n)) <= got}
    kept = [row for row in rows if str(row["id"]) in done]
    if torn or len(kept) != len(rows):
        tmp = output.with_name(output.name + ".tmp")
        tmp.write_text("".join(json.dumps(row) + "\n" for row in kept), encoding="utf-8")
        os.replace(tmp, output)
    return done


def sample_and_score(
    generator: Generator,
    problems: Sequence[dict[str, Any]],
    output: Path,
    scorer: RewardPool,
    n: int,
    accuracy_reward: str,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_tokens: int = 256,
    stop: Sequence[str] | None = None,
    seed: int = 0,
    chunk: int = 32,
    progress: bool = True,
) -> Funnel:
    """Sample, score and append (see the module doc); `problems` are sample dicts with `id` and `prompt`."""
    started = time.time()
    output.parent.mkdir(parents=True, exist_ok=True)
    done = completed_problems(output, n)
    todo = [p for p in problems if str(p["id"]) not in done]
    funnel = Funnel(problems=len(problems), resumed=len(problems) - len(todo))
    bar = ProgressBar("generate", len(todo), every=1, enabled=progress)
    try:
        with output.open("a", encoding="utf-8") as out:
            for start in range(0, len(todo), chunk):
                batch = todo[start : start + chunk]
                generations = generator.generate([p["prompt"] for p in batch], n=n, temperature=temperature, top_p=top_p,
                                                 max_tokens=max_tokens, stop=stop, seed=seed)
                ok = [(p, g) for p, g in zip(batch, generations) if not g.failed and len(g.texts) == n]
                for problem, generation in zip(batch, generations):
                    if generation.failed or len(generation.texts) != n:
                        funnel.failures.append({"id": str(problem["id"]), "error": generation.error or f"{len(generation.texts)} texts, asked for {n}"})
                texts = [t for _, g in ok for t in g.texts]
                scored = scorer.score(texts, [p for p, _ in ok for _ in range(n)])
                funnel.reward_errors += scored.errors
                funnel.reward_timeouts += scored.timeouts
                for k, (problem, generation) in enumerate(ok):
                    out.write(_problem_rows(problem, generation, scored, k * n, n, accuracy_reward, funnel))
                out.flush()
                bar.advance(len(batch), samples=len(ok) * n)
    finally:
        bar.close()
    funnel.failed_requests = len(funnel.failures)
    failures_path(output).write_text("".join(json.dumps(f) + "\n" for f in funnel.failures), encoding="utf-8")
    funnel.seconds = time.time() - started
    return funnel


def _problem_rows(problem: dict[str, Any], generation: Any, scored: Any, offset: int, n: int,
                  accuracy_reward: str, funnel: Funnel) -> str:
    accuracy = scored.per_reward[accuracy_reward][offset : offset + n]
    correct = [score >= 1.0 for score in accuracy]
    funnel.sampled += 1
    funnel.samples += n
    funnel.correct += sum(correct)
    funnel.solved += any(correct)
    lines = []
    for j in range(n):
        row = {
            **problem,
            "sample_index": j,
            "completion": generation.texts[j],
            "finish_reason": generation.finish_reasons[j] if j < len(generation.finish_reasons) else "stop",
            "reward": scored.total[offset + j],
            "rewards": {name: scores[offset + j] for name, scores in scored.per_reward.items()},
            "correct": correct[j],
            "pass_rate": sum(accuracy) / n,
        }
        lines.append(json.dumps(row) + "\n")
    return "".join(lines)
