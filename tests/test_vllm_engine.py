"""The vLLM engine against the learner, on the CPU build of vLLM (run: bash scripts/ci_step_vllm.sh).

One engine is started for the module (~20-30 s on 2 cores). Every test pushes the weights it needs
first, so the tests do not depend on their order.

Tolerance: the engine's logprobs equal the torch learner's `logprobs(batch)` (`sequence_logprobs`)
on the same token ids within LOGPROB_TOL = 1e-4 (absolute, per token). Both run the model in fp32
on CPU; they differ only in kernel order (vLLM's CPU attention and fused q/k/v, gate/up projections
vs. transformers' eager ops), which moves a logprob by ~1e-6 here. A missed or partial weight
update (or a stale prefix cache) moves them by ~1e-1, three orders of magnitude above it.
"""

from __future__ import annotations

import copy
import os
import socket
import threading
import time
import warnings

import pytest
import torch

from rlkit.config import LearnerConfig, LoraConfig
from rlkit.learner.base import pad_sequences
from rlkit.learner.torch_learner import TorchLearner
from rlkit.models import encode_prompt
from rlkit.rollout.base import SamplingParams
from rlkit.rollout.weight_group import broadcast_weights, open_weight_update_group, weight_metadata
from rlkit.world.model import build_tiny_model
from rlkit.world.tokenizer import build_tiny_tokenizer

pytestmark = pytest.mark.vllm

LOGPROB_TOL = 1e-4
UPDATE_EFFECT = 1e-2  # a weight update must move the fixed response's logprobs by more than this

QUESTIONS = [
    "What is 12 + 7?",
    "Compute 3 * (4 + 5) and explain each step. " * 6,  # > one KV block: the prefix cache holds it across updates
    "What is 9 - 4?",
]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def base_policy() -> torch.nn.Module:
    return build_tiny_model(seed=0).eval()


@pytest.fixture(scope="module")
def prompts(tokenizer) -> list[list[int]]:
    return [encode_prompt(tokenizer, [{"role": "user", "content": q}]) for q in QUESTIONS]


@pytest.fixture(scope="module")
def engine(base_policy, tokenizer):
    """Started the way a run starts it: build_engine writes the policy to a temporary directory for vLLM."""
    from rlkit.config import RunConfig
    from rlkit.rollout import build_engine

    config = RunConfig.model_validate({"rollout": {"engine": "vllm"}, "stages": [{"type": "rl"}]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        started = time.perf_counter()
        eng = build_engine(config, base_policy, tokenizer)
        eng.start_seconds = time.perf_counter() - started
    eng.start_warnings = [str(w.message) for w in caught]
    model_dir = eng._owned_dir.name
    yield eng
    eng.close()
    assert not os.path.exists(model_dir)  # the temporary policy directory is removed


def learner_logprobs(learner, prompts: list[list[int]], responses: list[list[int]]) -> list[torch.Tensor]:
    """The learner's own `logprobs(batch)` of each response token given its prefix."""
    batch = pad_sequences([p + r for p, r in zip(prompts, responses)], [len(p) for p in prompts], pad_id=0)
    logprobs, _ = learner.logprobs(batch)
    return [logprobs[i, len(p) : len(p) + len(r)] for i, (p, r) in enumerate(zip(prompts, responses))]


def trained_learner(base_policy: torch.nn.Module, prompts, responses, lora: LoraConfig | None, lr: float) -> TorchLearner:
    """A torch learner (full fine-tuning, or LoRA) after three real optimizer steps that raise the
    likelihood of `responses`: its weights have moved the way training moves them."""
    learner = TorchLearner(copy.deepcopy(base_policy), LearnerConfig(lora=lora), lr=lr, device=torch.device("cpu"))
    batch = pad_sequences([p + r for p, r in zip(prompts, responses)], [len(p) for p in prompts], pad_id=0)

    def nll(micro, logprobs, entropy):  # noqa: ANN001, ANN202 - the LossFn seam
        loss = -(logprobs * micro.loss_mask).sum() / batch.loss_mask.sum()
        return loss, {"loss": float(loss.detach())}

    for _ in range(3):
        learner.train_step(batch, nll)
    return learner


def assert_engine_follows(engine, learner, prompts, fixed_responses, before: list[torch.Tensor]) -> None:
    """After an update from `learner`: the engine scores fixed responses and samples new ones with the learner's logprobs."""
    scored = engine.score(prompts, fixed_responses)
    for got, want, old in zip(scored, learner_logprobs(learner, prompts, fixed_responses), before):
        assert torch.allclose(torch.tensor(got), want, atol=LOGPROB_TOL, rtol=0), (torch.tensor(got) - want).abs().max()
        assert (want - old).abs().max() > UPDATE_EFFECT  # the update changed what the test compares
    completions = engine.generate(prompts, SamplingParams(n=2, temperature=1.0, max_new_tokens=12, seed=11))
    wants = learner_logprobs(learner, [c.prompt_ids for c in completions], [c.response_ids for c in completions])
    for c, want in zip(completions, wants):
        assert torch.allclose(torch.tensor(c.logprobs), want, atol=LOGPROB_TOL, rtol=0), (torch.tensor(c.logprobs) - want).abs().max()


@pytest.fixture(scope="module")
def fixed_responses(engine, base_policy, prompts) -> list[list[int]]:
    """Responses sampled from the start weights; later tests score these same token ids after updates."""
    engine.update_weights(base_policy.named_parameters())
    completions = engine.generate(prompts, SamplingParams(n=1, temperature=1.0, max_new_tokens=16, seed=3))
    return [c.response_ids for c in completions]


def test_n_samples_per_prompt_finish_reasons_and_logprobs(engine, base_policy, tokenizer, prompts):
    engine.update_weights(base_policy.named_parameters())
    sampling = SamplingParams(n=4, temperature=1.0, max_new_tokens=8, seed=5)
    completions = engine.generate(prompts, sampling)
    assert [c.prompt_index for c in completions] == [0] * 4 + [1] * 4 + [2] * 4
    for c in completions:
        assert c.prompt_ids == prompts[c.prompt_index]
        assert len(c.logprobs) == len(c.response_ids) and 1 <= len(c.response_ids) <= 8
        assert all(lp <= 0.0 for lp in c.logprobs)
        ends_with_eos = c.response_ids[-1] == tokenizer.eos_token_id
        assert c.finish_reason == ("stop" if ends_with_eos else "length")
        assert c.finish_reason == "stop" or len(c.response_ids) == 8
    assert "length" in {c.finish_reason for c in completions}
    assert len({tuple(c.response_ids) for c in completions[:4]}) == 4
    # the same seed gives the same samples; repeated prompts still get different samples
    again = engine.generate([prompts[0], prompts[0]], SamplingParams(n=4, temperature=1.0, max_new_tokens=8, seed=5))
    assert [c.response_ids for c in again[:4]] == [c.response_ids for c in completions[:4]]
    assert [c.response_ids for c in again[4:]] != [c.response_ids for c in again[:4]]

    # weights under which eos wins at every position: each sample stops at once with logprob ~0
    eos_policy = copy.deepcopy(base_policy)
    with torch.no_grad():
        for layer in eos_policy.model.layers:  # residual stream = the token's embedding
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embed = eos_policy.model.embed_tokens.weight  # tied with the LM head
        embed[:, 0] = 1.0
        embed[tokenizer.eos_token_id, 0] = 100.0
    engine.update_weights(eos_policy.named_parameters())
    stopped = engine.generate(prompts, SamplingParams(n=2, temperature=1.0, max_new_tokens=8, seed=5))
    assert [c.response_ids for c in stopped] == [[tokenizer.eos_token_id]] * 6
    assert {c.finish_reason for c in stopped} == {"stop"}
    assert all(abs(c.logprobs[0]) < 1e-4 for c in stopped)


@pytest.fixture(scope="module")
def start_logprobs(base_policy, prompts, fixed_responses) -> list[torch.Tensor]:
    learner = TorchLearner(copy.deepcopy(base_policy), LearnerConfig(), lr=1e-3, device=torch.device("cpu"))
    return learner_logprobs(learner, prompts, fixed_responses)


def test_full_finetune_update_matches_learner(engine, base_policy, prompts, fixed_responses, start_logprobs):
    engine.update_weights(base_policy.named_parameters())
    for got, want in zip(engine.score(prompts, fixed_responses), start_logprobs):  # start weights: engine == learner
        assert torch.allclose(torch.tensor(got), want, atol=LOGPROB_TOL, rtol=0)

    learner = trained_learner(base_policy, prompts, fixed_responses, lora=None, lr=1e-2)
    engine.update_weights(learner.named_weights())
    assert_engine_follows(engine, learner, prompts, fixed_responses, start_logprobs)


def test_lora_merged_weights_match_learner(engine, base_policy, prompts, fixed_responses, start_logprobs):
    engine.update_weights(base_policy.named_parameters())
    lora = LoraConfig(r=4, alpha=8, target_modules=["q_proj", "v_proj", "o_proj", "down_proj"])
    learner = trained_learner(base_policy, prompts, fixed_responses, lora=lora, lr=5e-2)
    merged = [(name, tensor.clone()) for name, tensor in learner.named_weights()]
    names = [name for name, _ in merged]
    assert names == [name for name, _ in base_policy.named_parameters()]  # plain HF names: no adapter tensors
    assert not any(torch.equal(dict(merged)[n], p) for n, p in base_policy.named_parameters() if n.endswith("o_proj.weight"))
    engine.update_weights(merged)
    assert_engine_follows(engine, learner, prompts, fixed_responses, start_logprobs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_split_placement_weight_group_gloo(engine, base_policy, prompts, fixed_responses, start_logprobs):
    """The learner (rank 0, here a thread) broadcasts over gloo; the engine's worker (rank 1) receives and loads."""
    engine.update_weights(base_policy.named_parameters())
    port = free_port()
    learner_side: dict = {}
    opener = threading.Thread(target=lambda: learner_side.update(group=open_weight_update_group("127.0.0.1", port, 0, 2, "gloo", timeout_s=60)))
    opener.start()
    ranks = engine.init_weight_update_group("127.0.0.1", port, rank_offset=1, world_size=2, backend="gloo")
    opener.join(timeout=60)
    assert ranks == [1] and "group" in learner_side

    learner = trained_learner(base_policy, prompts, fixed_responses, lora=None, lr=2e-2)
    sender = threading.Thread(target=broadcast_weights, args=(learner_side["group"], learner.named_weights()))
    sender.start()
    engine.receive_weights(*weight_metadata(learner.named_weights()))
    sender.join(timeout=60)
    assert not sender.is_alive()
    assert_engine_follows(engine, learner, prompts, fixed_responses, start_logprobs)


def test_sleep_and_wake_are_noops_on_cpu(engine, base_policy, prompts):
    assert engine.on_cpu and not engine.sleep_mode
    assert any("sleep mode is not available on the cpu platform" in w for w in engine.start_warnings), engine.start_warnings
    engine.update_weights(base_policy.named_parameters())
    engine.sleep()
    engine.wake()
    assert len(engine.generate(prompts[:1], SamplingParams(n=2, max_new_tokens=4, seed=0))) == 2
