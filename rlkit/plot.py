"""Training curves from a run's metrics.jsonl, one PNG per quantity.

Stages are laid end to end on one x axis (a run's global step), with a dotted line where a stage
starts. A panel holds every metric of its group that the run logged; groups with no data are skipped.
matplotlib runs on the Agg backend: no display is needed.
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
    "accuracy": ("Accuracy", "accuracy", ["accuracy", "eval/accuracy", r"re:eval/.+/accuracy"]),
    "entropy": ("Policy entropy", "nats per token", ["entropy"]),
    "response_length": ("Response length", "tokens", ["response_length/mean", "eval/mean_response_length"]),
    "kl": ("KL to the reference", "KL", ["kl"]),
    "loss": ("Loss", "loss", ["loss", "loss/total", "loss/policy"]),
}


@dataclass
class Series:
    key: str
    steps: list[int]
    values: list[float]


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise DataError(f"no metrics file: {path} (a run directory holds metrics.jsonl after its first step)")
    records = []
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: line {line_no} is not valid JSON ({err.msg})") from None
    if not records:
        raise DataError(f"{path}: no metrics yet (the file is empty)")
    return records


def global_steps(records: list[dict[str, Any]]) -> tuple[list[int], list[tuple[int, str]]]:
    """Each record's step on one axis over all stages, and (first global step, name) of each stage."""
    offsets: dict[str, int] = {}
    starts: list[tuple[int, str]] = []
    end = 0
    steps = []
    for record in records:
        stage = str(record.get("stage", ""))
        if stage not in offsets:
            offsets[stage] = end
            starts.append((end + 1, stage))
        step = offsets[stage] + int(record.get("step", 0))
        end = max(end, step)
        steps.append(step)
    return steps, starts


def collect_series(records: list[dict[str, Any]], patterns: list[str]) -> list[Series]:
    steps, _ = global_steps(records)
    keys: list[str] = []
    for pattern in patterns:
        if pattern.startswith("re:"):
            regex = re.compile(pattern[3:])
            found = sorted({k for r in records for k in r if regex.fullmatch(k)})
        else:
            found = [pattern] if any(pattern in r for r in records) else []
        keys += [k for k in found if k not in keys]
    series = []
    for key in keys:
        points = [(s, r[key]) for s, r in zip(steps, records) if isinstance(r.get(key), (int, float))]
        candidate = Series(key, [p[0] for p in points], [float(p[1]) for p in points])
        # one reward's own curve equals reward/mean: draw a curve once
        if points and not any(s.steps == candidate.steps and s.values == candidate.values for s in series):
            series.append(candidate)
    return series


def plot_run(run_dir: str | Path, output: str | Path | None = None) -> list[Path]:
    """Write <output>/<panel>.png for each panel with data (default output: <run_dir>/plots)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    records = read_metrics(run_dir / "metrics.jsonl")
    _, starts = global_steps(records)
    out_dir = Path(output) if output is not None else run_dir / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, (title, ylabel, patterns) in PANELS.items():
        series = collect_series(records, patterns)
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
        for s in series:
            style = "o-" if len(s.steps) < 20 else "-"  # sparse curves (periodic eval) show their points
            ax.plot(s.steps, s.values, style, label=s.key, markersize=3, linewidth=1.2)
        for first_step, name in starts[1:] if len(starts) > 1 else []:
            ax.axvline(first_step - 0.5, color="grey", linestyle=":", linewidth=1)
            ax.annotate(name, (first_step - 0.5, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -3),
                        textcoords="offset points", fontsize=8, va="top", ha="left", color="grey")
        ax.set(title=f"{title} ({run_dir.name})", xlabel="step", ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"{stem}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    if not written:
        known = ", ".join(sorted({p for _, _, ps in PANELS.values() for p in ps if not p.startswith("re:")}))
        raise DataError(f"{run_dir / 'metrics.jsonl'}: none of the plotted metrics was logged (looked for {known}, ...)")
    return written
