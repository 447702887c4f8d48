"""Write evaluation results and print them the way papers report them.

Layout of an output directory:
  <output>/<benchmark>/results.json   the benchmark's numbers (accuracy, avg@k, pass@k, maj@k, lengths, counts)
  <output>/<benchmark>/samples.jsonl  one line per problem: gold answer and every response with its verdict
  <output>/results.json               all benchmarks' results.json in one mapping, plus the model
  <output>/results.md                 the markdown tables printed at the end
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlkit.checkpoint import atomic_write_text
from rlkit.eval.evaluate import BenchmarkResult


def write_benchmark(result: BenchmarkResult, output: Path) -> Path:
    directory = Path(output) / result.benchmark.name
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(directory / "results.json", json.dumps(result.metrics, indent=1))
    if result.problems:
        lines = "".join(json.dumps(problem) + "\n" for problem in result.problems)
        atomic_write_text(directory / "samples.jsonl", lines)
    return directory / "results.json"


def percent(value: float) -> str:
    return f"{100 * value:.1f}"


def main_score_name(metrics: dict[str, Any]) -> str:
    """The number a paper's table shows: avg@k when k > 1 samples were drawn, else accuracy."""
    n = metrics["sampling"]["n"]
    return f"avg@{n}" if n > 1 else "accuracy"


def paper_table(model: str, results: list[BenchmarkResult]) -> str:
    """One row per model, one column per benchmark, then the average over benchmarks (in %)."""
    headers = ["Model"] + [r.benchmark.title + (f" (avg@{r.metrics['sampling']['n']})" if r.metrics["sampling"]["n"] > 1 else "")
                           for r in results] + ["Avg."]
    scores = [r.metrics[main_score_name(r.metrics)] for r in results]
    row = [model] + [percent(s) for s in scores] + [percent(sum(scores) / len(scores))]
    return _table(headers, [row])


def detail_table(results: list[BenchmarkResult]) -> str:
    """One row per benchmark: sampling, avg@k, pass@k, maj@k, length and counts."""
    headers = ["Benchmark", "problems", "n", "temp", "avg@n", "pass@n", "maj@n", "mean len", "truncated", "no answer"]
    rows = []
    for r in results:
        m, n = r.metrics, r.metrics["sampling"]["n"]
        rows.append([
            r.benchmark.title, str(m["problems"]), str(n), f"{m['sampling']['temperature']:g}",
            percent(m[f"avg@{n}"]), percent(m[f"pass@{n}"]), percent(m[f"maj@{n}"]),
            f"{m['mean_response_length']:.0f}", f"{m['truncated']}/{m['samples']}", f"{m['no_answer']}/{m['samples']}",
        ])
    return _table(headers, rows)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_summary(model: str, results: list[BenchmarkResult], output: Path, extra: dict[str, Any] | None = None) -> str:
    """Write <output>/results.json and results.md; return the markdown."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    markdown = f"{paper_table(model, results)}\n\n{detail_table(results)}\n"
    everything = {"model": model, **(extra or {}), "benchmarks": {r.benchmark.name: r.metrics for r in results}}
    atomic_write_text(output / "results.json", json.dumps(everything, indent=1))
    atomic_write_text(output / "results.md", markdown)
    return markdown
