"""Weight sync into an HF engine that holds its own model copy (so the sync is real): after
`engine.update_weights(learner.named_weights())`, the engine's log-probabilities of the response it
decodes equal the learner's log-probabilities of that response, for full fine-tuning and LoRA.

Tolerance: 1e-4 per token in fp32. The engine decodes with a KV cache one token at a time, the
learner scores the whole sequence in one forward pass; the two agree to ~1e-6 when the weights are
the same, while one training step here moves them by > 1e-2.
"""

import copy

import pytest
import torch

from rlkit.config import LearnerConfig, LoraConfig
from rlkit.learner.base import pad_sequences
from rlkit.learner.torch_learner import TorchLearner
from rlkit.models import encode_prompt
from rlkit.rollout.base import SamplingParams
from rlkit.rollout.hf import HFEngine
from rlkit.stages.sft import sft_loss
from rlkit.world.model import build_tiny_model
from rlkit.world.tokenizer import build_tiny_tokenizer

TOLERANCE = 1e-4
GREEDY = SamplingParams(n=1, temperature=0.0, max_new_tokens=16)


def engine_vs_learner(engine: HFEngine, learner, prompts: list[list[int]], pad_id: int) -> float:
    """Largest per-token gap between the engine's decode log-probabilities and the learner's."""
    completions = engine.generate(prompts, GREEDY)
    batch = pad_sequences([c.prompt_ids + c.response_ids for c in completions], [len(c.prompt_ids) for c in completions], pad_id)
    learner_lp, _ = learner.logprobs(batch)
    gap = 0.0
    for row, c in enumerate(completions):
        start = len(c.prompt_ids)
        ours = learner_lp[row, start : start + len(c.response_ids)]
        gap = max(gap, float((ours - torch.tensor(c.logprobs)).abs().max()))
    return gap


@pytest.mark.parametrize("lora", [None, LoraConfig(r=4, alpha=16, target_modules=["q_proj", "v_proj", "up_proj"])], ids=["full", "lora"])
def test_engine_logprobs_equal_learner_logprobs_after_weight_update(lora):
    tok = build_tiny_tokenizer()
    policy = build_tiny_model(seed=3)
    prompts = [encode_prompt(tok, [{"role": "user", "content": f"Compute {a}+{b}."}]) for a, b in ((12, 7), (40, 33))]
    learner = TorchLearner(copy.deepcopy(policy), LearnerConfig(micro_batch_size=4, lora=lora), lr=2e-2, device=torch.device("cpu"))
    engine = HFEngine(copy.deepcopy(policy), tok)  # its own copy: nothing shared with the learner

    assert engine_vs_learner(engine, learner, prompts, tok.pad_token_id) < TOLERANCE  # same start

    response = tok("<think>\n12+7=19\n</think>\n\\boxed{19}", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    batch = pad_sequences([p + response for p in prompts], [len(p) for p in prompts], tok.pad_token_id)
    for _ in range(2):
        learner.train_step(batch, sft_loss(float(batch.loss_mask.sum())))
    assert engine_vs_learner(engine, learner, prompts, tok.pad_token_id) > 1e-2  # stale engine: the check can fail

    engine.update_weights(learner.named_weights())
    assert engine_vs_learner(engine, learner, prompts, tok.pad_token_id) < TOLERANCE
    names = {name for name, _ in engine.model.named_parameters()}
    assert {name for name, _ in learner.named_weights()} == names  # HF names, merged under LoRA (no adapter tensors)
