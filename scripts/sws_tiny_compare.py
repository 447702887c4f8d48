"""SwS against BaseRL in the tiny world, from finished runs of recipes/tiny/tiny_sws.yaml.

BaseRL is the same run with its last stage trained on the original data only: the run directory is
copied without that stage and resumed with `<last stage>.data.synthetic_from=null`, so both arms
continue from the same model (the synthesize stage's output, i.e. the initial rl stage's policy) for the
same steps with the same seed. `--aug-seeds K ...` adds, per run, both arms' last stage again with run
seed K (copies `<run>_sws_sK` and `<run>_baserl_sK`): the same initial model and the same new problems,
another draw of the augmented stage's data order and sampling. Prints the weaknesses' share in each
category, the funnel, and both arms' held-out accuracy per category with standard errors, per pair and
pooled over all pairs; writes `<first run>_compare.json`.

    rlkit run recipes/tiny/tiny_sws.yaml -o runs/tiny_sws seed=0
    rlkit run recipes/tiny/tiny_sws.yaml -o runs/tiny_sws_1 seed=1
    python scripts/sws_tiny_compare.py runs/tiny_sws runs/tiny_sws_1 --weak sub --aug-seeds 10
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from rlkit.config import dump_config, load_config
from rlkit.data import load_samples
from rlkit.ledger import accuracy_history
from rlkit.runner import run_recipe
from rlkit.synth.weaknesses import find_weaknesses
from rlkit.world.categories import parse_problem


def _finished(run_dir: Path, stage: str) -> bool:
    summary = run_dir / "summary.json"
    return summary.exists() and stage in json.loads(summary.read_text())["stages"]


def prepare_twin(run_dir: Path, suffix: str, overrides: list[str]) -> tuple[Path, bool]:
    """`<run>_<suffix>`: a copy of the run without its last stage, its config changed by `overrides`, ready to
    resume. Returns (the copy, whether its last stage is already done from an earlier call)."""
    config = load_config(run_dir / "config.yaml")
    last = str(config.stages[-1].name)
    copy = run_dir.parent / f"{run_dir.name}_{suffix}"
    if _finished(copy, last):
        return copy, True
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns(last, "final"))
    summary = json.loads((copy / "summary.json").read_text())
    summary["stages"].pop(last, None)
    summary.pop("final_eval", None)
    (copy / "summary.json").write_text(json.dumps(summary, indent=1))
    for log in ("metrics.jsonl", "ledger.jsonl"):  # the copy's own last stage writes these rows anew
        lines = (copy / log).read_text().splitlines(keepends=True)
        (copy / log).write_text("".join(line for line in lines if json.loads(line)["stage"] != last))
    (copy / "config.yaml").write_text(dump_config(load_config(run_dir / "config.yaml", overrides)))
    return copy, False


def twin(run_dir: Path, suffix: str, overrides: list[str]) -> Path:
    """Run (or reuse) `<run>_<suffix>`: the run without its last stage, resumed with `overrides`."""
    copy, done = prepare_twin(run_dir, suffix, overrides)
    if not done:
        run_recipe(load_config(copy / "config.yaml"), copy, resume=True)
    return copy


def run_both_arms(recipe: Path, run_dir: Path, overrides: list[str] = ()) -> Path:
    """A SwS run and its BaseRL twin, the shared stages once and the two last stages at the same time (one process
    each: the tiny runs use one thread, so two cores run both arms in the time of one). Returns the twin's folder;
    `compare(run_dir, ...)` then finds both arms done."""
    full = load_config(recipe, list(overrides))
    last = str(full.stages[-1].name)
    if not _finished(run_dir, last):
        if not _finished(run_dir, str(full.stages[-2].name)):
            run_recipe(full.model_copy(update={"stages": full.stages[:-1]}), run_dir, resume=(run_dir / "config.yaml").exists())
        (run_dir / "config.yaml").write_text(dump_config(full))
    base, base_done = prepare_twin(run_dir, "baserl", [f"{last}.data.synthetic_from=null"])
    arms = [d for d, done in ((run_dir, _finished(run_dir, last)), (base, base_done)) if not done]
    cli = "import sys; from rlkit.cli import main; sys.exit(main())"
    procs = [subprocess.Popen([sys.executable, "-c", cli, "run", str(d / "config.yaml"), "-o", str(d), "--resume"]) for d in arms]
    failed = [str(d) for d, proc in zip(arms, procs, strict=True) if proc.wait() != 0]
    if failed:
        raise RuntimeError(f"the last stage failed in {failed}; its log is above")
    return base


def baserl_twin(run_dir: Path, seed: int | None = None) -> Path:
    """The BaseRL arm of a finished SwS run (with the run's seed, or `seed` for the last stage)."""
    last = str(load_config(run_dir / "config.yaml").stages[-1].name)
    overrides = [f"{last}.data.synthetic_from=null"] + ([f"seed={seed}"] if seed is not None else [])
    return twin(run_dir, "baserl" if seed is None else f"baserl_s{seed}", overrides)


def answer_of(problem: str) -> int:
    category, operands = parse_problem(problem)
    return category.answer(operands)


def _se(a: float, b: float, n: int) -> float:
    """Of a difference of two accuracies on the same n problems, taken as unpaired (conservative)."""
    return math.sqrt(a * (1 - a) / n + b * (1 - b) / n)


def compare(run_dir: Path, weak_category: str, aug_seed: int | None = None) -> dict[str, Any]:
    """One pair: the run (or its `aug_seed` copy) against its BaseRL twin of the same last-stage seed."""
    run_dir = Path(run_dir)
    config = load_config(run_dir / "config.yaml")
    last, synth = str(config.stages[-1].name), next(s for s in config.stages if s.type == "synthesize")
    before = str(config.stages[-3].name)  # the initial rl stage: both arms start from its policy
    sws_dir = run_dir if aug_seed is None else twin(run_dir, f"sws_s{aug_seed}", [f"seed={aug_seed}"])
    base_dir = baserl_twin(run_dir, aug_seed)
    sws, base = (json.loads((d / "summary.json").read_text())["stages"] for d in (sws_dir, base_dir))
    counts = Counter(row["category"] for row in load_samples(config.eval.data.model_copy(update={"limit": config.eval.limit})))
    counts["all"] = sum(counts.values())
    steps = run_dir / "stages" / str(synth.name) / "synth" / "steps" / "weaknesses.jsonl"
    weak = Counter(row["category"] for line in steps.read_text().splitlines() for row in json.loads(line)["rows"])
    funnel = json.loads((steps.parent.parent / "funnel.json").read_text())
    new = [json.loads(line) for line in (steps.parent.parent / "synthetic.jsonl").read_text().splitlines()]
    labels_right = sum(row["answer"] == str(answer_of(row["problem"])) for row in new)
    originals = Counter(row["category"] for row in {r["id"]: r for r in load_samples(config.stages[-1].data)}.values())

    def accuracy(stages: dict[str, Any], stage: str, category: str) -> float:
        return stages[stage]["eval"]["accuracy" if category == "all" else f"accuracy/{category}"]

    rows = {}
    for category in sorted(counts):
        a, b, n = accuracy(sws, last, category), accuracy(base, last, category), counts[category]
        rows[category] = {"problems": n, "sft": accuracy(sws, str(config.stages[0].name), category),
                          "start": accuracy(sws, before, category), "sws": a, "baserl": b,
                          "sws_minus_baserl": a - b, "se": _se(a, b, n)}
    return {"run": str(run_dir), "seed": config.seed, "aug_seed": config.seed if aug_seed is None else aug_seed,
            "weak_category": weak_category, "weaknesses": dict(weak),
            "weak_share": weak[weak_category] / max(1, sum(weak.values())), "funnel": funnel["funnel"],
            "lost": funnel["counts"], "failure_rates": funnel.get("failure_rates"), "budgets": funnel.get("budgets"),
            "new_by_category": dict(Counter(r["category"] for r in new)), "original_by_category": dict(originals),
            "labels_right": labels_right, "accuracy": rows}


def pooled(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per category over all pairs: the mean difference, its SE from the eval samples alone
    (sqrt(sum se^2) / k) and from the pairs' spread (sd / sqrt(k)); `se` is the larger of the two."""
    k, out = len(results), {}
    for category in results[0]["accuracy"]:
        diffs = [r["accuracy"][category]["sws_minus_baserl"] for r in results]
        mean = sum(diffs) / k
        se_eval = math.sqrt(sum(r["accuracy"][category]["se"] ** 2 for r in results)) / k
        se_seeds = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (k - 1) / k) if k > 1 else float("nan")
        out[category] = {
            "pairs": k, "problems": results[0]["accuracy"][category]["problems"],
            "start": sum(r["accuracy"][category]["start"] for r in results) / k,
            "sws": sum(r["accuracy"][category]["sws"] for r in results) / k,
            "baserl": sum(r["accuracy"][category]["baserl"] for r in results) / k,
            "sws_minus_baserl": mean, "se_eval": se_eval, "se_seeds": se_seeds,
            "se": max(se_eval, se_seeds) if k > 1 else se_eval,
        }
    return out


def pilot(run_dir: Path) -> dict[str, Any]:
    """What the design is chosen by, before any synthesis: held-out accuracy per category after SFT and after
    the initial rl stage, that stage's training accuracy per category per epoch (from the ledger), and where
    the weakness rule (synth.threshold, synth.max_slope) puts its weaknesses."""
    config = load_config(Path(run_dir) / "config.yaml")
    synth = next(s for s in config.stages if s.type == "synthesize")
    initial = next(s for s in config.stages if str(s.name) == str(synth.source or config.stages[config.stages.index(synth) - 1].name))
    stages = json.loads((Path(run_dir) / "summary.json").read_text())["stages"]
    category = {r["id"]: r["category"] for r in load_samples(initial.data)}
    histories = {pid: h.accuracy for pid, h in accuracy_history(Path(run_dir), str(initial.name)).items()}
    weak = Counter(category[pid] for pid in find_weaknesses(histories, synth.synth.threshold, synth.synth.max_slope))
    epochs: dict[str, list[list[float]]] = {}
    for pid, history in histories.items():
        for e, acc in enumerate(history):
            rows = epochs.setdefault(category[pid], [])
            rows.extend([] for _ in range(e + 1 - len(rows)))
            rows[e].append(acc)
    held_out = {name: {k: v for k, v in info["eval"].items() if k.startswith("accuracy")} for name, info in stages.items()}
    return {"held_out": held_out, "problems": dict(Counter(category.values())), "weaknesses": dict(weak),
            "train_accuracy_per_epoch": {c: [round(sum(e) / len(e), 3) for e in rows] for c, rows in sorted(epochs.items())}}


def print_result(result: dict[str, Any]) -> None:
    print(f"\n== {result['run']} (seed {result['seed']}; last stage seed {result['aug_seed']})")
    print(f"weaknesses by category: {result['weaknesses']} ({result['weak_share']:.0%} in '{result['weak_category']}')")
    print("funnel: " + " -> ".join(f"{k} {v}" for k, v in result["funnel"].items()))
    print(f"lost per step: {result['lost']}")
    print(f"original rows by category: {result['original_by_category']}; new problems by category: "
          f"{result['new_by_category']}; majority labels right: {result['labels_right']}")
    print("| category | problems | after SFT | after initial RL | BaseRL | SwS | SwS - BaseRL (SE) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for category, r in result["accuracy"].items():
        print(f"| {category} | {r['problems']} | {r['sft']:.3f} | {r['start']:.3f} | {r['baserl']:.3f} | {r['sws']:.3f} | "
              f"{r['sws_minus_baserl']:+.3f} ({r['se']:.3f}) |")


def print_pooled(table: dict[str, dict[str, float]]) -> None:
    print(f"\n== pooled over {next(iter(table.values()))['pairs']} pairs")
    print("| category | after initial RL | BaseRL | SwS | SwS - BaseRL | SE (eval) | SE (pairs' spread) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for category, r in table.items():
        print(f"| {category} | {r['start']:.3f} | {r['baserl']:.3f} | {r['sws']:.3f} | {r['sws_minus_baserl']:+.3f} | "
              f"{r['se_eval']:.3f} | {r['se_seeds']:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished runs of recipes/tiny/tiny_sws.yaml")
    parser.add_argument("--weak", default="sub", help="the under-represented category")
    parser.add_argument("--aug-seeds", nargs="*", type=int, default=[], help="more last-stage seeds per run, both arms")
    parser.add_argument("--pilot", action="store_true", help="only the SFT and initial-RL numbers the design is chosen by")
    args = parser.parse_args()
    if args.pilot:
        for run in args.runs:
            print(f"== {run}\n" + json.dumps(pilot(run), indent=1))
        return
    results = []
    for run in args.runs:
        for aug_seed in [None, *args.aug_seeds]:
            results.append(compare(run, args.weak, aug_seed))
            print_result(results[-1])
    table = pooled(results)
    print_pooled(table)
    out = args.runs[0].parent / f"{args.runs[0].name}_compare.json"
    out.write_text(json.dumps({"pairs": results, "pooled": table}, indent=1))
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
