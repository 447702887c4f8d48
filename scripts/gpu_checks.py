"""Correctness on the GPU, run by scripts/bench_gpu.sh before the bench (each line is one check).

1. greedy decoding (fp32) of the fast engine (CUDA graph + torch.compile) equals transformers `generate`;
2. the engine's sampled-token logprobs vs the learner's, bf16, on the ragged shape (stop-token bias);
3. the fused chunked LM head equals plain autograd (bf16), values and gradients, with the torch and the Triton
   chunk kernels (head_kernels.py) and with the logits kept for backward;
4. packed token-budget micro-batches vs padded ones: the same loss and gradients (fp32, 0.5B shape); in bf16, packed by
   a mask and by the sequences' boundaries (learner.packed_attention: varlen) against padded rows and against each
   sequence alone through SDPA's flash kernel, and SFT-packed rows by their boundaries against the mask;
5. decode compaction (rows leave the batch as they stop; graphs per half) gives the same greedy tokens;
6. the sampling kernels (inverse CDF): the float64 inverse CDF's tokens and log-probabilities at the same
   uniforms, and draws that follow the softmax under their own uniforms;
7. three generate calls of one batch on one engine (graphs captured in call 1, replayed after) agree exactly.
CHECKS_ONLY=1,2,6 runs only those (all by default).
"""

import copy
import os
from dataclasses import replace

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from rlkit.algos.rl_objective import make_policy_loss
from rlkit.bench.workload import RAGGED, REFERENCE, TINY, build_policy, build_tokenizer, prompt_samples
from rlkit.config import AlgorithmConfig, LearnerConfig
from rlkit.learner.base import pad_sequences
from rlkit.learner.logprobs import FusedHeadLogprobs, logprobs_from_logits, sequence_logprobs
from rlkit.learner.torch_learner import TorchLearner
from rlkit.models import encode_prompt
from rlkit.rollout.base import SamplingParams
from rlkit.rollout.hf import HFEngine
from rlkit.rollout.hf_fast import FastHFEngine
from rlkit.stages.sft import pack_sequences, sft_loss

dev = torch.device("cuda")
ONLY = {int(n) for n in os.environ.get("CHECKS_ONLY", "").split(",") if n}  # e.g. CHECKS_ONLY=6,7


def want(check: int) -> bool:
    return not ONLY or check in ONLY


# 1. greedy decoding, fp32: the fast engine (CUDA graph + torch.compile) against transformers generate
if want(1):
    w = replace(
        TINY,
        hidden=256,
        layers=4,
        heads=4,
        kv_heads=2,
        intermediate=512,
        vocab=2048,
        prompts=8,
        samples=1,
        prompt_tokens=24,
        completion_tokens=48,
    )
    model, tok = build_policy(w, dev), build_tokenizer(w)
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(8.0)  # sharpen: greedy ties decided by rounding say nothing
    prompts = [encode_prompt(tok, p["prompt"]) for p in prompt_samples(w)]
    prompts = [p[: 12 + i] for i, p in enumerate(prompts)]  # different lengths: left padding
    sp = SamplingParams(n=1, temperature=0.0, max_new_tokens=w.completion_tokens)
    ref, fast = HFEngine(model, tok), FastHFEngine(model, tok)
    ref.stop_ids = fast.stop_ids = set()
    a, b = ref.generate(prompts, sp), fast.generate(prompts, sp)
    same = sum(x.response_ids == y.response_ids for x, y in zip(a, b))
    lp = max(
        abs(u - v) for x, y in zip(a, b) if x.response_ids == y.response_ids for u, v in zip(x.logprobs, y.logprobs)
    )
    print(
        f"greedy fp32: {same}/{len(a)} sequences equal to HF generate, max |logprob diff| {lp:.2e}, compile_failed={fast.compile_failed}, "
        f"triton attention={fast._use_kernel(model.model.layers[0].self_attn.head_dim)}"
    )

# 2. bf16 ragged shape (the stop-token bias on the head): the engine's sampled-token logprobs vs the learner's
#    (fused, chunked) logprobs, rows of different lengths
if want(2):
    w = replace(RAGGED, prompts=2, samples=4, completion_tokens=64, stop_median=0.25)
    model, tok = build_policy(w, dev), build_tokenizer(w)
    eng = FastHFEngine(model, tok, compile=False)
    outs = eng.generate(
        [encode_prompt(tok, p["prompt"]) for p in prompt_samples(w)], SamplingParams(n=4, max_new_tokens=64, seed=1)
    )
    batch = pad_sequences([c.prompt_ids + c.response_ids for c in outs], [len(c.prompt_ids) for c in outs], 0).to(dev)
    with torch.no_grad():
        learner_lp, _ = sequence_logprobs(model, batch.input_ids, batch.attention_mask, chunk_size=4096)
    diff = torch.cat(
        [
            (
                learner_lp[i, len(c.prompt_ids) : len(c.prompt_ids) + len(c.response_ids)].cpu()
                - torch.tensor(c.logprobs)
            ).abs()
            for i, c in enumerate(outs)
        ]
    )
    print(
        f"bf16 sampled vs learner logprobs ({sum(len(c.response_ids) for c in outs)} tokens, lengths "
        f"{[len(c.response_ids) for c in outs]}): mean |diff| {diff.mean():.3e}, max {diff.max():.3e}"
    )

# 3. fused chunked LM head vs plain autograd, bf16, values and gradients
if want(3):
    w = replace(RAGGED, prompts=2, samples=4, completion_tokens=64, stop_median=0.25)
    model = build_policy(w, dev)
    hidden = torch.randn(3000, w.hidden, device=dev, dtype=torch.bfloat16, requires_grad=True)
    targets = torch.randint(0, w.vocab, (3000,), device=dev)
    weight = model.lm_head.weight
    lp0, ent0 = logprobs_from_logits(hidden @ weight.T, targets, True)
    (lp0.sum() + 0.1 * ent0.sum()).backward()
    g0 = hidden.grad.float().clone()
    hidden.grad = None

    def rel(x: torch.Tensor, y: torch.Tensor) -> float:
        return float((x - y).detach().norm() / y.detach().norm())

    runs = {}
    for kind, keep in (("torch", False), ("triton", False), ("triton", True)):
        lp1, ent1, _ = FusedHeadLogprobs.apply(hidden, weight, targets, 1024, None, kind, keep)
        (lp1.sum() + 0.1 * ent1.sum()).backward()
        g1 = hidden.grad.float().clone()
        hidden.grad = None
        runs[kind, keep] = (lp1.detach(), ent1.detach(), g1)
        print(
            f"fused head bf16 ({kind} kernels{', logits kept' if keep else ''}): rel err logprob {rel(lp1, lp0):.2e}, "
            f"entropy {rel(ent1, ent0):.2e}, grad {rel(g1, g0):.2e}"
        )
    ref = runs["torch", False]
    for key in (("triton", False), ("triton", True)):
        got = runs[key]
        print(
            f"fused head, {key[0]} kernels{' + kept logits' if key[1] else ''} vs torch kernels: max |diff| logprob "
            f"{float((got[0] - ref[0]).abs().max()):.2e}, entropy {float((got[1] - ref[1]).abs().max()):.2e}, "
            f"grad rel {rel(got[2], ref[2]):.2e}"
        )

# 4. packed vs padded micro-batches: loss and gradients, fp32 on the reference shape, 24 ragged sequences
if want(4):
    w = replace(REFERENCE, dtype="float32")
    model = build_policy(w, dev)
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(40, 700, (24,), generator=gen).tolist()
    batch = pad_sequences(
        [torch.randint(0, w.vocab - 1, (n,), generator=gen).tolist() for n in lengths], [32] * 24, w.vocab - 1
    )
    batch.advantages = torch.randn(24, generator=gen)[:, None].expand_as(batch.loss_mask).contiguous()
    batch.old_logprobs = -12.0 + 0.1 * torch.randn(batch.loss_mask.shape, generator=gen)
    loss_fn = make_policy_loss(
        AlgorithmConfig(loss_agg="seq_mean_token_mean", entropy_coef=0.01), 24, float(batch.loss_mask.sum()), 700
    )
    results = {}
    for name, config in (
        ("padded", LearnerConfig(micro_batch_size=6, logprob_chunk_size=4096)),
        ("packed", LearnerConfig(micro_batch_tokens=4096, logprob_chunk_size=4096)),
    ):
        learner = TorchLearner(copy.deepcopy(model), config, lr=1e-6, device=dev)
        total, computed = 0.0, 0
        for item in learner._micro_batches(batch):
            _, micro, fed = learner._split(item)
            fed = fed.to(dev)
            micro = fed.padded if hasattr(fed, "padded") else fed
            total += learner._backward(fed, micro, loss_fn)["loss/total"]
            computed += fed.input_ids.numel()
        grad = torch.cat([p.grad.flatten() for p in learner.model.parameters() if p.grad is not None])
        results[name] = (total, grad, computed)
        del learner
    (la, ga, ca), (lb, gb, cb) = results["padded"], results["packed"]
    print(
        f"packed vs padded (fp32, 24 sequences of 40-700 tokens): loss {la:.6f} vs {lb:.6f} (rel {abs(la - lb) / abs(la):.1e}), "
        f"gradient rel err {float((ga - gb).norm() / ga.norm()):.1e}; tokens computed {ca} padded vs {cb} packed ({sum(lengths)} real)"
    )
    del model, results, ga, gb
    # the same batch in bf16: packed by a block-diagonal mask against packed by the boundaries (learner.packed_attention:
    # varlen, torch's flash op), each against the padded rows and against each sequence alone through SDPA's flash kernel
    # (one unpadded sequence a micro-batch: the varlen op's own algorithm); bf16 rounding differs between kernel families
    w = REFERENCE
    model = model_bf16 = build_policy(w, dev)
    results = {}
    for name, config in (
        ("padded", LearnerConfig(micro_batch_size=6, logprob_chunk_size=4096)),
        ("alone-flash", LearnerConfig(micro_batch_size=1, logprob_chunk_size=4096, attention_backend="flash")),
        ("mask", LearnerConfig(micro_batch_tokens=4096, logprob_chunk_size=4096, packed_attention="mask")),
        ("varlen", LearnerConfig(micro_batch_tokens=4096, logprob_chunk_size=4096, packed_attention="varlen")),
    ):
        learner = TorchLearner(copy.deepcopy(model), config, lr=1e-6, device=dev)
        lp, _ = learner.logprobs(batch)
        total = 0.0
        for item in learner._micro_batches(batch):
            _, micro, fed = learner._split(item)
            fed = fed.to(dev)
            total += float(learner._backward(fed, fed.padded if hasattr(fed, "padded") else fed, loss_fn)["loss/total"])
        grad = torch.cat([p.grad.flatten().float() for p in learner.model.parameters() if p.grad is not None])
        results[name] = (total, grad, lp.float().cpu(), learner.varlen)
        del learner
    scored = batch.loss_mask > 0
    for name, ref in (("mask", "padded"), ("varlen", "padded"), ("mask", "alone-flash"), ("varlen", "alone-flash"),
                      ("padded", "alone-flash")):
        total, grad, lp, used = results[name]
        ref_total, ref_grad, ref_lp, _ = results[ref]
        print(
            f"{name}{' (varlen op used)' if used and name == 'varlen' else ''} vs {ref}, bf16: loss {total:.6f} vs {ref_total:.6f}, "
            f"gradient rel err {float((grad - ref_grad).norm() / ref_grad.norm()):.1e}, logprobs mean |diff| "
            f"{float((lp - ref_lp)[scored].abs().mean()):.1e} max {float((lp - ref_lp)[scored].abs().max()):.1e}"
        )
    # SFT packing's rows (boundaries read from their restarting position ids): the same sequences, 2,048-token rows
    sequences = [batch.input_ids[i, :n].tolist() for i, n in enumerate(lengths)]
    sft_batch = pack_sequences(sequences, [32] * 24, max_length=2048, pad_id=w.vocab - 1)
    sft_scored = sft_batch.loss_mask > 0
    sft = {}
    for name in ("mask", "varlen"):
        learner = TorchLearner(copy.deepcopy(model_bf16), LearnerConfig(micro_batch_size=2, logprob_chunk_size=4096,
                                                                         packed_attention=name), lr=1e-6, device=dev)
        lp, _ = learner.logprobs(sft_batch)
        metrics = learner.train_step(sft_batch, sft_loss(float(sft_batch.loss_mask.sum())))
        sft[name] = (lp.float(), metrics["loss"], metrics["grad_norm"], learner.varlen)
        del learner
    (lp_m, loss_m, norm_m, _), (lp_v, loss_v, norm_v, used) = sft["mask"], sft["varlen"]
    print(
        f"SFT-packed rows ({len(sft_batch)} of {sft_batch.input_ids.shape[1]}), varlen{' (op used)' if used else ''} vs mask, "
        f"bf16: loss {loss_v:.6f} vs {loss_m:.6f}, grad norm {norm_v:.4f} vs {norm_m:.4f}, logprobs mean |diff| "
        f"{float((lp_v - lp_m)[sft_scored].abs().mean()):.1e} max {float((lp_v - lp_m)[sft_scored].abs().max()):.1e}"
    )
    del model, model_bf16, results

# 5. decode compaction under greedy decoding, with CUDA graphs and torch.compile: a counting model (next token =
#    last + 1) stops each of 128 rows after a chosen number of steps; compacted == static batch
if want(5):
    vocab = 512
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=vocab,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=2,
        tie_word_embeddings=False,
        eos_token_id=vocab - 1,
        pad_token_id=vocab - 1,
    )
    model = Qwen2ForCausalLM(config).to(dev).eval()
    with torch.no_grad():
        for name, param in model.model.layers.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                param.mul_(0.5)
        basis = torch.linalg.qr(torch.randn(vocab, vocab, device=dev))[0]
        model.model.embed_tokens.weight.copy_(basis)
        model.lm_head.weight.copy_(2.0 * basis.roll(1, dims=0))
    tok = build_tokenizer(replace(TINY, vocab=vocab))
    stops = (
        (torch.distributions.LogNormal(torch.tensor(4.0), torch.tensor(1.0)).sample((128,)).clamp(1, 440))
        .long()
        .tolist()
    )
    prompts = [[5, 9, 2, vocab - 1 - n] for n in stops]
    sp = SamplingParams(n=1, temperature=0.0, max_new_tokens=448)
    eng = FastHFEngine(model, tok)
    eng.compact = False
    static = eng.generate(prompts, sp)
    static_cost = eng.stats["decode_computed"]
    eng.compact, eng.stats = True, {}
    compacted = eng.generate(prompts, sp)
    same = sum(a.response_ids == b.response_ids for a, b in zip(static, compacted))
    lp = max(abs(u - v) for a, b in zip(static, compacted) for u, v in zip(a.logprobs, b.logprobs))
    print(
        f"compaction greedy: {same}/128 rows equal to the static batch (lengths as set: "
        f"{sum(len(c.response_ids) == n for c, n in zip(static, stops))}/128), max |logprob diff| {lp:.1e}, "
        f"row-steps {eng.stats['decode_computed']:.0f} vs {static_cost:.0f} static, compile_failed={eng.compile_failed}"
    )

# 6. the sampling kernels (rlkit/rollout/decode_sampling.py: inverse CDF at one uniform a row) on the reference
#    shape's logits [128, 151,936] bf16: given the uniforms, the float64 inverse CDF's tokens and log-probabilities;
#    with their own Philox uniforms, frequencies of 65,536 draws from one 16-token distribution against its probabilities
if want(6):
    from rlkit.rollout.decode_sampling import inverse_cdf_sample

    torch.manual_seed(0)
    logits = (torch.randn(128, 151936, device=dev) * 4).to(torch.bfloat16)
    uniform = torch.rand(128, device=dev)
    seed, step = torch.tensor([123], device=dev), torch.tensor([7], device=dev)
    for temperature in (1.0, 0.6):
        token, logprob = inverse_cdf_sample(logits, seed, step, temperature, uniform)
        log_p = torch.log_softmax(logits.double() / temperature, -1)
        cumulative = log_p.exp().cumsum(-1)
        expected = torch.searchsorted(cumulative, uniform.double()[:, None], right=True).squeeze(1).clamp(max=151935)
        differ = token != expected
        gap = (cumulative.gather(1, expected[:, None]).squeeze(1) - uniform.double()).abs()
        print(
            f"sampling kernels, T={temperature}, given uniforms: {int((~differ).sum())}/128 tokens equal to the float64 "
            f"inverse CDF (the others' uniforms within {float(gap[differ].max()) if differ.any() else 0.0:.1e} of a "
            f"boundary), max |logprob diff| {float((logprob.double() - log_p.gather(1, token[:, None]).squeeze(1)).abs().max()):.1e}"
        )
    base = torch.randn(16, device=dev)
    probs = torch.softmax(base / 0.8, -1)
    token, _ = inverse_cdf_sample(base.expand(65536, -1).contiguous(), seed, step, 0.8)
    freq = torch.bincount(token, minlength=16).float() / 65536
    z = float(((freq - probs).abs() / (probs * (1 - probs) / 65536).sqrt()).max())
    print(
        f"sampling kernels, own uniforms: 65,536 draws over 16 tokens, largest frequency deviation {z:.2f} standard errors"
    )

# 7. one engine, three generate calls of the same batch with the same seed: the first prefills eagerly and captures
#    the prefill's and the decode steps' graphs, the later ones replay them. Every call must give the same tokens,
#    log-probabilities and stops, and compact alike (a graph that read a per-call tensor at a freed address, as the
#    stop ids once did, shows here); sampled on the ragged shape (stops at drawn lengths), bf16
if want(7):
    w = replace(RAGGED, prompts=16, samples=8, completion_tokens=256, stop_median=0.25)
    model, tok = build_policy(w, dev).eval(), build_tokenizer(w)
    eng = FastHFEngine(model, tok)
    prompts = [encode_prompt(tok, p["prompt"]) for p in prompt_samples(w)]
    sp = SamplingParams(n=8, temperature=1.0, max_new_tokens=w.completion_tokens, seed=3)
    calls, costs, prefill_graphs = [], [], []
    for _ in range(3):
        eng.stats = {}
        calls.append(eng.generate(prompts, sp))
        costs.append(eng.stats["decode_computed"])
        prefill_graphs.append(eng.stats.get("prefill_graphs_captured", 0))
    same = [sum(a.response_ids == b.response_ids and a.logprobs == b.logprobs for a, b in zip(calls[0], c))
            for c in calls[1:]]
    stopped = [sum(c.finish_reason == "stop" for c in call) for call in calls]
    print(
        f"repeated calls, sampled bf16: calls 2 and 3 equal to call 1 in {same[0]}/{len(calls[0])} and "
        f"{same[1]}/{len(calls[0])} rows (tokens and logprobs), stopped {stopped}, decode computed {costs} "
        f"(useful {sum(len(c.response_ids) for c in calls[0])}), prefill graphs captured per call {prefill_graphs} "
        f"(expected [1, 0, 0])"
    )
