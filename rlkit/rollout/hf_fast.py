"""The fast HF engine: a static-KV-cache decode loop over the HF model's own modules.

transformers `generate` spends most of a rollout on host work between tiny kernels (logits
processors, stopping criteria, cache bookkeeping, a device sync per token). This engine runs
the same model (its embedding, norms, projections, rotary embedding and MLPs, called as
modules, so weights are shared with the learner and a weight sync costs nothing) with:

- a preallocated KV cache per layer, written in place at the current position;
- the whole decode step (forward, sampling, log-probability of the chosen token, stop check)
  captured once in a CUDA graph and replayed per token; on GPU the forward is first fused by
  torch.compile (optional; falls back to eager kernels if compilation fails);
- q|k|v and gate|up projections concatenated into one GEMM each (refreshed from the parameters
  before every generate);
- sampling by the exponential-race (Gumbel-max) trick: argmax(log p - log E), E ~ Exp(1),
  which draws exactly from softmax(logits / T) without a cumulative sum or a multinomial;
- the sampled token's log-probability under the warped distribution, as the HF engine records;
- temperature sampling (top_p = 1) by the inverse CDF at one uniform a row, in two short kernels that read
  the logits about once (`rlkit/rollout/decode_sampling.py`; `sampling = "triton"`, the default where available);
- the decode step's attention in Triton kernels that read only the filled part of the cache, its length
  taken from the device so one captured graph serves every step, the rotary embedding and the cache writes
  done inside for head sizes up to 64 (`rlkit/rollout/decode_attention.py`; `attention = "triton"`, the default
  where Triton is available), else batched matmuls over the whole cache;
- small prefills (up to PREFILL_GRAPH_MAX_TOKENS prompt tokens) as one captured graph, captured in a batch shape's
  first call and replayed from its second, their prompts copied into the state's own buffers;
- compaction: when half of the rows (or more) have stopped, the live rows move to the front of the
  buffers and decoding goes on with a batch half as large (its own captured graph, on views of the same
  cache), so a long-tailed batch stops paying for its finished rows (`compact`, on by default).

Supports decoder-only models with Llama-style attention (Qwen2, Qwen3, Llama, Mistral without
a sliding window). Selected by `rollout.static_cache: true` with the HF engine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rlkit.errors import ConfigError
from rlkit.rollout import decode_attention as decode_kernels
from rlkit.rollout.base import Completion, SamplingParams
from rlkit.rollout.decode_attention import available as decode_attention_available
from rlkit.rollout.decode_attention import decode_attention, decode_attention_rope
from rlkit.rollout.decode_sampling import available as decode_sampling_available
from rlkit.rollout.decode_sampling import inverse_cdf_sample
from rlkit.rollout.decode_state import DecodeState
from rlkit.rollout.hf import InProcessEngine

log = logging.getLogger("rlkit.rollout")

SUPPORTED_MODEL_TYPES = {"qwen2", "qwen3", "llama", "mistral"}
STOP_CHECK_EVERY = 32  # decode steps between host checks for "every row has stopped"
MAX_CACHED_STATES = 4  # KV caches (and captured graphs) kept for reuse, one per batch shape
WIDTH_MULTIPLE = 32  # prompt widths are padded up to a multiple of this when graphs are captured
MIN_COMPACT_ROWS = 8  # the smallest batch compaction shrinks to
# prefills of up to this many prompt tokens (rows x width) run as a captured graph: small ones are host-bound (the
# reference's 128 x 64: 29 ms for ~12 ms of kernels), while a graph keeps its intermediates reserved for good
# (gigabytes for `long`'s 128 x 256 on the 1.5B shape, whose prefill is kernel-bound anyway)
PREFILL_GRAPH_MAX_TOKENS = 16384


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def sample_tokens(
    logits: torch.Tensor, noise: torch.Tensor | None, temperature: float, top_p: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Next token per row and its log-probability under the warped distribution.

    `noise` is Exp(1) noise of the logits' shape (None = greedy). Greedy records the
    log-probability under the unwarped distribution, as the HF engine does.
    """
    scores = logits.float()
    if noise is None:
        token = scores.argmax(-1)
        return token, scores.gather(-1, token[:, None]).squeeze(-1) - torch.logsumexp(scores, -1)
    if temperature != 1.0:
        scores = scores / temperature
    if top_p < 1.0:  # keep the smallest set of tokens whose probability reaches top_p (as TopPLogitsWarper)
        sorted_scores, order = scores.sort(-1, descending=False)
        cumulative = sorted_scores.softmax(-1).cumsum(-1)
        remove_sorted = cumulative <= (1 - top_p)
        remove_sorted[..., -1] = False
        remove = remove_sorted.scatter(-1, order, remove_sorted)
        scores = scores.masked_fill(remove, float("-inf"))
    log_z = torch.logsumexp(scores, -1, keepdim=True)
    token = (scores - noise.log()).argmax(-1)  # argmax(log p - log E) ~ softmax(scores)
    return token, (scores.gather(-1, token[:, None]) - log_z).squeeze(-1)


def _record(
    current: torch.Tensor,
    step: torch.Tensor,
    done: torch.Tensor,
    out_tokens: torch.Tensor,
    out_logprobs: torch.Tensor,
    token: torch.Tensor,
    logprob: torch.Tensor,
    stop: torch.Tensor | None,
    pad: int,
) -> None:
    """Record the sampled token and its log-probability in column `step` (pad and 0 for rows done already),
    update `done`, make the token the next step's input, advance `step`."""
    token = torch.where(done, torch.full_like(token, pad), token)
    logprob = torch.where(done, torch.zeros_like(logprob), logprob)
    out_tokens.index_copy_(1, step, token[:, None])
    out_logprobs.index_copy_(1, step, logprob[:, None])
    if stop is not None:
        done |= torch.isin(token, stop)
    current.copy_(token)
    step += 1


@dataclass
class _FusedLayer:
    qkv_sizes: list[int]
    qkv_weight: torch.Tensor | None = None
    qkv_bias: torch.Tensor | None = None
    gate_up_weight: torch.Tensor | None = None
    gate_up_bias: torch.Tensor | None = None


class FastHFEngine(InProcessEngine):
    """Static-cache engine; `cuda_graph`/`compile` default to on for CUDA, off for CPU."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,  # noqa: ANN001
        batch_size: int = 512,
        cuda_graph: bool | None = None,
        compile: bool | None = None,
    ):
        model_type = getattr(model.config, "model_type", "?")
        if model_type not in SUPPORTED_MODEL_TYPES or getattr(model.config, "use_sliding_window", False):
            raise ConfigError(
                f"key 'rollout.static_cache': the fast HF engine supports {sorted(SUPPORTED_MODEL_TYPES)} without sliding "
                f"windows, not model_type {model_type!r}; set rollout.static_cache: false"
            )
        self.model, self.tokenizer = model, tokenizer
        self.batch_size = batch_size
        self.stop_ids = {tokenizer.eos_token_id}
        self.cuda_graph, self.compile = cuda_graph, compile
        self.compact = True
        self.prefill_graphs = True  # small prefills replay a captured graph from a batch shape's second call (GPU)
        self.attention = "triton"  # the decode step's attention: "triton" (where available) or "plain"
        self.compile_mode: str | None = None  # torch.compile mode of the decode step (None: the default mode)
        self.sampling = (
            "triton"  # temperature sampling in decode steps: "triton" (inverse CDF, where available) or "torch"
        )
        self.stats: dict[str, float] = {}  # token counts since the caller last cleared it (rlkit bench reads them)
        self._states: dict[tuple, DecodeState] = {}
        self._fused: dict[int, _FusedLayer] = {}
        self._compiled: Callable | None = None
        self._pool: tuple | None = None  # the captured graphs' shared memory pool
        self.compile_failed = False

    # ------------------------------------------------------------------ the model, one layer at a time
    @property
    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _attend(
        self,
        layer: torch.nn.Module,
        hidden: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        mask: torch.Tensor,
        write: Callable,
        kernel: tuple | None = None,
    ) -> torch.Tensor:
        """Self-attention of `hidden` [B, T, E] against the cache after writing its own K/V there; with
        `kernel` = (valid [B, Lmax], slot [1]), one token a row through the Triton decode kernels."""
        attn = layer.self_attn
        batch, length, _ = hidden.shape
        head_dim = attn.head_dim
        fused = self._fused[id(layer)]
        q, k, v = F.linear(hidden, fused.qkv_weight, fused.qkv_bias).split(fused.qkv_sizes, dim=-1)
        q, k, v = (t.view(batch, length, -1, head_dim) for t in (q, k, v))
        if hasattr(attn, "q_norm"):  # Qwen3
            q, k = attn.q_norm(q), attn.k_norm(k)
        if kernel is not None and decode_kernels.fuse_rope(head_dim):  # rotary, both cache writes and attention: one kernel
            out = decode_attention_rope(q[:, 0], k[:, 0], v[:, 0], cos[:, 0], sin[:, 0], keys, values, *kernel,
                                        attn.scaling)
            return attn.o_proj(out.reshape(batch, 1, -1))
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, heads, T, D]
        cos, sin = cos[:, None], sin[:, None]
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        write(keys, k)
        write(values, v)
        if kernel is not None:  # one token a row: [B, H, D] against slots [0, slot] in one kernel
            out = decode_attention(q[:, :, 0], keys, values, kernel[0], kernel[1], attn.scaling)
            return attn.o_proj(out.reshape(batch, 1, -1))
        kv_heads = keys.shape[1]
        groups = q.shape[1] // kv_heads
        # grouped-query attention without repeating K/V: [B, KVH, groups*T, D] @ [B, KVH, D, L]
        q = q.reshape(batch, kv_heads, groups * length, head_dim)
        scores = torch.matmul(q, keys.transpose(2, 3)) * attn.scaling
        scores = scores.view(batch, kv_heads, groups, length, -1).masked_fill(~mask[:, None, None], float("-inf"))
        weights = torch.softmax(scores.float(), dim=-1).to(q.dtype).view(batch, kv_heads, groups * length, -1)
        out = torch.matmul(weights, values).view(batch, kv_heads * groups, length, head_dim)
        return attn.o_proj(out.transpose(1, 2).reshape(batch, length, -1))

    def _mlp(self, layer: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        mlp, fused = layer.mlp, self._fused[id(layer)]
        gate, up = F.linear(hidden, fused.gate_up_weight, fused.gate_up_bias).chunk(2, dim=-1)
        return mlp.down_proj(mlp.act_fn(gate) * up)

    @torch.no_grad()
    def refresh_fused_weights(self) -> None:
        """(Re)build the concatenated q|k|v and gate|up weights from the model's current parameters.

        One GEMM instead of three (and two) per layer and token; copied in place so captured graphs
        stay valid. Runs before every generate, so training between calls is always seen (~0.5 ms)."""
        for layer in self.model.model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            parts = {
                "qkv_weight": [attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight],
                "qkv_bias": [attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias],
                "gate_up_weight": [mlp.gate_proj.weight, mlp.up_proj.weight],
                "gate_up_bias": [mlp.gate_proj.bias, mlp.up_proj.bias],
            }
            fused = self._fused.get(id(layer))
            if fused is None:
                fused = self._fused[id(layer)] = _FusedLayer(
                    qkv_sizes=[attn.q_proj.out_features, attn.k_proj.out_features, attn.v_proj.out_features]
                )
            for name, tensors in parts.items():
                if any(t is None for t in tensors):
                    continue  # no bias
                target = getattr(fused, name)
                if target is None:
                    setattr(fused, name, torch.cat(tensors).detach())
                else:
                    torch.cat(tensors, out=target)

    def _forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
        mask: torch.Tensor,
        write: Callable,
        kernel: tuple | None = None,
    ) -> torch.Tensor:
        """Logits [B, V] of the last position. tokens/positions [B, T]; mask [B, T, L] bool over the L slots of keys/values."""
        body = self.model.model
        hidden = body.embed_tokens(tokens)
        cos, sin = body.rotary_emb(hidden, positions)
        for layer, layer_keys, layer_values in zip(body.layers, keys, values):
            hidden = hidden + self._attend(
                layer, layer.input_layernorm(hidden), cos, sin, layer_keys, layer_values, mask, write, kernel
            )
            hidden = hidden + self._mlp(layer, layer.post_attention_layernorm(hidden))
        return self.model.lm_head(body.norm(hidden[:, -1]))

    def _decode_and_sample(
        self,
        token: torch.Tensor,
        position: torch.Tensor,
        slot: torch.Tensor,
        valid: torch.Tensor,
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
        noise: torch.Tensor | None,
        temperature: float,
        top_p: float,
        seed: torch.Tensor | None = None,
        step: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One token per row at cache slot `slot`, then the next token and its logprob. Plain tensors in and
        out and no random draws inside (the noise comes in, or with `seed` and `step` the fused sampling kernel
        draws it from Philox keyed by their device values), so torch.compile fuses it into one graph."""

        def write(cache: torch.Tensor, new: torch.Tensor) -> None:
            cache.index_copy_(2, slot, new)

        kernel = (valid, slot) if self._use_kernel(keys[0]) else None
        logits = self._forward(token[:, None], position[:, None], keys, values, valid[:, None], write, kernel)
        if seed is not None:  # inverse-CDF sampling kernels (rlkit/rollout/decode_sampling.py)
            return inverse_cdf_sample(logits, seed, step, temperature)
        return sample_tokens(logits, noise, temperature, top_p)

    def _fused_sampling(self, state: DecodeState, sampling: SamplingParams) -> bool:
        """Whether decode steps sample with the Triton kernels (inverse CDF): asked for, temperature sampling without
        top-p, CUDA with Triton."""
        return (
            self.sampling == "triton"
            and state.noise is not None
            and state.seed is not None
            and sampling.top_p >= 1.0
            and decode_sampling_available(state.token.device)
        )

    # ------------------------------------------------------------------ one decode step (captured on GPU)
    def _decode_step(self, state: DecodeState, sampling: SamplingParams, stop: torch.Tensor | None, pad: int) -> None:
        fused = self._fused_sampling(state, sampling)
        if state.noise is not None and not fused:
            state.noise.exponential_()
        (self._compiled or self._step)(
            state.token,
            state.position,
            state.slot,
            state.valid,
            state.keys,
            state.values,
            None if fused else state.noise,
            sampling.temperature,
            sampling.top_p,
            *((state.seed, state.step) if fused else (None, None)),
            state.step,
            state.done,
            state.out_tokens,
            state.out_logprobs,
            stop,
            pad,
        )

    def _step(
        self,
        token: torch.Tensor,
        position: torch.Tensor,
        slot: torch.Tensor,
        valid: torch.Tensor,
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
        noise: torch.Tensor | None,
        temperature: float,
        top_p: float,
        seed: torch.Tensor | None,
        seed_step: torch.Tensor | None,
        step: torch.Tensor,
        done: torch.Tensor,
        out_tokens: torch.Tensor,
        out_logprobs: torch.Tensor,
        stop: torch.Tensor | None,
        pad: int,
    ) -> None:
        """A whole decode step on the state's tensors, in place: the slot marked valid, the forward and the sample,
        the token recorded, slot and position advanced. One function so that torch.compile fuses the bookkeeping
        (about ten one-microsecond kernels a step when run as separate ops) into few kernels."""
        valid.index_fill_(1, slot, True)
        sampled = self._decode_and_sample(
            token, position, slot, valid, keys, values, noise, temperature, top_p, seed, seed_step
        )
        _record(token, step, done, out_tokens, out_logprobs, *sampled, stop, pad)
        slot += 1
        position += 1

    def _emit(
        self, state: DecodeState, logits: torch.Tensor, sampling: SamplingParams, stop: torch.Tensor | None, pad: int
    ) -> None:
        """Sample from `logits`, record token and log-probability in column `step`, update `done`."""
        if state.noise is not None:
            state.noise.exponential_()
        token, logprob = sample_tokens(logits, state.noise, sampling.temperature, sampling.top_p)
        _record(state.token, state.step, state.done, state.out_tokens, state.out_logprobs, token, logprob, stop, pad)

    # ------------------------------------------------------------------ generate (batched by InProcessEngine)
    def _prefill(
        self,
        state: DecodeState,
        input_ids: torch.Tensor,
        attention: torch.Tensor,
        sampling: SamplingParams,
        stop: torch.Tensor | None,
        pad: int,
    ) -> None:
        """Run the (left-padded) prompts, fill the cache, sample the first token."""
        width = input_ids.shape[1]
        state.valid.zero_()
        state.valid[:, :width] = attention.bool()
        state.done.zero_()
        state.step.zero_()
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        causal = torch.ones((width, width), dtype=torch.bool, device=input_ids.device).tril()
        # causal over valid keys; a padding query sees itself so that no row of the softmax is empty
        mask = (causal[None] & attention.bool()[:, None, :]) | torch.eye(width, dtype=torch.bool, device=input_ids.device)

        def write(cache: torch.Tensor, new: torch.Tensor) -> None:
            cache.copy_(new)

        # the prompts attend over the cache's first `width` slots only, the ones they fill (views of the cache):
        # scores over the whole cache were 9x (reference) to 13x (`long`) larger, masked to -inf past `width`
        keys = [layer_keys[:, :, :width] for layer_keys in state.keys]
        values = [layer_values[:, :, :width] for layer_values in state.values]
        logits = self._forward(input_ids, positions, keys, values, mask, write)
        self._emit(state, logits, sampling, stop, pad)
        state.position.copy_(positions[:, -1] + 1)
        state.slot.fill_(width)

    def _run_prefill(
        self,
        state: DecodeState,
        input_ids: torch.Tensor,
        attention: torch.Tensor,
        sampling: SamplingParams,
        stop: torch.Tensor | None,
        pad: int,
    ) -> None:
        """The prefill: eager on a state's first call, which then captures it (capture runs nothing, and the random
        draws of a graph follow the generator as eager ones do), a replay of that graph from the second call on.
        Eager, its ~1,400 small ops were host-bound (29 ms of a reference `generate` on an H200 for ~12 ms of
        kernels); only prefills of up to PREFILL_GRAPH_MAX_TOKENS tokens get a graph. It reads the prompts from the
        state's own buffers."""
        device = input_ids.device
        small = input_ids.numel() <= PREFILL_GRAPH_MAX_TOKENS
        if not (self._use_graph(device) and self.prefill_graphs and small):
            self._prefill(state, input_ids, attention, sampling, stop, pad)
            return
        if state.prefill_graph is not None:
            state.prompt_ids.copy_(input_ids)
            state.prompt_mask.copy_(attention)
            state.prefill_graph.replay()
            return
        state.prompt_ids, state.prompt_mask = input_ids.clone(), attention.clone()
        self._prefill(state, state.prompt_ids, state.prompt_mask, sampling, stop, pad)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, pool=self._pool):
                self._prefill(state, state.prompt_ids, state.prompt_mask, sampling, stop, pad)
        except Exception as err:  # noqa: BLE001 - capture is an optimization; the eager prefill above is the same
            log.warning("CUDA graph capture of the prefill failed (%s: %s); prefilling without graphs",
                        type(err).__name__, err)
            self.prefill_graphs = False
            torch.cuda.synchronize(device)
            return
        state.prefill_graph = graph
        self.stats["prefill_graphs_captured"] = self.stats.get("prefill_graphs_captured", 0) + 1

    def _use_graph(self, device: torch.device) -> bool:
        return device.type == "cuda" and (self.cuda_graph is None or self.cuda_graph)

    def _maybe_compile(self, device: torch.device) -> None:
        wanted = self.compile if self.compile is not None else device.type == "cuda"
        if wanted and self._compiled is None and not self.compile_failed:
            # static shapes for the first batch; a second batch size (a compacted half) recompiles once with a
            # dynamic batch dimension that serves every later size, instead of one compile per size
            self._compiled = torch.compile(self._step, dynamic=None, fullgraph=False, mode=self.compile_mode)

    def _run_decode(
        self, state: DecodeState, sampling: SamplingParams, stop: torch.Tensor | None, pad: int, steps: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode up to `steps` more tokens; returns every row's (tokens, logprobs) [B, max_new_tokens]."""
        device = state.token.device
        self._maybe_compile(device)
        rows = torch.arange(len(state.token), device=device)  # original row of each row of `current`
        current = state
        tokens, logprobs = state.out_tokens, state.out_logprobs
        index = 0
        while index < steps:
            current, ran = self._decode_steps(current, sampling, stop, pad, min(steps - index, STOP_CHECK_EVERY))
            index += ran
            self.stats["decode_computed"] = self.stats.get("decode_computed", 0) + ran * len(current.token)
            if stop is None or index >= steps:
                continue  # nothing stops rows: no check, and nothing to compact
            live = (~current.done[: len(rows)]).nonzero().squeeze(1)  # one host sync per STOP_CHECK_EVERY steps
            if len(live) == 0:
                break
            size = self._compact_size(len(live), len(current.token))
            if size < len(current.token):
                if tokens is state.out_tokens:  # the first compaction: keep the outputs apart from the moving rows
                    tokens, logprobs = tokens.clone(), logprobs.clone()
                tokens[rows], logprobs[rows] = current.out_tokens[: len(rows)], current.out_logprobs[: len(rows)]
                rows = rows[live]
                current = state.keep(live, size)
        if tokens is not state.out_tokens:
            tokens[rows], logprobs[rows] = current.out_tokens[: len(rows)], current.out_logprobs[: len(rows)]
        return tokens, logprobs

    def _compact_size(self, live: int, size: int) -> int:
        """Halve the batch while the live rows fit (never below MIN_COMPACT_ROWS); `size` when compaction is off."""
        if not self.compact:
            return size
        while size % 2 == 0 and size // 2 >= max(live, MIN_COMPACT_ROWS):
            size //= 2
        return size

    def _use_kernel(self, cache_or_head_dim: torch.Tensor | int) -> bool:
        """Whether decode steps use the Triton attention kernel (asked for, CUDA, Triton there, head size fits)."""
        if self.attention != "triton":
            return False
        if isinstance(cache_or_head_dim, int):
            return decode_attention_available(cache_or_head_dim, self._device)
        return decode_attention_available(cache_or_head_dim.shape[-1], cache_or_head_dim.device)

    def _decode_steps(
        self, state: DecodeState, sampling: SamplingParams, stop: torch.Tensor | None, pad: int, steps: int
    ) -> tuple[DecodeState, int]:
        """Up to `steps` decode steps of `state` (its captured graph on GPU); returns the state and the steps run."""
        device = state.token.device

        def step() -> None:
            self._decode_step(state, sampling, stop, pad)

        ran = 0
        if self._use_graph(device) and state.graph is None and steps > 0:
            try:
                self._capture(state, step, device)  # ends by replaying the captured graph as the first step
                ran = 1
            except Exception as err:  # noqa: BLE001 - capture is an optimization; eager steps give the same samples
                log.warning(
                    "CUDA graph capture of the decode step failed (%s: %s); decoding without graphs",
                    type(err).__name__,
                    err,
                )
                self.cuda_graph, state.graph = False, None
                torch.cuda.synchronize(device)
        for _ in range(ran, steps):
            if state.graph is not None:
                state.graph.replay()
            else:
                step()
            ran += 1
        return state, ran

    def _capture(self, state: DecodeState, step: Callable[[], None], device: torch.device) -> None:
        """Warm up (compiling if asked) and capture one decode step; the warm-up consumes no step (the buffers
        are rewound), the captured graph's first replay is the real step."""
        buffers = (
            state.valid,
            state.token,
            state.position,
            state.slot,
            state.step,
            state.done,
            state.out_tokens,
            state.out_logprobs,
        )
        snapshot = [t.clone() for t in buffers]

        def rewind() -> None:
            for buffer, saved in zip(buffers, snapshot):
                buffer.copy_(saved)

        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            try:
                step()
            except Exception as err:  # a compiler failure must not stop the rollout
                if self._compiled is None:
                    raise
                log.warning(
                    "torch.compile of the decode step failed (%s: %s); using eager kernels", type(err).__name__, err
                )
                self._compiled, self.compile_failed = None, True
                rewind()
                step()
        torch.cuda.current_stream(device).wait_stream(side)
        rewind()  # back to before the warm-up step, then capture the same step and replay it as the real one
        if self._pool is None:  # one memory pool for every graph: a step's intermediates never outlive it
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            step()
        rewind()
        graph.replay()
        state.graph = graph
        self.stats["graphs_captured"] = self.stats.get("graphs_captured", 0) + 1

    def _generate_batch(
        self, prompts: list[list[int]], sampling: SamplingParams, index_offset: int
    ) -> list[Completion]:
        device = self._device
        pad = self.tokenizer.pad_token_id
        width = max(len(p) for p in prompts)
        if self._use_graph(device):  # round up so that batches of similar prompts share one captured graph
            width = -(-width // WIDTH_MULTIPLE) * WIDTH_MULTIPLE
        rows = len(prompts) * sampling.n
        input_ids = torch.full((rows, width), pad, dtype=torch.long)
        attention = torch.zeros((rows, width), dtype=torch.long)
        for row in range(rows):  # left padding; the n samples of a prompt are adjacent rows
            ids = prompts[row // sampling.n]
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention[row, width - len(ids) :] = 1
        input_ids, attention = input_ids.to(device), attention.to(device)

        key = (
            rows,
            width,
            sampling.max_new_tokens,
            sampling.greedy,
            sampling.temperature,
            sampling.top_p,
            tuple(sorted(self.stop_ids)),
            device,
        )
        state = self._states.pop(key, None)
        if state is None:
            while len(self._states) >= MAX_CACHED_STATES:  # drop the least recently used cache and graph
                self._states.pop(next(iter(self._states)))
            state = DecodeState.allocate(self.model, rows, width + sampling.max_new_tokens, sampling, device,
                                         stop_ids=sorted(self.stop_ids))
        self._states[key] = state  # most recently used last
        stop = state.stop  # the state's own tensor (the key holds the stop ids): captured graphs read its address

        was_training = self.model.training
        self.model.eval()
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        if self._fused_sampling(state, sampling):  # the kernel's key, from torch's (seeded) CPU generator
            state.seed.fill_(int(torch.randint(0, 2**62, (1,))))
        self.refresh_fused_weights()
        try:
            self._run_prefill(state, input_ids, attention, sampling, stop, pad)
            tokens, logprobs = self._run_decode(state, sampling, stop, pad, sampling.max_new_tokens - 1)
        finally:
            self.model.train(was_training)
        produced = int(state.step)
        completions = self._completions(
            prompts, tokens[:, :produced].cpu(), logprobs[:, :produced].cpu(), sampling.n, index_offset
        )
        self.stats["decode_computed"] = self.stats.get("decode_computed", 0) + rows  # the first token, from the prefill
        self.stats["decode_useful"] = self.stats.get("decode_useful", 0) + sum(len(c.response_ids) for c in completions)
        self.stats["prefill_computed"] = self.stats.get("prefill_computed", 0) + rows * width
        self.stats["prefill_useful"] = self.stats.get("prefill_useful", 0) + int(attention.sum())
        return completions
