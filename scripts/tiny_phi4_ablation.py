"""The tiny Phi-4-Mini-Reasoning ablation: held-out accuracy after each stage of recipes/tiny/tiny_phi4.yaml,
and each RL stabilizer alone on vs off (same seed, same steps, the same stages before RL).

    python scripts/tiny_phi4_ablation.py --out runs/phi4-ablation [--jobs 4] [--eval-size 1000] [OVERRIDE ...]

1. Runs the recipe once: distill -> midtrain -> sft -> dpo -> rl (all three stabilizers).
2. For each RL variant, copies that run's finished stages up to dpo and reruns only the rl stage
   (`--resume` with the variant's overrides): plain GRPO, and plain GRPO plus one stabilizer. The length
   filter's variant reuses the recipe run's filter result (same policy, seed and temperature: see REUSES_FILTER).
3. Prints (and writes to OUT/ablation.md and OUT/ablation.json) the stage table, with each stage's change
   over the one before in standard errors of the difference, and the stabilizer table with the spread of
   response lengths during RL (the mean over steps of the per-step std of sampled lengths, in tokens).

Held-out accuracy is greedy decoding on the recipe's 200 test problems: one standard error of an
accuracy p is sqrt(p (1 - p) / 200). OVERRIDEs (e.g. threads=1) apply to every run. With --eval-size N,
every row's saved model is evaluated again on N held-out problems (OUT/ablation_evalN.md), no retraining.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "tiny" / "tiny_phi4.yaml"
STAGES = ("midtrain", "sft", "dpo", "rl")
HARD = "add3"
PLAIN = ["rl.length_filter=null", "rl.algorithm.rebalance=false", "rl.algorithm.accuracy_band=null", "rollout.temperature=1.0"]
VARIANTS = {  # name -> overrides of the rl stage; "all three" is the recipe's own run
    "plain GRPO": PLAIN,
    "+ rebalancing (and the 50% band)": [o for o in PLAIN if not o.startswith(("rl.algorithm.rebalance", "rl.algorithm.accuracy_band"))],
    "+ temperature 1.0 -> 0.6": [o for o in PLAIN if not o.startswith("rollout.temperature")],
    "+ length filter": [o for o in PLAIN if not o.startswith("rl.length_filter")],
}
# The filter samples with the stage's starting policy (the same dpo model), the run's seed and the temperature
# of step 1 (1.0 in both the recipe's schedule and plain GRPO's constant), so the "+ length filter" variant
# reuses the recipe run's kept ids (stages/rl/length_filter.json) instead of sampling 4 x 4,000 answers again.
REUSES_FILTER = "+ length filter"


def run(out: Path, overrides: list[str], resume: bool) -> None:
    command = [sys.executable, "-m", "rlkit.cli", "run", str(RECIPE), *overrides, "-o", str(out)] + (["--resume"] if resume else [])
    with (out.parent / f"{out.name}.log").open("w") as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)


def branch_before_rl(base: Path, target: Path) -> None:
    """A copy of `base` whose rl stage has not run: its finished earlier stages are reused as they are."""
    shutil.copytree(base, target, ignore=lambda d, names: [n for n in names if (Path(d) == base and n == "final") or (Path(d) == base / "stages" and n == "rl")])
    lines = (base / "metrics.jsonl").read_text().splitlines()
    (target / "metrics.jsonl").write_text("".join(line + "\n" for line in lines if json.loads(line).get("stage") != "rl"))
    summary = json.loads((base / "summary.json").read_text())
    summary["stages"].pop("rl", None)
    summary.pop("final_eval", None)
    (target / "summary.json").write_text(json.dumps(summary))


def evaluate_model(overrides: list[str], path: Path | None) -> dict:
    """Held-out accuracy of the model saved at `path` (None: the model the recipe starts from), as the runner
    evaluates its stages: greedy decoding on the recipe's eval set (OVERRIDEs such as eval.data.size apply)."""
    import torch

    from rlkit.config import RewardSpec, load_config
    from rlkit.data import load_samples
    from rlkit.eval.evaluate import evaluate_accuracy
    from rlkit.models import load_model, load_tokenizer, resolve_device
    from rlkit.rollout import build_engine
    from rlkit.scoring.pool import RewardPool

    config = load_config(RECIPE, overrides)
    torch.set_num_threads(config.threads)  # as the runner does
    tokenizer = load_tokenizer(config.model)
    model = load_model(config.model, path=path, seed=config.seed).to(resolve_device(config.device))
    samples = load_samples(config.eval.data.model_copy(update={"limit": config.eval.limit or config.eval.data.limit}))
    return evaluate_accuracy(build_engine(config, model, tokenizer), tokenizer, samples, RewardPool([RewardSpec(name=config.eval.reward)]),
                             config.eval.max_new_tokens or config.rollout.max_new_tokens, config.eval.batch_size)


def evaluate_untrained(out: Path, overrides: list[str]) -> None:
    """Held-out accuracy of the model the recipe starts from, as the runner evaluates its stages."""
    (out / "untrained.json").write_text(json.dumps(evaluate_model(overrides, None)))


def models(out: Path) -> list[tuple[str, Path | None]]:
    """Every row's model: the untrained one, each stage's output of the recipe run, each variant's final."""
    rows: list[tuple[str, Path | None]] = [("untrained tiny model", None)]
    rows += [(f"+ {name}", out / "all" / "stages" / name / "output") for name in STAGES[:-1]] + [("+ rl", out / "all" / "final")]
    return rows + [(name, out / slug(name) / "final") for name in VARIANTS]


def larger_eval(out: Path, overrides: list[str], size: int) -> str:
    """Every row's saved model again on `size` held-out problems (no retraining): a table with a standard
    error sqrt(200 / size) times the main table's. Each result is kept in OUT/eval<size>/ (a rerun reuses it)."""
    folder = out / f"eval{size}"
    folder.mkdir(exist_ok=True)
    results = {}
    for label, path in models(out):
        cached = folder / f"{slug(label) or 'untrained'}.json"
        if not cached.exists():
            cached.write_text(json.dumps(evaluate_model([*overrides, f"eval.data.size={size}"], path)))
        results[label] = json.loads(cached.read_text())
    labels = list(results)
    # what each row is compared with: a stage with the stage before (the recipe's rl included), plain GRPO
    # with the dpo model it starts from, each other variant with plain GRPO
    against = dict(zip(labels[1 : len(STAGES) + 1], labels[: len(STAGES)]))
    against.update({name: "+ dpo" if name == "plain GRPO" else "plain GRPO" for name in VARIANTS})
    lines = [f"| model ({size} held-out problems) | held-out accuracy | on {HARD} | change (over) |", "| --- | --- | --- | --- |"]
    for label in labels:
        acc, hard = results[label]["accuracy"], results[label].get(f"accuracy/{HARD}", float("nan"))
        change = ""
        if label in against:
            before = results[against[label]]["accuracy"]
            change = f"{acc - before:+.3f} ({z_score(before, acc, size):+.1f} SE) over {against[label]}"
        lines.append(f"| {label} | {acc:.3f} ± {standard_error(acc, size):.3f} | {hard:.3f} | {change} |")
    (folder / "ablation.json").write_text(json.dumps(results, indent=1))
    text = "\n".join(lines)
    (out / f"ablation_eval{size}.md").write_text(text + "\n")
    return text


def standard_error(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 1e-12) / n)


def z_score(before: float, after: float, n: int) -> float:
    return (after - before) / math.sqrt(standard_error(before, n) ** 2 + standard_error(after, n) ** 2)


def rl_lengths(run_dir: Path) -> float:
    steps = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    spreads = [m["response_length/std"] for m in steps if m.get("stage") == "rl" and "response_length/std" in m]
    return sum(spreads) / len(spreads)


def tables(out: Path) -> tuple[str, dict]:
    summary = json.loads((out / "all" / "summary.json").read_text())
    n = int(summary["initial_eval"]["count"])
    result: dict = {"stages": {}, "stabilizers": {}}
    evals = [("untrained tiny model", json.loads((out / "untrained.json").read_text()))]
    evals += [(f"+ {name}", summary["stages"][name]["eval"]) for name in STAGES]
    lines = ["| stage | held-out accuracy | on add3 (hard) | change over the stage before |", "| --- | --- | --- | --- |"]
    for k, (label, ev) in enumerate(evals):
        acc, hard = ev["accuracy"], ev.get(f"accuracy/{HARD}", float("nan"))
        change = "" if k == 0 else f"{acc - evals[k - 1][1]['accuracy']:+.3f} ({z_score(evals[k - 1][1]['accuracy'], acc, n):+.1f} SE)"
        lines.append(f"| {label} | {acc:.3f} ± {standard_error(acc, n):.3f} | {hard:.3f} | {change} |")
        result["stages"][label] = {"accuracy": acc, "hard": hard}
    lines += ["", "| RL stage (same start, seed, steps) | held-out accuracy | on add3 | response-length std during RL |", "| --- | --- | --- | --- |"]
    for label, directory in [(name, out / slug(name)) for name in VARIANTS] + [("all three (the recipe)", out / "all")]:
        ev = json.loads((directory / "summary.json").read_text())["stages"]["rl"]["eval"]
        spread = rl_lengths(directory)
        lines.append(f"| {label} | {ev['accuracy']:.3f} ± {standard_error(ev['accuracy'], n):.3f} | {ev.get(f'accuracy/{HARD}', float('nan')):.3f} | {spread:.2f} |")
        result["stabilizers"][label] = {"accuracy": ev["accuracy"], "hard": ev.get(f"accuracy/{HARD}"), "length_std": spread}
    return "\n".join(lines), result


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--jobs", type=int, default=1, help="RL variants run at once")
    parser.add_argument("--eval-size", type=int, default=0, help="also evaluate every row's saved model on this many held-out problems")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not (args.out / "untrained.json").exists():
        evaluate_untrained(args.out, args.overrides)
    base = args.out / "all"
    if not (base / "final").is_dir():
        run(base, args.overrides, resume=base.exists())

    def variant(name: str) -> None:
        target = args.out / slug(name)
        if not (target / "final").is_dir():
            if not target.exists():
                branch_before_rl(base, target)
                if name == REUSES_FILTER:
                    (target / "stages" / "rl").mkdir(parents=True, exist_ok=True)
                    shutil.copy2(base / "stages" / "rl" / "length_filter.json", target / "stages" / "rl" / "length_filter.json")
            run(target, args.overrides + VARIANTS[name], resume=True)

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(variant, VARIANTS))
    text, result = tables(args.out)
    (args.out / "ablation.md").write_text(text + "\n")
    (args.out / "ablation.json").write_text(json.dumps(result, indent=1))
    print(text)
    if args.eval_size:
        print("\n" + larger_eval(args.out, args.overrides, args.eval_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
