"""DPO / IPO losses by hand, Rollout-DPO pair selection, the preference batch, and a short dpo stage."""

import json
import math
import random
from pathlib import Path

import pytest
import torch

from rlkit.algos.dpo_loss import dpo_loss
from rlkit.algos.pairs import select_pairs
from rlkit.config import DPOStage
from rlkit.learner.base import TokenBatch, pad_sequences
from rlkit.stages.dpo import make_dpo_loss, preference_batch


def test_sigmoid_dpo_by_hand():
    # chosen log-ratio 1.0 - 0.5 = 0.5, rejected -2.0 - (-1.0) = -1.0; beta 0.1 -> -log sigmoid(0.15)
    loss, chosen_reward, rejected_reward = dpo_loss(
        torch.tensor([1.0]), torch.tensor([-2.0]), torch.tensor([0.5]), torch.tensor([-1.0]), beta=0.1
    )
    assert float(loss) == pytest.approx(-math.log(1 / (1 + math.exp(-0.15))))
    assert float(chosen_reward) == pytest.approx(0.05) and float(rejected_reward) == pytest.approx(-0.1)


def test_equal_policy_and_reference_give_log_2():
    logps = torch.tensor([-3.0, -7.0])
    loss, _, _ = dpo_loss(logps, logps + 1, logps, logps + 1, beta=0.5)
    assert torch.allclose(loss, torch.full((2,), math.log(2)))


def test_ipo_uses_per_token_log_ratios():
    # chosen ratio 2.0 over 4 tokens = 0.5; rejected -3.0 over 2 tokens = -1.5; h = 2.0; beta 0.25 -> (2 - 2)^2 = 0
    args = (torch.tensor([2.0]), torch.tensor([-3.0]), torch.tensor([0.0]), torch.tensor([0.0]))
    loss, _, _ = dpo_loss(*args, beta=0.25, loss_type="ipo", chosen_lengths=torch.tensor([4.0]), rejected_lengths=torch.tensor([2.0]))
    assert float(loss) == pytest.approx(0.0)
    loss, _, _ = dpo_loss(*args, beta=0.5, loss_type="ipo", chosen_lengths=torch.tensor([4.0]), rejected_lengths=torch.tensor([2.0]))
    assert float(loss) == pytest.approx((2.0 - 1.0) ** 2)
    with pytest.raises(ValueError, match="lengths"):
        dpo_loss(*args, beta=0.5, loss_type="ipo")
    with pytest.raises(ValueError, match="sigmoid or ipo"):
        dpo_loss(*args, beta=0.5, loss_type="hinge")


def test_pairs_skip_prompts_without_both_labels():
    rng = random.Random(0)
    assert select_pairs([True, True, True], [1, 2, 3], "random", 2, rng) == []
    assert select_pairs([False, False], [1, 2], "first", 1, rng) == []


def test_pairs_first_and_longest_rejected():
    correct = [False, True, False, True, False]
    lengths = [5, 9, 30, 4, 12]
    assert select_pairs(correct, lengths, "first", 1, random.Random(0)) == [(1, 0)]
    # shortest correct (3: 4 tokens) against longest incorrect (2: 30 tokens), then the next of each
    assert select_pairs(correct, lengths, "longest_rejected", 2, random.Random(0)) == [(3, 2), (1, 4)]
    # every response is used once before any is reused; never more pairs than exist
    pairs = select_pairs(correct, lengths, "first", 10, random.Random(0))
    assert pairs[:3] == [(1, 0), (3, 2), (1, 4)] and len(pairs) == 6 and len(set(pairs)) == 6


def test_random_pairs_are_valid_and_seeded():
    correct = [True, False] * 4
    a = select_pairs(correct, [1] * 8, "random", 3, random.Random(7))
    b = select_pairs(correct, [1] * 8, "random", 3, random.Random(7))
    assert a == b and len(a) == 3 and all(correct[c] and not correct[r] for c, r in a)


def test_preference_batch_interleaves_pairs_and_masks_responses():
    batch = preference_batch([([1, 2], [3, 4, 5], [6]), ([7], [8], [9, 10])], max_length=16, pad_id=0)
    assert batch.input_ids.tolist() == [[1, 2, 3, 4, 5], [1, 2, 6, 0, 0], [7, 8, 0, 0, 0], [7, 9, 10, 0, 0]]
    assert batch.loss_mask.tolist() == [[0, 0, 1, 1, 1], [0, 0, 1, 0, 0], [0, 1, 0, 0, 0], [0, 1, 1, 0, 0]]


def test_dpo_loss_fn_micro_batches_sum_to_the_batch_mean():
    gen = torch.Generator().manual_seed(0)
    mask = torch.ones(4, 3)
    logprobs = -torch.rand(4, 3, generator=gen)
    batch = TokenBatch(torch.zeros(4, 3, dtype=torch.long), torch.ones(4, 3), mask, ref_logprobs=-torch.rand(4, 3, generator=gen))
    loss_fn = make_dpo_loss(DPOStage(type="dpo", beta=0.2), num_pairs=2)
    whole, _ = loss_fn(batch, logprobs, logprobs)
    first, _ = loss_fn(batch.select(slice(0, 2)), logprobs[:2], logprobs[:2])
    second, _ = loss_fn(batch.select(slice(2, 4)), logprobs[2:], logprobs[2:])
    assert float(first + second) == pytest.approx(float(whole))
    with pytest.raises(ValueError, match=r"split a .chosen, rejected. pair"):
        loss_fn(batch.select(slice(0, 3)), logprobs[:3], logprobs[:3])


def test_dpo_stage_learns_its_preferences(tmp_path):
    """A short `dpo` stage on the tiny model: the policy moves toward the chosen answers."""
    from rlkit.config import load_config
    from rlkit.runner import run_recipe

    recipe = write_dpo_recipe(tmp_path)
    run_recipe(load_config(recipe), tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)  # policy == reference at the first step
    assert records[-1]["rewards/margin"] > 0.5 and records[-1]["rewards/accuracy"] == 1.0
    assert records[-1]["loss"] < 0.5


def test_row_splits_never_cut_a_pair():
    batch = preference_batch([([1], [2], [3])] * 3, max_length=8, pad_id=0)  # 6 rows, 3 pairs
    assert [r.tolist() for r in batch.row_splits(2)] == [[0, 1, 2, 3], [4, 5]]
    assert [r.tolist() for r in batch.row_splits(4)] == [[0, 1], [2, 3], [4, 5], []]
    assert [r.tolist() for r in batch.select(slice(0, 4)).row_splits(2)] == [[0, 1], [2, 3]]  # select keeps the group
    plain = pad_sequences([[1, 2]] * 5, [1] * 5, 0)
    assert [len(r) for r in plain.row_splits(2)] == [3, 2]


def test_odd_micro_batch_size_still_keeps_pairs_together():
    """learner.micro_batch_size 3 on DPO rows: micro-batches of 4 rows (whole pairs), same step as one pass."""
    from rlkit.config import LearnerConfig
    from rlkit.learner.torch_learner import TorchLearner
    from rlkit.world.model import build_tiny_model

    pairs = [([5, 6, 7], [8, 9], [10]), ([11], [12, 13, 14], [15, 16]), ([17, 18], [19], [20, 21, 22])]
    batch = preference_batch(pairs, max_length=16, pad_id=0)
    batch.ref_logprobs = torch.zeros(batch.input_ids.shape)
    loss_fn = make_dpo_loss(DPOStage(type="dpo", beta=0.1), num_pairs=3)
    metrics = {}
    for micro_batch_size in (3, 6):
        learner = TorchLearner(build_tiny_model(seed=1), LearnerConfig(micro_batch_size=micro_batch_size), lr=1e-3, device=torch.device("cpu"))
        metrics[micro_batch_size] = learner.train_step(batch, loss_fn)
    assert metrics[3]["loss"] == pytest.approx(metrics[6]["loss"], rel=1e-5)
    assert metrics[3]["grad_norm"] == pytest.approx(metrics[6]["grad_norm"], rel=1e-4)


PREFERENCES = [(12, 5), (30, 41), (7, 8), (55, 22)]


def write_dpo_recipe(tmp_path: Path, extra: str = "") -> Path:
    rows = [{"problem": f"Compute {a}+{b}.", "chosen": f"\\boxed{{{a + b}}}", "rejected": f"\\boxed{{{a + b + 1}}}"} for a, b in PREFERENCES]
    data = tmp_path / "prefs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = tmp_path / "dpo.yaml"
    recipe.write_text(
        f"threads: 1\neval: {{limit: 4}}\nrollout: {{max_new_tokens: 8}}\n{extra}"
        f"stages:\n  - type: dpo\n    steps: 8\n    lr: 1.0e-3\n    batch_size: 4\n    beta: 0.5\n    data: {{source: {data}, template: tiny}}\n"
    )
    return recipe


def test_lora_dpo_stage_trains_the_adapter_against_the_disabled_adapter(tmp_path):
    """Under LoRA the DPO reference is the base model (adapter off): the first loss is log 2 and the
    stage output holds merged weights that differ from the start."""
    from rlkit.config import load_config
    from rlkit.runner import run_recipe

    recipe = write_dpo_recipe(tmp_path, "learner: {lora: {r: 8, alpha: 32, target_modules: [q_proj, v_proj, up_proj, down_proj]}}\n")
    run_recipe(load_config(recipe), tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert records[-1]["rewards/margin"] > records[0]["rewards/margin"] and records[-1]["loss"] < records[0]["loss"]
