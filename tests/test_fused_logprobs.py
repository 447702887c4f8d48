"""The fused, chunked LM-head logprobs/entropy equal the plain computation, values and gradients."""

from __future__ import annotations

import torch

from rlkit.learner.logprobs import FusedHeadLogprobs, logprobs_from_logits, sequence_logprobs
from rlkit.world.model import build_tiny_model


def test_values_and_gradients_match_plain_autograd() -> None:
    torch.manual_seed(0)
    hidden = torch.randn(11, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(23, 6, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 23, (11,))
    coef_lp, coef_ent = torch.randn(11, dtype=torch.float64), torch.randn(11, dtype=torch.float64)

    lp, ent = logprobs_from_logits(hidden @ weight.T, targets, with_entropy=True)
    (coef_lp * lp + coef_ent * ent).sum().backward()
    want = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None

    got_lp, got_ent, _ = FusedHeadLogprobs.apply(hidden, weight, targets, 4)  # 3 chunks, the last one short
    assert torch.allclose(got_lp, lp, atol=1e-5) and torch.allclose(got_ent, ent, atol=1e-5)  # both fp32
    (coef_lp * got_lp + coef_ent * got_ent).sum().backward()
    assert torch.allclose(hidden.grad, want[0], atol=1e-4) and torch.allclose(weight.grad, want[1], atol=1e-4)


def test_only_logprob_used_gives_the_logprob_gradient() -> None:
    torch.manual_seed(1)
    hidden = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(9, 4, dtype=torch.float64)
    targets = torch.randint(0, 9, (5,))
    lp, _, _ = FusedHeadLogprobs.apply(hidden, weight, targets, 2)
    lp.sum().backward()
    probs = torch.softmax(hidden.detach() @ weight.T, -1)
    expected = (torch.nn.functional.one_hot(targets, 9).double() - probs) @ weight
    assert torch.allclose(hidden.grad, expected, atol=1e-5)


def test_sequence_logprobs_chunked_equals_whole() -> None:
    model = build_tiny_model("tiny", seed=2)
    ids = torch.randint(0, 100, (3, 9))
    mask = torch.ones_like(ids)
    whole, whole_ent = sequence_logprobs(model, ids, mask, with_entropy=True)
    chunked, chunked_ent = sequence_logprobs(model, ids, mask, with_entropy=True, chunk_size=5)
    assert torch.allclose(whole, chunked, atol=1e-5) and torch.allclose(whole_ent, chunked_ent, atol=1e-5)
    assert whole[:, 0].abs().sum() == 0


def test_head_logits_kept_only_within_the_memory_limit() -> None:
    """keep_head_logits_gib: the chunks' logits are saved for backward only when the micro-batch's fit the limit,
    and gradients are the same either way."""
    model = build_tiny_model("tiny", seed=3)
    ids = torch.randint(0, 100, (3, 9))
    vocab = model.get_output_embeddings().weight.shape[0]
    logits_bytes = 3 * 8 * vocab * 4  # 24 scored tokens, fp32 here

    def run(limit_gib: float) -> tuple[int, list[torch.Tensor]]:
        saved = []
        model.zero_grad()
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            lp, ent = sequence_logprobs(model, ids, torch.ones_like(ids), with_entropy=True, chunk_size=10,
                                        keep_head_logits_gib=limit_gib)
        (lp.sum() + 0.1 * ent.sum()).backward()
        return sum(saved), [p.grad.clone() for p in model.parameters()]

    held, grads = run(logits_bytes / 2**30)  # exactly fits
    held_none, grads_none = run(logits_bytes / 2**30 * 0.99)  # just short: recomputed in backward
    assert held - held_none == 24 * vocab  # three chunks of logits (10 + 10 + 4 rows), saved
    assert run(0)[0] == held_none
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads, grads_none))


def test_head_with_a_bias_matches_plain_autograd() -> None:
    """A biased head (the bench's stop-token bias) keeps the fused path: values and all three gradients."""
    torch.manual_seed(3)
    hidden = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(13, 5, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(13, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 13, (7,))
    lp, ent = logprobs_from_logits(hidden @ weight.T + bias, targets, with_entropy=True)
    (lp + 0.5 * ent).sum().backward()
    want = [t.grad.clone() for t in (hidden, weight, bias)]
    hidden.grad = weight.grad = bias.grad = None
    got_lp, got_ent, _ = FusedHeadLogprobs.apply(hidden, weight, targets, 3, bias)
    assert torch.allclose(got_lp, lp, atol=1e-5) and torch.allclose(got_ent, ent, atol=1e-5)
    (got_lp + 0.5 * got_ent).sum().backward()
    for got, expected in zip((hidden.grad, weight.grad, bias.grad), want):
        assert torch.allclose(got, expected, atol=1e-4)


def test_regional_compile_swaps_in_compiled_layers_only_while_running(monkeypatch) -> None:  # noqa: ANN001
    """compile_scope "layers": each decoder layer compiled (here by dynamo's eager backend, on CPU), the same values,
    and the module tree (state dict keys, `layers`) untouched outside the call."""
    from rlkit.learner import logprobs as module

    real_compile = torch.compile
    compiled = []

    def eager_compile(target, **kwargs):  # noqa: ANN001, ANN003, ANN202
        compiled.append(target)
        return real_compile(target, backend="eager")

    monkeypatch.setattr(torch, "compile", eager_compile)
    model = build_tiny_model("tiny", seed=4)
    keys, layers = list(model.state_dict()), model.model.layers
    ids = torch.randint(0, 100, (2, 7))
    body = module.compiled_body(model.model, "layers")
    assert len(compiled) == len(layers)
    plain = model.model(input_ids=ids, use_cache=False).last_hidden_state
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    got = body(input_ids=ids, use_cache=False).last_hidden_state
    assert torch.allclose(got, plain, atol=1e-6)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # the layers ran through dynamo
    assert model.model.layers is layers and list(model.state_dict()) == keys
