"""The fast HF engine samples the same distribution as the HF engine and records the learner's logprobs."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from rlkit.errors import ConfigError
from rlkit.learner.base import pad_sequences
from rlkit.learner.logprobs import sequence_logprobs
from rlkit.models import encode_prompt
from rlkit.rollout.base import SamplingParams
from rlkit.rollout.hf import HFEngine
from rlkit.rollout.hf_fast import FastHFEngine, sample_tokens
from rlkit.world.model import build_tiny_model
from rlkit.world.tokenizer import build_tiny_tokenizer


@pytest.fixture(scope="module")
def world():
    torch.manual_seed(0)
    model = build_tiny_model("tiny", seed=3).eval()
    # sharpen the random model so greedy decoding is not decided by rounding between near-equal logits
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(4.0)
    return model, build_tiny_tokenizer()


def _prompts(tokenizer, texts: list[str]) -> list[list[int]]:
    return [encode_prompt(tokenizer, [{"role": "user", "content": t}]) for t in texts]


def test_greedy_matches_hf_generate_with_left_padding(world) -> None:
    model, tokenizer = world
    prompts = _prompts(tokenizer, ["12+7=", "3*(4+5)=", "a much longer prompt than the others, 99-1="])
    sampling = SamplingParams(n=1, temperature=0.0, max_new_tokens=12)
    reference = HFEngine(model, tokenizer).generate(prompts, sampling)
    fast = FastHFEngine(model, tokenizer).generate(prompts, sampling)
    for ref, got in zip(reference, fast):
        assert got.response_ids == ref.response_ids
        assert got.finish_reason == ref.finish_reason
        assert got.logprobs == pytest.approx(ref.logprobs, abs=1e-4)


def test_sampled_logprobs_match_the_learner(world) -> None:
    model, tokenizer = world
    prompts = _prompts(tokenizer, ["1+1=", "20-3="])
    engine = FastHFEngine(model, tokenizer)
    engine.stop_ids = set()  # run to the limit so every recorded logprob is scored below
    completions = engine.generate(prompts, SamplingParams(n=3, temperature=0.7, max_new_tokens=10, seed=5))
    assert [c.prompt_index for c in completions] == [0, 0, 0, 1, 1, 1]
    assert all(len(c.response_ids) == 10 and c.finish_reason == "length" for c in completions)
    batch = pad_sequences([c.prompt_ids + c.response_ids for c in completions], [len(c.prompt_ids) for c in completions], 0)
    with torch.no_grad():
        logits_lp, _ = sequence_logprobs(model, batch.input_ids, batch.attention_mask)
    # the learner scores at temperature 1; rescore the sampled tokens at the sampling temperature
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1] / 0.7
        warped = torch.log_softmax(logits.float(), -1).gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
    for row, c in enumerate(completions):
        start = len(c.prompt_ids)
        expected = warped[row, start - 1 : start - 1 + len(c.response_ids)]
        assert torch.allclose(torch.tensor(c.logprobs), expected, atol=1e-4)
    assert logits_lp.shape == batch.input_ids.shape


def test_exponential_race_samples_softmax() -> None:
    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).expand(20000, 4).contiguous()
    noise = torch.empty_like(logits).exponential_()
    tokens, logprobs = sample_tokens(logits, noise, temperature=1.0, top_p=1.0)
    freq = torch.bincount(tokens, minlength=4).float() / len(tokens)
    assert torch.allclose(freq, torch.softmax(logits[0], -1), atol=0.015)
    assert torch.allclose(logprobs, torch.log_softmax(logits[0], -1)[tokens])


def test_top_p_keeps_the_nucleus_only() -> None:
    torch.manual_seed(1)
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).expand(4000, 4).contiguous()
    noise = torch.empty_like(logits).exponential_()
    tokens, logprobs = sample_tokens(logits, noise, temperature=1.0, top_p=0.8)
    assert set(tokens.tolist()) == {0, 1}  # 0.5 + 0.3 reaches 0.8
    assert torch.allclose(logprobs[tokens == 0], torch.tensor(math.log(0.5 / 0.8)), atol=1e-5)


def test_stops_at_eos_and_pads_after(world) -> None:
    model, tokenizer = world
    prompts = _prompts(tokenizer, ["5+5="])
    engine = FastHFEngine(model, tokenizer)
    probe = engine.generate(prompts, SamplingParams(n=1, temperature=0.0, max_new_tokens=6))[0]
    engine.stop_ids = {probe.response_ids[2]}  # make the third greedy token a stop token
    got = engine.generate(prompts, SamplingParams(n=1, temperature=0.0, max_new_tokens=6))[0]
    assert got.response_ids == probe.response_ids[: probe.response_ids.index(probe.response_ids[2]) + 1]
    assert got.finish_reason == "stop"


def test_unsupported_model_names_the_key() -> None:
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    model.config.model_type = "gpt2"
    with pytest.raises(ConfigError, match=r"rollout\.static_cache"):
        FastHFEngine(model, build_tiny_tokenizer())


def test_caches_are_reused_per_shape_and_bounded(world) -> None:
    model, tokenizer = world
    engine = FastHFEngine(model, tokenizer)
    sampling = SamplingParams(n=1, temperature=0.0, max_new_tokens=3)
    first = engine.generate(_prompts(tokenizer, ["1+1="]), sampling)
    assert engine.generate(_prompts(tokenizer, ["1+1="]), sampling)[0].response_ids == first[0].response_ids
    assert len(engine._states) == 1  # same shape: the same cache
    for size in range(2, 8):
        engine.generate(_prompts(tokenizer, ["1+1="] * size), sampling)
    assert len(engine._states) == 4  # least recently used caches are dropped
