"""Per-token log-probabilities and entropies of a causal LM, aligned with the input tokens.

With a large vocabulary the LM head dominates a learner's memory: 128 x 576 tokens of fp32 logits
over Qwen's 151,936 tokens are 45 GB, and autograd keeps them (and their softmax) for backward.
`chunk_size > 0` instead runs `FusedHeadLogprobs`: the head, log-softmax and entropy over that many
tokens at a time, keeping only three floats a token for backward and recomputing each chunk's
logits there. On CUDA the per-chunk elementwise work is fused by torch.compile into one pass.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable

import torch


def logprobs_from_logits(logits: torch.Tensor, targets: torch.Tensor, with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log p(target) and the entropy of each row of `logits` [..., V], computed in fp32."""
    logits = logits.float()
    log_z = torch.logsumexp(logits, dim=-1)
    chosen = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - log_z
    entropy = None
    if with_entropy:
        probs = torch.softmax(logits, dim=-1)
        entropy = log_z - (probs * logits).sum(-1)
    return chosen, entropy


def _chunk_stats(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log p(target), log Z, entropy) per row of one chunk's logits [n, V]."""
    scores = logits.float()
    log_z = torch.logsumexp(scores, dim=-1)
    chosen = scores.gather(-1, targets[:, None]).squeeze(-1)
    probs = torch.exp(scores - log_z[:, None])
    entropy = log_z - (probs * scores).sum(-1)
    return chosen - log_z, log_z, entropy


def _chunk_grad(logits: torch.Tensor, targets: torch.Tensor, log_z: torch.Tensor, entropy: torch.Tensor,
                grad_logprob: torch.Tensor, grad_entropy: torch.Tensor) -> torch.Tensor:
    """d(loss)/d(logits) of one chunk, in the logits' dtype.

    d log p(y) / d l_j = [j = y] - p_j;   d H / d l_j = -p_j (l_j - sum_i p_i l_i),  sum_i p_i l_i = log Z - H.
    """
    scores = logits.float()
    probs = torch.exp(scores - log_z[:, None])
    onehot = torch.arange(scores.shape[-1], device=scores.device)[None, :] == targets[:, None]
    grad = grad_logprob[:, None] * (onehot.float() - probs)
    grad = grad - grad_entropy[:, None] * probs * (scores - (log_z - entropy)[:, None])
    return grad.to(logits.dtype)


_FUSED: dict[str, Callable] = {}


def _kernels(device: torch.device, kind: str = "triton") -> tuple[Callable, Callable]:
    """The chunk functions (stats, grad): on CUDA the one-pass Triton kernels (head_kernels.py) where Triton imports
    and `kind` is "triton", else compiled into fused kernels by torch.compile; eager elsewhere."""
    if device.type != "cuda":
        return _chunk_stats, _chunk_grad
    if kind == "triton":
        from rlkit.learner import head_kernels

        if head_kernels.available(device):
            return head_kernels.chunk_stats, head_kernels.chunk_grad
    if not _FUSED:
        _FUSED["stats"] = torch.compile(_chunk_stats, dynamic=True)
        _FUSED["grad"] = torch.compile(_chunk_grad, dynamic=True)
    return _FUSED["stats"], _FUSED["grad"]


def _head(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return hidden @ weight.T if bias is None else torch.addmm(bias, hidden, weight.T)


SUM_IN_GEMM = True  # the head's weight gradient summed over chunks inside the GEMM (fp32 output) where it can be


def _add_product(total: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """total + a @ b, `total` fp32 and a, b in the model's dtype. On CUDA one cuBLAS call adds into an fp32 output
    (addmm with out_dtype, half-precision inputs): no half-precision product written, cast and added (~2.7 GB of
    traffic a 4,096-row chunk of the 0.5B head, against ~1.1 GB). Elsewhere, or where torch lacks it, in two steps."""
    if SUM_IN_GEMM and total.is_cuda and a.dtype in (torch.bfloat16, torch.float16):
        try:
            return torch.addmm(total, a, b, out_dtype=torch.float32)
        except (TypeError, RuntimeError, NotImplementedError):  # an older torch: no out_dtype
            pass
    return total.add_((a @ b).float())


class FusedHeadLogprobs(torch.autograd.Function):
    """(log p(target), entropy) of `hidden @ weight.T (+ bias)`, `chunk` rows at a time; logits never stored.

    Why ours and not Liger's fused linear cross-entropy (liger-kernel 0.8.5, measured 2026-12-02 on an H200 by
    scripts/decode_bench.py --liger, docs/BENCHMARKS.md): Liger computes the gradient during the forward, so a
    per-token loss needs its upstream per-token gradient before the forward runs, which a policy-gradient
    objective cannot give (its gradient depends on the log-probabilities being computed, through the ratio and
    the clip); it returns no entropy; and on the 0.5B head it was less exact (gradient relative error 6e-4 vs
    4e-6 for ours, against plain bf16 autograd) and slower at 4,096 rows (50 ms vs 11 ms forward + backward of
    the plain cross-entropy), faster only at 32,768 rows (69 ms vs 90 ms). Liger's chunked GRPO loss replaces
    the whole objective (no entropy term, its own aggregations), so it was not taken either.
    """

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int,  # noqa: ANN001, ANN205
                bias: torch.Tensor | None = None, kind: str = "triton", keep: bool = False):
        stats, _ = _kernels(hidden.device, kind)
        rows = hidden.shape[0]
        keep = keep and any(ctx.needs_input_grad[:2])  # no graph (no_grad scoring): nothing to keep
        logprobs = hidden.new_empty(rows, dtype=torch.float)
        log_z = hidden.new_empty(rows, dtype=torch.float)
        entropy = hidden.new_empty(rows, dtype=torch.float)
        kept = []
        for start in range(0, rows, chunk):
            part = slice(start, start + chunk)
            logits = _head(hidden[part], weight, bias)
            logprobs[part], log_z[part], entropy[part] = stats(logits, targets[part])
            if keep:
                kept.append(logits)
        ctx.save_for_backward(hidden, weight, targets, log_z, entropy, bias, *kept)
        ctx.chunk, ctx.kind = chunk, kind
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(log_z)
        return logprobs, entropy, log_z

    @staticmethod
    def backward(ctx, grad_logprob, grad_entropy, _grad_log_z):  # noqa: ANN001, ANN205
        hidden, weight, targets, log_z, entropy, bias, *kept = ctx.saved_tensors
        inputs = len(ctx.needs_input_grad)  # 4 to 7: bias, kind and keep may be left out
        if grad_logprob is None and grad_entropy is None:
            return (None,) * inputs
        _, grad_fn = _kernels(hidden.device, ctx.kind)
        in_place = getattr(grad_fn, "__module__", "") == "rlkit.learner.head_kernels"
        zeros = torch.zeros_like(log_z)
        grad_logprob = zeros if grad_logprob is None else grad_logprob
        grad_entropy = zeros if grad_entropy is None else grad_entropy
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float) if ctx.needs_input_grad[1] else None
        grad_bias = torch.zeros_like(bias, dtype=torch.float) if bias is not None and ctx.needs_input_grad[4] else None
        for index, start in enumerate(range(0, hidden.shape[0], ctx.chunk)):
            part = slice(start, start + ctx.chunk)
            args = (targets[part], log_z[part], entropy[part], grad_logprob[part], grad_entropy[part])
            if kept:  # the forward's logits; left intact (a kept tensor is not written over)
                grad_logits = grad_fn(kept[index], *args)
            elif in_place:  # recomputed logits, used once: the gradient overwrites them
                logits = _head(hidden[part], weight, bias)
                grad_logits = grad_fn(logits, *args, out=logits)
            else:
                grad_logits = grad_fn(_head(hidden[part], weight, bias), *args)
            if grad_hidden is not None:
                grad_hidden[part] = grad_logits @ weight
            if grad_weight is not None:
                grad_weight = _add_product(grad_weight, grad_logits.T, hidden[part])
            if grad_bias is not None:
                grad_bias += grad_logits.float().sum(0)
        grads = (grad_hidden, None if grad_weight is None else grad_weight.to(weight.dtype), None, None,
                 None if grad_bias is None else grad_bias.to(bias.dtype), None, None)
        return grads[:inputs]


def fused_head_logprobs(hidden: torch.Tensor, head: torch.nn.Linear, targets: torch.Tensor, chunk: int,
                        kind: str = "triton", keep: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """`hidden` [..., E], `targets` [...] -> (log p(target), entropy), each [...] in fp32. `kind`: the chunk
    kernels on CUDA ("triton" or "torch"); `keep`: hold each chunk's logits from forward for backward."""
    shape = targets.shape
    logprobs, entropy, _ = FusedHeadLogprobs.apply(hidden.reshape(-1, hidden.shape[-1]), head.weight, targets.reshape(-1), chunk,
                                                   getattr(head, "bias", None), kind, keep)
    return logprobs.view(shape), entropy.view(shape)


SDPA_BACKENDS = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "cudnn": "CUDNN_ATTENTION", "math": "MATH"}


def attention_backend(name: str) -> contextlib.AbstractContextManager:
    """The context the learner's forward runs in (`learner.attention_backend`): "auto" = torch's own choice
    (nothing set); else that SDPA backend first in torch's priority order, the others after it in their current order,
    so a call it cannot run (flash takes no mask: a padded micro-batch's) falls back instead of failing."""
    if name == "auto":
        return contextlib.nullcontext()
    if name not in SDPA_BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}: auto, {', '.join(SDPA_BACKENDS)}")
    from torch.nn.attention import SDPBackend, sdpa_kernel

    known = [getattr(SDPBackend, value) for value in SDPA_BACKENDS.values()]
    by_number = {int(backend): backend for backend in known}
    current = [by_number[n] for n in torch._C._get_sdp_priority_order() if n in by_number]
    first = getattr(SDPBackend, SDPA_BACKENDS[name])
    return sdpa_kernel([first, *(b for b in current + known if b != first)], set_priority=True)


_COMPILED_BODIES: weakref.WeakKeyDictionary[torch.nn.Module, Callable] = weakref.WeakKeyDictionary()
_COMPILED_LAYERS: weakref.WeakKeyDictionary[torch.nn.Module, torch.nn.ModuleList] = weakref.WeakKeyDictionary()


def compiled_body(body: torch.nn.Module, scope: str = "body") -> Callable:
    """torch.compile of a transformer body, kept outside the module tree (state dicts stay unchanged).

    scope "body": the whole body is one compiled graph. scope "layers" (regional compilation): each decoder layer
    compiled on its own, the rest eager; identical layers share one compiled code, so it compiles one layer's
    graph instead of the whole stack. The compiled layers stand in `body.layers` only while the returned
    function runs (the rollout engine, sharing the module, never sees them). A body without a `layers`
    ModuleList is compiled whole.
    """
    if scope == "body":
        if body not in _COMPILED_BODIES:
            _COMPILED_BODIES[body] = torch.compile(body)
        return _COMPILED_BODIES[body]
    if scope != "layers":
        raise ValueError(f"unknown compile scope {scope!r}: body or layers")
    layers = body._modules.get("layers")
    if not isinstance(layers, torch.nn.ModuleList):  # not a decoder stack we know: the whole body
        return compiled_body(body, "body")
    if body not in _COMPILED_LAYERS:
        _COMPILED_LAYERS[body] = torch.nn.ModuleList(torch.compile(layer) for layer in layers)

    def run(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        plain = body._modules["layers"]
        body._modules["layers"] = _COMPILED_LAYERS[body]  # not setattr: that would re-register the submodule
        try:
            return body(*args, **kwargs)
        finally:
            body._modules["layers"] = plain

    return run


_TRACED_UNDER: dict[str, str] = {}  # the attention backend the compiled bodies were traced under


def _compiled_under(attention: str) -> None:
    """torch.compile bakes the SDPA backend chosen while tracing into its graphs and does not guard on it, so a
    different `attention` than the compiled code was traced under drops all compiled code (torch._dynamo.reset())."""
    if attention != "auto":
        # Inductor's on-disk graph caches do not key on the backend either: a graph compiled under another backend
        # (this process or an earlier run) would be served from them (measured on the H200: a `flash` variant ran
        # cuDNN's kernels, its warm-up a cache hit). A chosen backend compiles without them.
        import torch._functorch.config
        import torch._inductor.config

        torch._inductor.config.fx_graph_cache = False
        torch._functorch.config.enable_autograd_cache = False
    if _TRACED_UNDER.setdefault("backend", attention) != attention:
        torch._dynamo.reset()
        _COMPILED_BODIES.clear()
        _COMPILED_LAYERS.clear()
        _TRACED_UNDER["backend"] = attention


def sequence_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    with_entropy: bool = False,
    chunk_size: int = 0,
    position_ids: torch.Tensor | None = None,
    compile_body: bool = False,
    compile_scope: str = "layers",
    head_kernels: str = "triton",
    keep_head_logits_gib: float = 0.0,
    attention: str = "auto",
    scored: torch.Tensor | None = None,
    cu_seqlens: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Returns [B, L] tensors where column t scores token t given tokens < t (column 0 is 0).

    `chunk_size > 0` runs the LM head, log-softmax and entropy over that many tokens (rows x
    positions) at a time through `FusedHeadLogprobs`, so no fp32 logits of the batch are kept.
    `position_ids` that restart at 0 mark packed sequences (SFT packing); the attention mask is then
    left out so transformers builds a block-diagonal mask and packed sequences never see each other.
    `compile_body` runs the transformer body through torch.compile on CUDA (fused norms, rotary and
    activations in forward and backward; compiled once per model, recompiled for new shapes); `compile_scope`
    "layers" compiles each decoder layer instead of the whole body (`compiled_body`). `head_kernels` goes to
    `fused_head_logprobs` (the chunk kernels on CUDA); the chunks' logits are kept for backward when all of this
    micro-batch's take at most `keep_head_logits_gib` GiB. `attention` picks the SDPA backend the body's attention
    runs first (`attention_backend`; "auto" = torch's choice). With transformers' sdpa attention, an unpadded
    micro-batch's all-ones mask reaches SDPA as no mask with is_causal and the KV heads unrepeated (enable_gqa); a
    padded one as a [rows, 1, L, L] boolean mask with the KV heads repeated (repeat_kv); so does every micro-batch
    under compile_scope "body", whose mask is built while tracing.

    `scored` [B, L] (bool or 0/1): the columns whose values are read; the head (GEMMs, softmax passes, and their
    backward) then runs on those positions' hidden rows only, gathered differentiably, and every other column is 0.
    None scores every column. A CPU mask avoids a device sync (the gather's index is built where the mask is).

    `cu_seqlens` (packed rows, with `position_ids`): the sequences' boundaries in the flat rows, handed to the
    attention as `cu_seq_lens_q` for a model set up by `varlen_attention.install` (no mask is used then).
    """
    if position_ids is not None:
        attention_mask = None
    compiled = compile_body and input_ids.is_cuda
    if compiled:
        _compiled_under(attention)
    body = compiled_body(model.model, compile_scope) if compiled else model.model
    # use_cache=False: no KV cache in training (and transformers detects packed sequences only without one)
    with attention_backend(attention):  # backward runs the kernels of the forward's choice
        boundaries = {} if cu_seqlens is None else {"cu_seq_lens_q": cu_seqlens}
        states = body(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                      use_cache=False, **boundaries).last_hidden_state
    head = model.get_output_embeddings()
    if scored is None:
        hidden, targets = states[:, :-1], input_ids[:, 1:]
    else:
        rows, width = input_ids.shape
        columns = scored.bool().clone()
        columns[:, 0] = False  # column 0 scores nothing
        index = columns.reshape(-1).nonzero().squeeze(1).to(input_ids.device, non_blocking=True)  # flat b * L + t
        # column t is scored from the hidden state at t - 1 (the same row: t >= 1)
        hidden = states.reshape(rows * width, -1).index_select(0, index - 1)
        targets = input_ids.reshape(-1).index_select(0, index)
    lp, ent = _head_logprobs(hidden, head, targets, with_entropy, chunk_size, head_kernels, keep_head_logits_gib)
    if scored is None:
        zeros = lp.new_zeros((input_ids.shape[0], 1))
        return torch.cat([zeros, lp], dim=1), (torch.cat([zeros, ent], dim=1) if with_entropy else None)

    def scatter(values: torch.Tensor) -> torch.Tensor:  # differentiable: backward gathers the scored rows' gradient
        return values.new_zeros(rows * width).index_copy(0, index, values).view(rows, width)

    return scatter(lp), (scatter(ent) if with_entropy else None)


def _head_logprobs(hidden: torch.Tensor, head: torch.nn.Module, targets: torch.Tensor, with_entropy: bool, chunk_size: int,
                   head_kernels: str, keep_head_logits_gib: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(log p(target), entropy) of hidden rows [..., E] and targets [...]: fused and chunked, or plain autograd."""
    if chunk_size:
        logits_bytes = targets.numel() * head.weight.shape[0] * hidden.element_size()
        keep = 0 < logits_bytes <= keep_head_logits_gib * 2**30
        lp, ent = fused_head_logprobs(hidden, head, targets, chunk_size, head_kernels, keep)
        return lp, (ent if with_entropy else None)
    return logprobs_from_logits(head(hidden), targets, with_entropy)
