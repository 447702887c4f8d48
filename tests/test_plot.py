"""`rlkit plot RUN_DIR`: PNG curves from metrics.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from rlkit.cli import main as cli
from rlkit.plot import collect_series, global_steps, plot_run


def write_metrics(run_dir: Path, records: list[dict]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def sft_then_rl() -> list[dict]:
    records = [{"stage": "sft", "step": s, "loss": 3.0 - 0.2 * s} for s in range(1, 6)]
    for s in range(1, 9):
        record = {"stage": "rl", "step": s, "reward/mean": 0.1 * s, "reward/math": 0.1 * s, "accuracy": 0.1 * s,
                  "entropy": 1.0 - 0.05 * s, "kl": 0.01 * s, "response_length/mean": 20.0 + s}
        if s % 4 == 0:
            record.update({"eval/accuracy": 0.05 * s, "eval/math500/accuracy": 0.01 * s})
        records.append(record)
    return records


def test_plot_writes_one_png_per_logged_quantity(tmp_path: Path, capsys):
    write_metrics(tmp_path / "run", sft_then_rl())
    assert cli(["plot", str(tmp_path / "run")]) == 0
    printed = capsys.readouterr().out.split()
    names = ["reward", "accuracy", "entropy", "response_length", "kl", "loss"]
    assert printed == [str(tmp_path / "run" / "plots" / f"{n}.png") for n in names]
    for path in printed:
        assert Path(path).stat().st_size > 0
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (700, 400)


def test_panels_without_data_are_skipped_and_output_is_chosen(tmp_path: Path):
    write_metrics(tmp_path / "run", [{"stage": "rl", "step": s, "reward/mean": 0.5} for s in (1, 2)])
    written = plot_run(tmp_path / "run", tmp_path / "pngs")
    assert written == [tmp_path / "pngs" / "reward.png"]


def test_stages_share_one_axis_and_eval_series_are_sparse():
    records = sft_then_rl()
    steps, starts = global_steps(records)
    assert steps[:6] == [1, 2, 3, 4, 5, 6] and steps[-1] == 13
    assert starts == [(1, "sft"), (6, "rl")]
    series = {s.key: s for s in collect_series(records, ["accuracy", "eval/accuracy", "re:eval/.+/accuracy"])}
    assert list(series) == ["accuracy", "eval/accuracy", "eval/math500/accuracy"]
    assert series["eval/math500/accuracy"].steps == [9, 13]
    assert series["eval/math500/accuracy"].values == pytest.approx([0.04, 0.08])
    # reward/math is the same curve as reward/mean: drawn once
    assert [s.key for s in collect_series(records, ["reward/mean", "re:reward/(?!mean$).+"])] == ["reward/mean"]


def test_missing_or_empty_metrics_are_errors(tmp_path: Path, capsys):
    assert cli(["plot", str(tmp_path / "nothing")]) == 2
    assert f"no metrics file: {tmp_path / 'nothing' / 'metrics.jsonl'}" in capsys.readouterr().err
    write_metrics(tmp_path / "odd", [{"stage": "rl", "step": 1, "custom": 1.0}])
    assert cli(["plot", str(tmp_path / "odd")]) == 2
    assert "none of the plotted metrics was logged" in capsys.readouterr().err


def test_plot_of_a_real_tiny_run(tmp_path: Path):
    """A two-stage tiny recipe (SFT, then GRPO with a KL term) logs every plotted quantity."""
    from rlkit.config import load_config
    from rlkit.runner import run_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "threads: 1\nrollout: {n: 2, max_new_tokens: 4}\neval: {limit: 2}\n"
        "stages:\n  - {type: sft, steps: 2, batch_size: 2}\n"
        "  - {type: rl, steps: 2, batch_size: 2, algorithm: {kl_coef: 0.01}}\n"
    )
    run_recipe(load_config(recipe), tmp_path / "run")
    written = plot_run(tmp_path / "run")
    assert [p.stem for p in written] == ["reward", "accuracy", "entropy", "response_length", "kl", "loss"]
    for path in written:
        with Image.open(path) as image:
            assert image.size == (700, 400)
