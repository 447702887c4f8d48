"""rlkit's GRPO and DPO losses against TRL's own loss code on identical inputs (TRL is a test dependency).

A real GRPOTrainer / DPOTrainer is built around the tiny-world model; its `_compute_loss` runs the
model forward itself, and rlkit computes its loss from `sequence_logprobs` of the same model on the
same tokens. Each setting that both support must agree to 1e-5.
"""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch

trl = pytest.importorskip("trl")

from rlkit.algos.dpo_loss import dpo_loss
from rlkit.algos.rl_objective import make_policy_loss
from rlkit.config import AlgorithmConfig
from rlkit.learner.base import TokenBatch
from rlkit.learner.logprobs import sequence_logprobs
from rlkit.world.model import build_tiny_model
from rlkit.world.tokenizer import build_tiny_tokenizer

PROMPT_LEN, COMPLETION_LEN, BATCH = 5, 7, 4
COMPLETION_LENGTHS = [7, 3, 5, 1]  # ragged completions, right-padded


@pytest.fixture(scope="module")
def inputs():
    """Token ids (equal-length prompts, ragged completions), masks, advantages and old/ref log-probs."""
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(4, 100, (BATCH, PROMPT_LEN), generator=gen)
    completion = torch.randint(4, 100, (BATCH, COMPLETION_LEN), generator=gen)
    completion_mask = torch.zeros(BATCH, COMPLETION_LEN)
    for row, length in enumerate(COMPLETION_LENGTHS):
        completion_mask[row, :length] = 1
    completion = torch.where(completion_mask.bool(), completion, torch.zeros_like(completion))  # pad id 0
    return {
        "prompt": prompt,
        "completion": completion,
        "completion_mask": completion_mask,
        "advantages": torch.tensor([1.3, -0.7, 0.4, -1.0]),
        "old_noise": 0.3 * torch.randn(BATCH, COMPLETION_LEN, generator=gen),  # ratio != 1: clipping is active
        "ref_noise": 0.5 * torch.randn(BATCH, COMPLETION_LEN, generator=gen),
    }


@pytest.fixture(scope="module")
def grpo_trainer(tmp_path_factory):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    model = build_tiny_model(seed=1)
    args = GRPOConfig(
        output_dir=str(tmp_path_factory.mktemp("trl_grpo")),
        per_device_train_batch_size=BATCH,
        num_generations=BATCH,
        max_completion_length=COMPLETION_LEN,
        temperature=1.0,  # TRL divides logits by the temperature; rlkit scores at temperature 1
        report_to=[],
        use_cpu=True,
        bf16=False,  # TRL's default autocasts to bf16; compare in fp32
        save_strategy="no",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=[lambda completions, **kw: [0.0] * len(completions)],
            args=args,
            train_dataset=Dataset.from_dict({"prompt": ["1+1"] * BATCH}),
            processing_class=build_tiny_tokenizer(),
        )
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop; one micro-batch here
    trainer.model.train()
    return trainer


# TRL loss_type, rlkit loss_agg, KL coef, KL ratio correction, entropy coef, clip low, clip high
SETTINGS = [
    ("grpo", "seq_mean_token_mean", 0.0, False, 0.0, 0.2, 0.2),
    ("grpo", "seq_mean_token_mean", 0.04, True, 0.01, 0.2, 0.28),
    ("bnpo", "token_mean", 0.04, False, 0.0, 0.2, 0.28),
    ("dapo", "token_mean", 0.1, True, -0.02, 0.1, 0.3),
    ("dr_grpo", "seq_mean_token_sum_norm", 0.04, False, 0.01, 0.2, 0.2),
    ("dr_grpo", "seq_mean_token_sum_norm", 0.0, False, 0.0, 0.2, 0.28),
]


@pytest.mark.parametrize("trl_loss, loss_agg, beta, ratio_correction, entropy_coef, clip_low, clip_high", SETTINGS)
def test_grpo_loss_matches_trl(grpo_trainer, inputs, trl_loss, loss_agg, beta, ratio_correction, entropy_coef, clip_low, clip_high):
    trainer = grpo_trainer
    trainer.args.use_bias_correction_kl = ratio_correction
    model = trainer.model
    trainer.loss_type, trainer.beta = trl_loss, beta
    trainer.epsilon_low, trainer.epsilon_high = clip_low, clip_high
    trainer.entropy_coef, trainer._entropy_bonus_enabled, trainer.use_adaptive_entropy = entropy_coef, entropy_coef != 0.0, False

    ids = torch.cat([inputs["prompt"], inputs["completion"]], dim=1)
    attention = torch.cat([torch.ones(BATCH, PROMPT_LEN), inputs["completion_mask"]], dim=1).long()
    with torch.no_grad():
        current, _ = sequence_logprobs(model, ids, attention)
    old = current[:, PROMPT_LEN:] + inputs["old_noise"]
    ref = current[:, PROMPT_LEN:] + inputs["ref_noise"]
    mask = inputs["completion_mask"]

    trl_inputs = {
        "prompt_ids": inputs["prompt"],
        "prompt_mask": torch.ones(BATCH, PROMPT_LEN, dtype=torch.long),
        "completion_ids": inputs["completion"],
        "completion_mask": mask.long(),
        "advantages": inputs["advantages"],
        "old_per_token_logps": old,
        "ref_per_token_logps": ref,
        "num_items_in_batch": mask.sum(),
    }
    model.zero_grad()
    trl_loss_value = trainer._compute_loss(model, trl_inputs)
    trl_loss_value.backward()
    trl_value = float(trl_loss_value.detach())
    trl_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    pad = torch.zeros(BATCH, PROMPT_LEN)
    loss_mask = torch.cat([pad, mask], dim=1)
    batch = TokenBatch(
        ids,
        attention,
        loss_mask,
        advantages=inputs["advantages"][:, None] * loss_mask,
        old_logprobs=torch.cat([pad, old], dim=1),
        ref_logprobs=torch.cat([pad, ref], dim=1),
    )
    alg = AlgorithmConfig(
        loss_agg=loss_agg, clip_low=clip_low, clip_high=clip_high, kl_coef=beta, kl_estimator="k3",
        kl_ratio_correction=ratio_correction, entropy_coef=entropy_coef,
    )
    logprobs, entropy = sequence_logprobs(model, ids, attention, with_entropy=True)
    ours, _ = make_policy_loss(alg, BATCH, float(loss_mask.sum()), COMPLETION_LEN)(batch, logprobs, entropy)
    assert float(ours.detach()) == pytest.approx(trl_value, abs=1e-5)
    ours.backward()  # the same gradient, not only the same value (the KL ratio correction changes only the gradient)
    for ours_grad, trl_grad in zip((p.grad for p in model.parameters()), trl_grads):
        assert torch.allclose(ours_grad, trl_grad, atol=1e-6, rtol=1e-4)
    model.zero_grad()


@pytest.fixture(scope="module")
def dpo_trainer(tmp_path_factory):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    model = build_tiny_model(seed=2)
    args = DPOConfig(
        output_dir=str(tmp_path_factory.mktemp("trl_dpo")), report_to=[], use_cpu=True, bf16=False, save_strategy="no", beta=0.1
    )
    data = Dataset.from_dict({"prompt": ["1+1="], "chosen": ["2"], "rejected": ["3"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = copy.deepcopy(model).eval().requires_grad_(False)  # a frozen reference, as rlkit's dpo stage
        trainer = DPOTrainer(model=model, ref_model=reference, args=args, train_dataset=data, processing_class=build_tiny_tokenizer())
    with torch.no_grad():  # move the policy away from its frozen reference, so the log-ratios are not 0
        gen = torch.Generator().manual_seed(3)
        for param in trainer.model.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=gen))
    trainer.model.train()
    return trainer


@pytest.mark.parametrize("loss_type, beta", [("sigmoid", 0.1), ("sigmoid", 0.5), ("ipo", 0.1), ("ipo", 1.0)])
def test_dpo_loss_matches_trl(dpo_trainer, inputs, loss_type, beta):
    trainer = dpo_trainer
    trainer.loss_types, trainer.loss_weights, trainer.beta = [loss_type], [1.0], beta
    # rows [chosen 0, chosen 1, rejected 0, rejected 1] (TRL's layout), ragged responses, right padding
    ids = torch.cat([inputs["prompt"], inputs["completion"]], dim=1)
    completion_mask = torch.cat([torch.zeros(BATCH, PROMPT_LEN), inputs["completion_mask"]], dim=1)
    attention = torch.cat([torch.ones(BATCH, PROMPT_LEN), inputs["completion_mask"]], dim=1).long()
    trl_inputs = {"input_ids": ids, "attention_mask": attention, "completion_mask": completion_mask.long()}
    trl_value = float(trainer._compute_loss(trainer.model, trl_inputs, return_outputs=False).detach())

    with torch.no_grad():
        policy, _ = sequence_logprobs(trainer.model, ids, attention)
        reference, _ = sequence_logprobs(trainer.ref_model, ids, attention)
    seq = (policy * completion_mask).sum(1)
    ref = (reference * completion_mask).sum(1)
    lengths = completion_mask.sum(1)
    half = BATCH // 2
    ours, _, _ = dpo_loss(seq[:half], seq[half:], ref[:half], ref[half:], beta, loss_type, lengths[:half], lengths[half:])
    assert float(ours.mean()) == pytest.approx(trl_value, abs=1e-5)
    assert abs(trl_value - (math.log(2) if loss_type == "sigmoid" else (1 / (2 * beta)) ** 2)) > 1e-4  # log-ratios are not 0
    assert trainer.ref_model is not trainer.model
