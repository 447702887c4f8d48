"""The tiny-world SwS reproduction (slow): SwS against BaseRL for the same steps from the same model.

Subtraction is under-represented in tiny_sws.yaml (SFT add2 1 : sub 0.5; RL set add2 1 : sub 0.15), so the
policy is weak on it. The claim checked is the paper's, qualitatively: the ledger's weaknesses fall mostly in
the weak category, held-out accuracy on it rises more with SwS than with BaseRL by more than two standard
errors, and overall held-out accuracy does not fall. Measured on this project's shared 2-core machine
(2026-12-02, README section "SwS in the tiny world"): NOT reproduced; the claim holds in one pair of five
(seed 0, the one this test runs: +1.8 points on subtraction, SE 3.1, so this test fails there; seed 1: +15.0,
SE 3.0; seed 4: -3.0, SE 2.9; pooled over five pairs +4.4, SE 3.0 from their spread; seeds 2 and 3: no
weaknesses, nothing synthesized).
It is the measurement, not tuned to pass, and runs only with RLKIT_SWS_TINY=1 (about 30 min here under load).
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import pytest

from rlkit.config import load_config
from rlkit.runner import run_recipe

REPO = Path(__file__).resolve().parents[1]


def _compare_module():
    spec = importlib.util.spec_from_file_location("sws_tiny_compare", REPO / "scripts" / "sws_tiny_compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("RLKIT_SWS_TINY"), reason="the effect is seed-dependent (README: SwS in the tiny world); the measurement runs with RLKIT_SWS_TINY=1")
def test_sws_beats_baserl_on_the_weak_category(tmp_path):
    compare = _compare_module()
    run_dir = tmp_path / "tiny_sws"
    run_recipe(load_config(REPO / "recipes" / "tiny" / "tiny_sws.yaml"), run_dir)
    result = compare.compare(run_dir, "sub")
    compare.print_result(result)
    assert result["weak_share"] > 0.5  # the ledger's weaknesses fall mostly in the rare category
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
