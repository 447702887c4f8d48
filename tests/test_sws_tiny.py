"""The tiny-world SwS reproduction (slow, in CI): SwS against BaseRL for the same steps from the same model.

Subtraction is under-represented in tiny_sws.yaml (SFT add2 1 : sub 0.5; RL set add2 1 : sub 0.15), so the
policy is weak on it. The claim checked is the paper's, qualitatively: the ledger's weaknesses concentrate in
the weak category (its failure rate is the highest, so it gets most of the synthesis budget), held-out
accuracy on it rises more with SwS than with BaseRL by more than two standard errors, and overall held-out
accuracy does not fall. Measured on this project's 2-core machine (2026-12-02, README section "SwS in the tiny
world", design 3): the accuracy claim held in every pipeline run (seeds 0-7); seed 0, the one run
here: subtraction +10.1 points over BaseRL (SE 3.0), overall +3.2; its weaknesses are 4 subtraction of 20
problems and 5 addition of 140 (failure rates 0.200 and 0.036: 44% of the weaknesses by count, the reason the
assertion is on the rates). 1,173 s with three other runs sharing the 2 cores (both arms' last stages run at once).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _compare_module():
    spec = importlib.util.spec_from_file_location("sws_tiny_compare", REPO / "scripts" / "sws_tiny_compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_sws_beats_baserl_on_the_weak_category(tmp_path):
    compare = _compare_module()
    run_dir = tmp_path / "tiny_sws"
    compare.run_both_arms(REPO / "recipes" / "tiny" / "tiny_sws.yaml", run_dir)
    result = compare.compare(run_dir, "sub")
    compare.print_result(result)
    rates = result["failure_rates"]
    assert max(rates, key=rates.get) == "sub" and result["weaknesses"]["sub"] > 0  # the weak category fails most
    assert result["budgets"]["sub"] > sum(result["budgets"].values()) / 2  # so most new problems are written for it
    weak, overall = result["accuracy"]["sub"], result["accuracy"]["all"]
    assert weak["sws_minus_baserl"] > 2 * weak["se"]
    n, start, end = overall["problems"], overall["start"], overall["sws"]
    assert end >= start - 2 * math.sqrt(start * (1 - start) / n + end * (1 - end) / n)  # overall does not fall


def test_pooled_pairs_take_the_larger_of_the_eval_and_spread_errors():
    pooled = _compare_module().pooled

    def pair(diff: float, se: float) -> dict:
        return {"accuracy": {"sub": {"problems": 500, "start": 0.5, "sws": 0.5 + diff, "baserl": 0.5,
                                     "sws_minus_baserl": diff, "se": se}}}

    table = pooled([pair(0.02, 0.03), pair(0.10, 0.04)])["sub"]
    assert table["sws_minus_baserl"] == pytest.approx(0.06)
    assert table["se_eval"] == pytest.approx(0.025)  # sqrt(.03^2 + .04^2) / 2
    assert table["se_seeds"] == pytest.approx(0.04)  # sd of (.02, .10) = .0566, / sqrt(2)
    assert table["se"] == pytest.approx(0.04) and table["sws"] == pytest.approx(0.56)
    one = pooled([pair(0.05, 0.03)])["sub"]
    assert one["se"] == pytest.approx(0.03) and math.isnan(one["se_seeds"])
