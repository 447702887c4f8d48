"""Distillation data from scored teacher samples: SFT rows, DPO pairs and per-problem tags.

The input is what `rlkit generate` (and the `distill` stage through it) writes: one row per teacher
sample with the problem's fields, `completion` and `correct` (the accuracy reward scored 1; rows without
it count `reward` > 0.5 as correct).
Phi-4-Mini-Reasoning keeps the verified-correct solutions for distillation (mid-training on all of
them, fine-tuning on a harder subset) and pairs a correct with an incorrect solution of the same problem
for Rollout DPO, instead of discarding the incorrect ones.

Every output row carries its problem's tags, so a later stage picks a subset with `data.where`:
  pass_rate     fraction of the teacher's samples that were correct (the teacher's view of difficulty)
  mean_length   mean length of the teacher's samples, in characters (no tokenizer needed)
  samples, correct   the counts behind pass_rate
(a `category`, when the problems have one, is kept as it is).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlkit.algos.pairs import select_pairs

# per-sample fields of `rlkit generate`'s rows, not the problem's
SAMPLE_FIELDS = ("completion", "reward", "rewards", "correct", "sample_index", "finish_reason", "pass_rate")


@dataclass
class DistillSets:
    sft: list[dict[str, Any]] = field(default_factory=list)  # one row per correct sample: the problem + `response`
    dpo: list[dict[str, Any]] = field(default_factory=list)  # the problem + `chosen` (correct) + `rejected` (incorrect)
    problems: list[dict[str, Any]] = field(default_factory=list)  # one row per problem with its tags

    def write(self, directory: Path) -> None:
        for name in ("sft", "dpo", "problems"):
            with (directory / f"{name}.jsonl").open("w", encoding="utf-8") as f:
                f.writelines(json.dumps(row) + "\n" for row in getattr(self, name))

    def funnel(self) -> dict[str, int]:
        return {
            "problems": len(self.problems),
            "samples": sum(p["samples"] for p in self.problems),
            "correct": len(self.sft),
            "problems_with_a_correct_sample": sum(p["correct"] > 0 for p in self.problems),
            "pairs": len(self.dpo),
        }


def problem_tags(completions: list[str], correct: list[bool]) -> dict[str, Any]:
    return {
        "pass_rate": sum(correct) / len(correct),
        "mean_length": sum(len(c) for c in completions) / len(completions),
        "samples": len(correct),
        "correct": sum(correct),
    }


def group_by_problem(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The sample rows of each problem (by `id`), problems in order of first appearance."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(str(row["id"]), []).append(row)
    return list(groups.values())


def build_distill_sets(
    rows: list[dict[str, Any]], pair_selection: str = "random", pairs_per_prompt: int = 1, seed: int = 0
) -> DistillSets:
    """SFT rows, DPO pairs (rollout_dpo's selection rules) and tags from scored teacher samples."""
    rng = random.Random(seed)
    sets = DistillSets()
    for samples in group_by_problem(rows):
        problem = {k: v for k, v in samples[0].items() if k not in SAMPLE_FIELDS}
        texts = [str(s["completion"]) for s in samples]
        correct = [bool(s["correct"]) if "correct" in s else float(s["reward"]) > 0.5 for s in samples]
        tagged = {**problem, **problem_tags(texts, correct)}
        sets.problems.append(tagged)
        sets.sft.extend({**tagged, "id": f"{problem['id']}-s{j}", "response": texts[j]} for j, ok in enumerate(correct) if ok)
        for k, (chosen, rejected) in enumerate(select_pairs(correct, [len(t) for t in texts], pair_selection, pairs_per_prompt, rng)):
            sets.dpo.append({**tagged, "id": f"{problem['id']}-p{k}", "chosen": texts[chosen], "rejected": texts[rejected]})
    return sets
