"""The accuracy ledger: histories against hand-computed numbers, rows that survive a crash and --resume
exactly, and `rlkit select`. (Ledger accuracy = metrics accuracy on the quickstart: tests/test_quickstart.py.)"""

import json

import pytest

from rlkit.cli import main as cli_main
from rlkit.config import load_config
from rlkit.errors import DataError
from rlkit.ledger import LEDGER_FILE, ProblemHistory, accuracy_history, rank_problems, read_ledger
from rlkit.metrics_log import MetricsLog
from rlkit.runner import run_recipe


def test_history_statistics_match_hand_computed_values():
    h = ProblemHistory("p", epochs=[1, 2, 3, 4], accuracy=[0.5, 0.25, 0.25, 0.0], samples=[8] * 4)
    assert h.mean == 0.25 and h.max == 0.5
    assert h.variance == pytest.approx(((0.25**2) + 0 + 0 + 0.25**2) / 4)  # 0.03125
    assert h.slope == pytest.approx(-0.15)  # sum((x-2.5)(y-0.25)) = -0.75 over sum((x-2.5)^2) = 5
    flat = ProblemHistory("q", [1, 2, 3, 4], [1.0] * 4, [8] * 4)
    rising = ProblemHistory("r", [1, 2], [0.0, 1.0], [8, 8])
    hist = {x.id: x for x in (h, flat, rising)}
    assert [x.id for x in rank_problems(hist, "variance")] == ["r", "p", "q"]  # 0.25, 0.03125, 0
    assert [x.id for x in rank_problems(hist, "accuracy")] == ["p", "r", "q"]
    assert [x.id for x in rank_problems(hist, "slope")] == ["p", "q", "r"]
    assert [x.id for x in rank_problems(hist, "variance", reverse=True)] == ["q", "p", "r"]


RECIPE = (
    "threads: 1\nrollout: {n: 2, max_new_tokens: 24}\ncheckpoint: {every: 2}\neval: {limit: 4}\n"
    "stages:\n  - {type: sft, steps: 2, batch_size: 4}\n"
    "  - {type: rl, steps: 4, batch_size: 2, data: {size: 3}}\n"  # 8 prompts over 3 problems: epochs 1, 2, 3
)


def test_ledger_rows_survive_a_crash_and_resume_without_duplicates_and_feed_select(tmp_path, monkeypatch, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    straight = tmp_path / "straight"
    run_recipe(load_config(recipe), straight)
    rows = read_ledger(straight, "rl")
    assert [(r["step"], r["epoch"]) for r in rows] == [(1, 1), (1, 1), (2, 1), (2, 2), (3, 2), (3, 2), (4, 3), (4, 3)]
    for epoch in (1, 2):
        assert sorted(r["id"] for r in rows if r["epoch"] == epoch) == ["arith-train-0", "arith-train-1", "arith-train-2"]
    assert all(r["samples"] == 2 and 0 <= r["correct"] <= 2 and 0 <= r["truncated"] <= 2 and r["mean_length"] > 0 for r in rows)

    crashed = tmp_path / "crashed"
    real_write = MetricsLog.write

    def crash_at_rl_step_3(self, record):  # after step 3 wrote its ledger rows, before its metrics line and checkpoint
        if record.get("stage") == "rl" and record.get("step") == 3:
            raise RuntimeError("simulated crash")
        real_write(self, record)

    monkeypatch.setattr(MetricsLog, "write", crash_at_rl_step_3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_recipe(load_config(recipe), crashed)
    assert max(r["step"] for r in read_ledger(crashed, "rl")) == 3
    monkeypatch.setattr(MetricsLog, "write", real_write)
    run_recipe(load_config(recipe), crashed, resume=True)
    assert (crashed / LEDGER_FILE).read_text() == (straight / LEDGER_FILE).read_text()  # exact: none missing, none twice

    histories = accuracy_history(straight, "rl")
    assert sorted(histories) == ["arith-train-0", "arith-train-1", "arith-train-2"]
    assert all(h.epochs[:2] == [1, 2] for h in histories.values())
    assert cli_main(["select", str(straight), "--by", "variance", "--top", "2"]) == 0
    out = capsys.readouterr().out
    expected = [h.id for h in rank_problems(histories, "variance")[:2]]
    assert f"data.ids: {json.dumps(expected)}" in out
    assert cli_main(["select", str(straight), "--by", "luck"]) == 2
    assert "--by: unknown ranking 'luck'; expected one of variance, accuracy, slope" in capsys.readouterr().err
    assert cli_main(["select", str(tmp_path)]) == 2
    assert "no ledger" in capsys.readouterr().err
    with pytest.raises(DataError, match="no rows of stage 'sft'"):
        read_ledger(straight, "sft")
