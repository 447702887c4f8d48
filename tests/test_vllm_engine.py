"""The vLLM engine against the learner, on the CPU build of vLLM (run: bash scripts/ci_step_vllm.sh).

One engine is started for the module (~20-30 s on 2 cores). Every test pushes the weights it needs
first, so the tests do not depend on their order.

Tolerance: the engine's logprobs equal the learner's `sequence_logprobs` on the same token ids within
LOGPROB_TOL = 1e-4 (absolute, per token). Both run the model in fp32 on CPU; they differ only in
kernel order (vLLM's CPU attention and fused q/k/v, gate/up projections vs. transformers' eager ops),
which moves a logprob by ~1e-6 here. A missed or partial weight update moves them by ~1e-1 (checked
below), three orders of magnitude above the tolerance.
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

from rlkit.learner.logprobs import sequence_logprobs
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


def learner_logprobs(model: torch.nn.Module, prompt: list[int], response: list[int]) -> torch.Tensor:
    """The learner's log p(response token | prefix), from the same function the learners use."""
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logprobs, _ = sequence_logprobs(model, ids, torch.ones_like(ids))
    return logprobs[0, len(prompt) :]


def perturbed(model: torch.nn.Module, seed: int, scale: float = 0.05) -> torch.nn.Module:
    """A copy of `model` with every weight moved: a stand-in for a learner after a few full fine-tuning steps."""
    out = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in out.parameters():
            param.add_(torch.randn(param.shape, generator=gen) * scale)
    return out


def assert_engine_follows(engine, policy, prompts, fixed_responses, before: list[torch.Tensor]) -> None:
    """After an update to `policy`: the engine scores fixed responses and samples new ones with the learner's logprobs."""
    scored = engine.score(prompts, fixed_responses)
    for prompt, response, got, old in zip(prompts, fixed_responses, scored, before):
        want = learner_logprobs(policy, prompt, response)
        assert torch.allclose(torch.tensor(got), want, atol=LOGPROB_TOL, rtol=0), (torch.tensor(got) - want).abs().max()
        assert (want - old).abs().max() > UPDATE_EFFECT  # the update changed what the test compares
    completions = engine.generate(prompts, SamplingParams(n=2, temperature=1.0, max_new_tokens=12, seed=11))
    for c in completions:
        want = learner_logprobs(policy, c.prompt_ids, c.response_ids)
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


def test_full_finetune_update_matches_learner(engine, base_policy, prompts, fixed_responses):
    before = [learner_logprobs(base_policy, p, r) for p, r in zip(prompts, fixed_responses)]
    engine.update_weights(base_policy.named_parameters())
    scored = engine.score(prompts, fixed_responses)
    for got, want in zip(scored, before):  # start weights: engine == learner
        assert torch.allclose(torch.tensor(got), want, atol=LOGPROB_TOL, rtol=0)

    policy = perturbed(base_policy, seed=1)
    engine.update_weights(policy.named_parameters())
    assert_engine_follows(engine, policy, prompts, fixed_responses, before)


def test_lora_merged_weights_match_learner(engine, base_policy, prompts, fixed_responses):
    before = [learner_logprobs(base_policy, p, r) for p, r in zip(prompts, fixed_responses)]
    peft_model, merged_weights = lora_policy(base_policy)
    adapted = peft_model.get_base_model()  # the learner's module: base weights + active adapters
    names = [name for name, _ in merged_weights]
    assert not any("lora" in n or "base_layer" in n for n in names), names[:3]
    engine.update_weights(merged_weights)
    assert_engine_follows(engine, adapted, prompts, fixed_responses, before)


def lora_policy(base_policy: torch.nn.Module) -> tuple[torch.nn.Module, list[tuple[str, torch.Tensor]]]:
    """A LoRA learner's state after training (adapters moved off their zero init) and its merged weights,
    via rlkit.learner.lora (the learners' own code path)."""
    from rlkit.config import LoraConfig
    from rlkit.learner.lora import apply_lora, merged_named_weights

    peft_model = apply_lora(copy.deepcopy(base_policy), LoraConfig(r=4, alpha=8, target_modules=["q_proj", "v_proj", "o_proj", "down_proj"]))
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:  # peft starts B at zero (no change); a trained adapter has moved it
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    peft_model.eval()
    merged = [(name, tensor.clone()) for name, tensor in merged_named_weights(peft_model)]
    return peft_model, merged


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_split_placement_weight_group_gloo(engine, base_policy, prompts, fixed_responses):
    """The learner (rank 0, here a thread) broadcasts over gloo; the engine's worker (rank 1) receives and loads."""
    before = [learner_logprobs(base_policy, p, r) for p, r in zip(prompts, fixed_responses)]
    port = free_port()
    learner_side: dict = {}
    opener = threading.Thread(target=lambda: learner_side.update(group=open_weight_update_group("127.0.0.1", port, 0, 2, "gloo", timeout_s=60)))
    opener.start()
    ranks = engine.init_weight_update_group("127.0.0.1", port, rank_offset=1, world_size=2, backend="gloo")
    opener.join(timeout=60)
    assert ranks == [1] and "group" in learner_side

    policy = perturbed(base_policy, seed=2)
    weights = list(policy.named_parameters())
    sender = threading.Thread(target=broadcast_weights, args=(learner_side["group"], weights))
    sender.start()
    engine.receive_weights(*weight_metadata(weights))
    sender.join(timeout=60)
    assert not sender.is_alive()
    assert_engine_follows(engine, policy, prompts, fixed_responses, before)


def test_sleep_and_wake_are_noops_on_cpu(engine, base_policy, prompts):
    assert engine.on_cpu and not engine.sleep_mode
    assert any("sleep mode is not available on the cpu platform" in w for w in engine.start_warnings), engine.start_warnings
    engine.update_weights(base_policy.named_parameters())
    engine.sleep()
    engine.wake()
    assert len(engine.generate(prompts[:1], SamplingParams(n=2, max_new_tokens=4, seed=0))) == 2
