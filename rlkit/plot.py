"""Training curves from a run's metrics.jsonl, one PNG per quantity, one panel per stage.

Each stage gets its own panel with its own step axis and y scale: an RL stage's step 1 is drawn at 1 (as
metrics.jsonl says), and the RL loss is not flattened on the SFT loss's scale. Held-out accuracy (the
eval) has its own figure, apart from the accuracy of the training samples, with the evaluations of
summary.json (before the first RL stage, at the end of each stage) as points on it. A quantity the run did
not log is named in the result instead of silently missing. matplotlib runs on Agg: no display needed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlkit.errors import DataError

# file stem -> (title, y label, metric keys or regexes of keys to draw)
PANELS: dict[str, tuple[str, str, list[str]]] = {
    "reward": ("Reward", "mean reward", ["reward/mean", r"re:reward/(?!mean$|std$|errors$|timeouts$).+"]),
    "accuracy": ("Training-sample accuracy", "fraction correct", ["accuracy"]),
    "eval_accuracy": ("Held-out accuracy", "accuracy", ["eval/accuracy", r"re:eval/.+/accuracy"]),
    "entropy": ("Policy entropy", "nats per token", ["entropy"]),
    "response_length": ("Response length", "tokens", ["response_length/mean", "eval/mean_response_length"]),
    "kl": ("KL to the reference", "KL", ["kl"]),
    "loss": ("Loss", "loss", ["loss", "loss/total", "loss/policy"]),
}
RL_LIKE = ("rl", "dpo", "rollout_dpo")  # the stages before the first of which the initial eval runs


@dataclass
class Series:
    key: str
    stage: str
    steps: list[int]
    values: list[float]


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of metrics.jsonl; a half-written last line (a run killed mid-write) is left out."""
    if not path.is_file():
        raise DataError(f"no metrics file: {path} (a run directory holds metrics.jsonl after its first step)")
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    records = []
    for line_no, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if line_no == len(lines):
                break  # being written, or cut by a kill: the resume drops it too
            raise DataError(f"{path}: line {line_no} is not valid JSON ({err.msg})") from None
    if not records:
        raise DataError(f"{path}: no metrics yet (the file is empty)")
    return records


def stage_names(records: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(str(r.get("stage", "")) for r in records))


def _keys(records: list[dict[str, Any]], patterns: list[str]) -> list[str]:
    keys: list[str] = []
    for pattern in patterns:
        if pattern.startswith("re:"):
            regex = re.compile(pattern[3:])
            found = sorted({k for r in records for k in r if regex.fullmatch(k)})
        else:
            found = [pattern] if any(pattern in r for r in records) else []
        keys += [k for k in found if k not in keys]
    return keys


def collect_series(records: list[dict[str, Any]], patterns: list[str]) -> list[Series]:
    """One series per stage and matching key, on the stage's own steps."""
    series: list[Series] = []
    for stage in stage_names(records):
        mine = [r for r in records if str(r.get("stage", "")) == stage]
        for key in _keys(mine, patterns):
            points = [(int(r.get("step", 0)), float(r[key])) for r in mine if isinstance(r.get(key), (int, float))]
            candidate = Series(key, stage, [p[0] for p in points], [p[1] for p in points])
            # one reward's own curve equals reward/mean: draw a curve once
            same = any(s.stage == stage and (s.steps, s.values) == (candidate.steps, candidate.values) for s in series)
            if points and not same:
                series.append(candidate)
    return series


def summary_evals(run_dir: Path, records: list[dict[str, Any]]) -> list[Series]:
    """summary.json's held-out evaluations as points: the initial one at step 0 of the first RL stage, each
    stage's final one at its last step. Empty without summary.json (a run still in its first stage)."""
    path = run_dir / "summary.json"
    if not path.is_file():
        return []
    summary = json.loads(path.read_text())
    last_step = {stage: max(int(r.get("step", 0)) for r in records if str(r.get("stage", "")) == stage) for stage in stage_names(records)}
    points: list[tuple[str, int, dict[str, Any]]] = []
    if "initial_eval" in summary and (first := _first_rl_stage(run_dir, last_step)) is not None:
        points.append((first, 0, summary["initial_eval"]))
    points += [(stage, last_step[stage], info["eval"]) for stage, info in summary.get("stages", {}).items()
               if stage in last_step and isinstance(info.get("eval"), dict)]
    series: list[Series] = []
    for stage, step, result in points:
        for name, value in result.items():
            if name == "accuracy" or name.endswith("/accuracy"):
                series.append(Series(f"eval/{name}", stage, [step], [float(value)]))
    return series


def _first_rl_stage(run_dir: Path, stages: dict[str, int]) -> str | None:
    import yaml

    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        return None
    for stage in (yaml.safe_load(config_path.read_text()) or {}).get("stages", []):
        name = str(stage.get("name") or stage.get("type"))
        if stage.get("type") in RL_LIKE:
            return name if name in stages else None
    return None


def _merge(series: list[Series]) -> list[Series]:
    """Points of one key and stage from several sources (metrics.jsonl, summary.json) as one curve, by step."""
    merged: dict[tuple[str, str], dict[int, float]] = {}
    for s in series:
        merged.setdefault((s.stage, s.key), {}).update(zip(s.steps, s.values))
    return [Series(key, stage, sorted(points), [points[k] for k in sorted(points)]) for (stage, key), points in merged.items()]


def plot_run(run_dir: str | Path, output: str | Path | None = None) -> tuple[list[Path], list[str]]:
    """Write <output>/<panel>.png for each quantity with data (default output: <run_dir>/plots).
    Returns the files written and, for each quantity without data, a line saying so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    records = read_metrics(run_dir / "metrics.jsonl")
    out_dir = Path(output) if output is not None else run_dir / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    order = stage_names(records)
    evals = summary_evals(run_dir, records)
    written, missing = [], []
    for stem, (title, ylabel, patterns) in PANELS.items():
        series = collect_series(records, patterns)
        if stem == "eval_accuracy":
            series = _merge(series + evals)
        if not series:
            missing.append(f"no {stem}.png: metrics.jsonl has no {' or '.join(p.removeprefix('re:') for p in patterns)}")
            continue
        stages = [stage for stage in order if any(s.stage == stage for s in series)]
        fig, axes = plt.subplots(1, len(stages), figsize=(max(7.0, 4.5 * len(stages)), 4), dpi=100, squeeze=False)
        for ax, stage in zip(axes[0], stages):
            for s in (s for s in series if s.stage == stage):
                style = "o-" if len(s.steps) < 20 else "-"  # sparse curves (periodic eval) show their points
                ax.plot(s.steps, s.values, style, label=s.key, markersize=3, linewidth=1.2)
            ax.set(title=f"{stage}", xlabel=f"{stage} step", ylabel=ylabel)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(f"{title} ({run_dir.name})")
        fig.tight_layout()
        path = out_dir / f"{stem}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    if not written:
        known = ", ".join(sorted({p for _, _, ps in PANELS.values() for p in ps if not p.startswith("re:")}))
        raise DataError(f"{run_dir / 'metrics.jsonl'}: none of the plotted metrics was logged (looked for {known}, ...)")
    return written, missing
