"""The fast HF engine samples the same distribution as the HF engine and records the learner's logprobs."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from rlkit.bench.workload import TINY, build_tokenizer
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


def test_decode_step_reads_the_same_tensors_in_every_generate_call(world) -> None:
    """A captured CUDA graph replays reading the addresses it was captured with: every tensor the decode step is
    handed must be the cached state's own, the same in a later generate call of the same shape (a stop-id tensor
    made per call once left the graphs comparing tokens with freed memory, so no row stopped after the first call)."""
    model, tokenizer = world
    engine = FastHFEngine(model, tokenizer)  # CPU: no graphs, the same calls
    calls: list[list] = []
    step = engine._step

    def spy(*args):  # noqa: ANN002, ANN202
        calls.append([a for a in args if isinstance(a, torch.Tensor)] + [t for a in args if isinstance(a, list) for t in a])
        return step(*args)

    engine._step = spy
    prompts = _prompts(tokenizer, ["5+5=", "12+7="])
    sampling = SamplingParams(n=2, temperature=1.0, max_new_tokens=5, seed=0)
    engine.generate(prompts, sampling)
    first = calls[0]  # held: none of its tensors can be freed and their addresses reused
    calls.clear()
    engine.generate(prompts, replace(sampling, seed=1))
    assert len(first) == len(calls[0]) >= 12  # the state's buffers, the stop ids and the per-layer caches
    assert all(a is b for a, b in zip(first, calls[0]))


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


def _counting_model(vocab: int = 64) -> Qwen2ForCausalLM:
    """A model whose greedy next token is the last token + 1 (orthogonal embeddings, the head shifted by one),
    with small random attention and MLP weights on top: rows stop at the stop token after as many steps as
    their last prompt token is below it, and the logprobs still depend on what the KV cache holds."""
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=vocab, hidden_size=vocab, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, tie_word_embeddings=False, eos_token_id=vocab - 1, pad_token_id=vocab - 1)
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():
        for name, param in model.model.layers.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                param.mul_(0.5)
        basis = torch.linalg.qr(torch.randn(vocab, vocab))[0]
        model.model.embed_tokens.weight.copy_(basis)
        model.lm_head.weight.copy_(2.0 * basis.roll(1, dims=0))  # row j scores the embedding of token j - 1
    return model


def test_compaction_gives_the_same_greedy_tokens(monkeypatch) -> None:
    """Rows that stop early leave the batch (32 rows -> 16 -> 8) and the rest decode on: under greedy
    decoding every row's tokens and logprobs equal the static batch's, and fewer row-steps are computed."""
    import rlkit.rollout.hf_fast as hf_fast

    monkeypatch.setattr(hf_fast, "STOP_CHECK_EVERY", 4)
    model = _counting_model()
    tokenizer = build_tokenizer(replace(TINY, vocab=64))
    lengths = [1 + (7 * i) % 40 if i % 4 else 2 + i % 5 for i in range(32)]  # 1 to 40 steps, most short
    prompts = [[5, 9, 2, 63 - n] for n in lengths]
    sampling = SamplingParams(n=1, temperature=0.0, max_new_tokens=48)
    engine = FastHFEngine(model, tokenizer)
    engine.compact = False
    static = engine.generate(prompts, sampling)
    static_cost = engine.stats["decode_computed"]
    assert [len(c.response_ids) for c in static] == lengths  # the counting model stops where it should
    assert static[0].response_ids == list(range(63 - lengths[0] + 1, 64))
    engine.compact, engine.stats = True, {}
    compacted = engine.generate(prompts, sampling)
    assert [c.response_ids for c in compacted] == [c.response_ids for c in static]
    assert all(c.finish_reason == "stop" for c in compacted)
    for a, b in zip(compacted, static):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)
    assert engine.stats["decode_useful"] == sum(lengths)
    assert static_cost == 32 * 41  # every row until the longest stops (40 tokens; the check every 4 steps lets it run one more)
    assert engine.stats["decode_computed"] < 0.6 * static_cost



@pytest.mark.parametrize(("kernels", "attention", "sampling"), [("triton", "triton", "triton"), ("torch", "plain", "torch")])
def test_recipe_switches_the_decode_kernels(world, kernels: str, attention: str, sampling: str) -> None:
    from rlkit.config import validate_config
    from rlkit.rollout import build_engine

    model, tokenizer = world
    config = validate_config({"rollout": {"static_cache": True, "decode_kernels": kernels}, "stages": [{"type": "sft"}]}, "test")
    engine = build_engine(config, model, tokenizer)
    assert (type(engine), engine.attention, engine.sampling) == (FastHFEngine, attention, sampling)


def test_compiled_decode_step_records_the_same_tokens_as_eager(world) -> None:
    """The whole step (forward, sampling, bookkeeping in place) under torch.compile, as on GPU, here on CPU."""
    model, tokenizer = world
    prompts = _prompts(tokenizer, ["12+7=", "a longer prompt, 99-1="])
    sampling = SamplingParams(n=2, temperature=0.8, max_new_tokens=12, seed=3)
    eager = FastHFEngine(model, tokenizer, compile=False).generate(prompts, sampling)
    engine = FastHFEngine(model, tokenizer, compile=True)
    compiled = engine.generate(prompts, sampling)
    assert not engine.compile_failed
    for ref, got in zip(eager, compiled):
        assert got.response_ids == ref.response_ids
        assert got.finish_reason == ref.finish_reason
        assert got.logprobs == pytest.approx(ref.logprobs, abs=1e-4)
