"""SwS against BaseRL in the tiny world, from one finished run of recipes/tiny/tiny_sws.yaml.

BaseRL is the same run with its last stage trained on the original data only: the run directory is
copied without that stage and resumed with `<last stage>.data.synthetic_from=null`, so both runs
continue from the same model (the synthesize stage's output, i.e. the initial rl stage's policy) for the
same steps with the same seed. Prints the weaknesses' share in each category, the funnel, and both runs'
held-out accuracy per category, with standard errors; writes compare.json next to the run.

    rlkit run recipes/tiny/tiny_sws.yaml -o runs/tiny_sws
    python scripts/sws_tiny_compare.py runs/tiny_sws
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from rlkit.config import dump_config, load_config
from rlkit.data import load_samples
from rlkit.runner import run_recipe
from rlkit.world.categories import parse_problem


def baserl_twin(run_dir: Path) -> Path:
    """Run (or reuse) the BaseRL twin of a finished SwS run; returns its directory."""
    config = load_config(run_dir / "config.yaml")
    last = str(config.stages[-1].name)
    twin = run_dir.parent / f"{run_dir.name}_baserl"
    if not (twin / "summary.json").exists() or last not in json.loads((twin / "summary.json").read_text())["stages"]:
        shutil.rmtree(twin, ignore_errors=True)
        shutil.copytree(run_dir, twin, ignore=shutil.ignore_patterns(last, "final"))
        summary = json.loads((twin / "summary.json").read_text())
        summary["stages"].pop(last, None)
        summary.pop("final_eval", None)
        (twin / "summary.json").write_text(json.dumps(summary, indent=1))
        for log in ("metrics.jsonl", "ledger.jsonl"):  # the twin's own last stage writes these rows anew
            lines = (twin / log).read_text().splitlines(keepends=True)
            (twin / log).write_text("".join(line for line in lines if json.loads(line)["stage"] != last))
        base = load_config(run_dir / "config.yaml", [f"{last}.data.synthetic_from=null"])
        (twin / "config.yaml").write_text(dump_config(base))
        run_recipe(base, twin, resume=True)
    return twin


def answer_of(problem: str) -> int:
    category, operands = parse_problem(problem)
    return category.answer(operands)


def compare(run_dir: Path, weak_category: str) -> dict[str, Any]:
    run_dir = Path(run_dir)
    config = load_config(run_dir / "config.yaml")
    last, synth = str(config.stages[-1].name), next(s for s in config.stages if s.type == "synthesize")
    before = str(config.stages[-3].name)  # the initial rl stage: both runs start from its policy
    twin = baserl_twin(run_dir)
    sws, base = (json.loads((d / "summary.json").read_text())["stages"] for d in (run_dir, twin))
    counts = Counter(row["category"] for row in load_samples(config.eval.data.model_copy(update={"limit": config.eval.limit})))
    counts["all"] = sum(counts.values())
    steps = run_dir / "stages" / str(synth.name) / "synth" / "steps" / "weaknesses.jsonl"
    weak = Counter(row["category"] for line in steps.read_text().splitlines() for row in json.loads(line)["rows"])
    funnel = json.loads((steps.parent.parent / "funnel.json").read_text())
    new = [json.loads(line) for line in (steps.parent.parent / "synthetic.jsonl").read_text().splitlines()]
    labels_right = sum(row["answer"] == str(answer_of(row["problem"])) for row in new)

    def accuracy(stages: dict[str, Any], stage: str, category: str) -> float:
        return stages[stage]["eval"]["accuracy" if category == "all" else f"accuracy/{category}"]

    rows = {}
    for category in sorted(counts):
        start = accuracy(sws, before, category)
        a, b = accuracy(sws, last, category), accuracy(base, last, category)
        n = counts[category]
        se = math.sqrt(a * (1 - a) / n + b * (1 - b) / n)  # of a difference of two accuracies on n problems (unpaired: conservative)
        rows[category] = {"problems": n, "start": start, "sws": a, "baserl": b, "sws_minus_baserl": a - b, "se": se}
    result = {"weak_category": weak_category, "weaknesses": dict(weak), "weak_share": weak[weak_category] / max(1, sum(weak.values())),
              "funnel": funnel["funnel"], "lost": funnel["counts"], "new_by_category": dict(Counter(r["category"] for r in new)),
              "labels_right": labels_right, "accuracy": rows}
    (run_dir.parent / f"{run_dir.name}_compare.json").write_text(json.dumps(result, indent=1))
    return result


def print_result(result: dict[str, Any]) -> None:
    print(f"weaknesses by category: {result['weaknesses']} ({result['weak_share']:.0%} in '{result['weak_category']}')")
    print("funnel: " + " -> ".join(f"{k} {v}" for k, v in result["funnel"].items()))
    print(f"lost per step: {result['lost']}")
    print(f"new problems by category: {result['new_by_category']}; majority labels right: {result['labels_right']}")
    print("| category | problems | start | BaseRL | SwS | SwS - BaseRL (SE) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for category, r in result["accuracy"].items():
        print(f"| {category} | {r['problems']} | {r['start']:.3f} | {r['baserl']:.3f} | {r['sws']:.3f} | "
              f"{r['sws_minus_baserl']:+.3f} ({r['se']:.3f}) |")


if __name__ == "__main__":
    print_result(compare(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "sub"))
