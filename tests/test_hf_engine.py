"""The HF engine returns the sampled tokens' log-probabilities under the sampling distribution."""

import torch

from rlkit.learner.base import pad_sequences
from rlkit.learner.logprobs import sequence_logprobs
from rlkit.models import encode_prompt
from rlkit.rollout.base import SamplingParams
from rlkit.rollout.hf import HFEngine
from rlkit.world.model import build_tiny_model
from rlkit.world.tokenizer import build_tiny_tokenizer


def setup():
    torch.manual_seed(0)
    tok = build_tiny_tokenizer()
    model = build_tiny_model(seed=1)
    prompts = [encode_prompt(tok, [{"role": "user", "content": f"Compute {a}+{a}."}]) for a in (3, 14, 159)]
    return tok, model, prompts


def learner_logprobs(model, tok, completions):
    batch = pad_sequences([c.prompt_ids + c.response_ids for c in completions], [len(c.prompt_ids) for c in completions], tok.pad_token_id)
    with torch.no_grad():
        lp, _ = sequence_logprobs(model.eval(), batch.input_ids, batch.attention_mask)
    return [lp[i, len(c.prompt_ids) : len(c.prompt_ids) + len(c.response_ids)] for i, c in enumerate(completions)]


def test_n_samples_per_prompt_grouped_in_order_with_finish_reasons():
    tok, model, prompts = setup()
    out = HFEngine(model, tok).generate(prompts, SamplingParams(n=3, max_new_tokens=12, seed=0))
    assert [c.prompt_index for c in out] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for c in out:
        assert c.prompt_ids == prompts[c.prompt_index]
        assert len(c.logprobs) == len(c.response_ids) <= 12
        assert c.finish_reason in ("stop", "length")
        assert (c.finish_reason == "stop") == (c.response_ids[-1] == tok.eos_token_id)
        assert tok.pad_token_id not in c.response_ids


def test_sampling_logprobs_match_the_learner_at_temperature_one():
    tok, model, prompts = setup()
    out = HFEngine(model, tok).generate(prompts, SamplingParams(n=2, temperature=1.0, max_new_tokens=16, seed=3))
    for c, ref in zip(out, learner_logprobs(model, tok, out)):
        assert torch.allclose(torch.tensor(c.logprobs), ref, atol=1e-4), (c.logprobs, ref)


def test_temperature_scales_the_recorded_distribution():
    tok, model, prompts = setup()
    out = HFEngine(model, tok).generate(prompts[:1], SamplingParams(n=1, temperature=0.5, max_new_tokens=8, seed=0))
    c = out[0]
    ids = torch.tensor([c.prompt_ids + c.response_ids])
    with torch.no_grad():
        logits = model(ids).logits[0, len(c.prompt_ids) - 1 : -1] / 0.5
    expected = torch.log_softmax(logits, -1).gather(-1, torch.tensor(c.response_ids)[:, None]).squeeze(-1)
    assert torch.allclose(torch.tensor(c.logprobs), expected, atol=1e-4)


def test_greedy_is_deterministic():
    tok, model, prompts = setup()
    engine = HFEngine(model, tok)
    a = engine.generate(prompts, SamplingParams(n=1, temperature=0.0, max_new_tokens=10))
    b = engine.generate(prompts, SamplingParams(n=1, temperature=0.0, max_new_tokens=10))
    assert [c.response_ids for c in a] == [c.response_ids for c in b]


def test_completions_are_cut_after_their_first_stop_token_with_the_text_batch_decode_gives():
    tok, model, prompts = setup()
    engine = HFEngine(model, tok)
    eos, other = tok.eos_token_id, 7
    engine.stop_ids = {eos, other}
    rows = torch.tensor([[5, 6, other, 5, eos], [5, 6, 8, 9, 10], [5, 6, 8, 9, eos], [eos, 5, 6, 8, 9]])
    logprobs = torch.arange(20, dtype=torch.float).view(4, 5)
    out = engine._completions([prompts[0], prompts[1]], rows, logprobs, n=2, index_offset=3)
    assert [c.response_ids for c in out] == [[5, 6, other], [5, 6, 8, 9, 10], [5, 6, 8, 9, eos], [eos]]
    assert [c.finish_reason for c in out] == ["stop", "length", "stop", "stop"]
    assert [c.logprobs for c in out] == [[0.0, 1.0, 2.0], [5.0, 6.0, 7.0, 8.0, 9.0], [10.0, 11.0, 12.0, 13.0, 14.0], [15.0]]
    assert [c.prompt_index for c in out] == [3, 3, 4, 4]
    assert [c.text for c in out] == tok.batch_decode([c.response_ids for c in out], skip_special_tokens=True)


def test_decode_texts_equals_batch_decode_on_either_path():
    from rlkit.rollout.hf import decode_texts

    tok = build_tiny_tokenizer()
    rows = [tok.encode("Compute 3+14. The answer is 17!"), [tok.eos_token_id, *tok.encode("x = 2")], []]
    assert tok.clean_up_tokenization_spaces is False  # the Rust decode_batch path
    assert decode_texts(tok, rows) == tok.batch_decode(rows, skip_special_tokens=True)
    tok.clean_up_tokenization_spaces = True  # the per-row `_decode` path, which cleans up as batch_decode does
    assert decode_texts(tok, rows) == tok.batch_decode(rows, skip_special_tokens=True)
