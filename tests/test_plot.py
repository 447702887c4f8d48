"""`rlkit plot RUN_DIR`: PNG curves from metrics.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from rlkit.cli import main as cli
from rlkit.plot import PANELS, _merge, collect_series, plot_run, stage_names, summary_evals


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


def test_plot_writes_one_png_per_logged_quantity_and_names_the_missing(tmp_path: Path, capsys):
    records = sft_then_rl()
    for record in records:
        record.pop("kl", None)  # a run without a KL term
        if record["stage"] == "rl":
            record["loss"] = 0.01 * record["step"]  # the RL loss, two orders below the SFT loss
    write_metrics(tmp_path / "run", records)
    assert cli(["plot", str(tmp_path / "run")]) == 0
    out, err = capsys.readouterr()
    names = ["reward", "accuracy", "eval_accuracy", "entropy", "response_length", "loss"]
    assert out.split() == [str(tmp_path / "run" / "plots" / f"{n}.png") for n in names]
    assert err == "rlkit: no kl.png: metrics.jsonl has no kl\n"
    sizes = {}
    for path in out.split():
        with Image.open(path) as image:
            assert image.format == "PNG"
            sizes[Path(path).stem] = image.size
    assert sizes["loss"] == (900, 400)  # the SFT loss and the RL loss side by side, each on its own scale
    assert sizes["reward"] == (700, 400)  # only the RL stage has a reward


def test_panels_without_data_are_skipped_and_output_is_chosen(tmp_path: Path):
    write_metrics(tmp_path / "run", [{"stage": "rl", "step": s, "reward/mean": 0.5} for s in (1, 2)])
    written, missing = plot_run(tmp_path / "run", tmp_path / "pngs")
    assert written == [tmp_path / "pngs" / "reward.png"]
    assert "no kl.png: metrics.jsonl has no kl" in missing and len(missing) == len(PANELS) - 1


def test_each_stage_keeps_its_own_steps_and_eval_is_apart_from_training_accuracy():
    records = sft_then_rl()
    assert stage_names(records) == ["sft", "rl"]
    loss = collect_series(records, ["loss"])
    assert [(s.stage, s.steps[0]) for s in loss] == [("sft", 1)]
    series = {s.key: s for s in collect_series(records, PANELS["eval_accuracy"][2])}
    assert list(series) == ["eval/accuracy", "eval/math500/accuracy"]  # training-sample accuracy is not here
    assert series["eval/math500/accuracy"].stage == "rl" and series["eval/math500/accuracy"].steps == [4, 8]
    assert series["eval/math500/accuracy"].values == pytest.approx([0.04, 0.08])
    assert [s.key for s in collect_series(records, PANELS["accuracy"][2])] == ["accuracy"]
    # reward/math is the same curve as reward/mean: drawn once
    assert [s.key for s in collect_series(records, ["reward/mean", "re:reward/(?!mean$).+"])] == ["reward/mean"]


def test_held_out_curve_takes_the_evaluations_of_summary_json(tmp_path: Path):
    run = tmp_path / "run"
    write_metrics(run, sft_then_rl())
    (run / "config.yaml").write_text("stages:\n  - {type: sft, name: sft}\n  - {type: rl, name: rl}\n")
    (run / "summary.json").write_text(json.dumps({"initial_eval": {"accuracy": 0.3}, "stages": {
        "sft": {"eval": {"accuracy": 0.3}}, "rl": {"eval": {"accuracy": 0.7, "math500/accuracy": 0.2}}}}))
    points = [(s.stage, s.key, s.steps, s.values) for s in summary_evals(run, sft_then_rl())]
    assert points == [("rl", "eval/accuracy", [0], [0.3]), ("sft", "eval/accuracy", [5], [0.3]),
                      ("rl", "eval/accuracy", [8], [0.7]), ("rl", "eval/math500/accuracy", [8], [0.2])]
    merged = {(s.stage, s.key): s for s in _merge(collect_series(sft_then_rl(), PANELS["eval_accuracy"][2]) + summary_evals(run, sft_then_rl()))}
    rl = merged[("rl", "eval/accuracy")]
    assert rl.steps == [0, 4, 8] and rl.values == pytest.approx([0.3, 0.2, 0.7])  # initial, periodic, final
    assert merged[("sft", "eval/accuracy")].steps == [5]


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
    written, missing = plot_run(tmp_path / "run")
    assert [p.stem for p in written] == ["reward", "accuracy", "eval_accuracy", "entropy", "response_length", "kl", "loss"]
    assert missing == []
    with Image.open(tmp_path / "run" / "plots" / "eval_accuracy.png") as image:
        assert image.size == (900, 400)  # held-out accuracy after SFT; before and after RL
