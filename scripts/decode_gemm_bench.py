"""Decode-step GEMMs on a GPU (issue 18): cuBLAS (F.linear) against rlkit's Triton decode linear, per layer shape.

Each projection of a decode step (q|k|v with its bias, o, gate|up, down) at 128, 64 and 32 rows (compaction halves
the batch), on the 0.5B and 1.5B Qwen2 shapes, timed inside one CUDA graph over copies of the weight that together
exceed L2 (so weights come from HBM, as in a real step; up to 24 copies, like the 24 layers). cuBLAS's time includes
its split-K reduce kernel where it runs one. For Triton, every candidate of `decode_linear.candidates` is timed and
the best printed with its error against F.linear (fp32 reference); the last lines are the best configs as a
`TABLE` literal for rlkit/rollout/decode_linear.py and the per-layer sums. `--attention` times the decode-attention
kernels instead, the chunk merge folded into the chunk kernel against the separate merge kernel, on the reference
(576-slot) and long (3,328-slot) caches, with their error against plain attention.

Usage (on the GPU machine): python scripts/decode_gemm_bench.py [--rows 128,64,32] [--models 0.5B,1.5B] [--attention]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from rlkit.rollout import decode_linear as dl

SHAPES = {  # name -> [(projection, out_features, in_features, bias)]
    "0.5B": [("qkv", 896 + 2 * 128, 896, True), ("o", 896, 896, False), ("gate_up", 2 * 4864, 896, False),
             ("down", 896, 4864, False)],
    "1.5B": [("qkv", 1536 + 2 * 256, 1536, True), ("o", 1536, 1536, False), ("gate_up", 2 * 8960, 1536, False),
             ("down", 1536, 8960, False)],
}


@torch.no_grad()
def attention() -> None:
    from rlkit.rollout import decode_attention as da

    device, dtype = torch.device("cuda"), torch.bfloat16
    torch.manual_seed(0)
    # (name, rows, heads, kv heads, head size, cache slots, copies whose caches exceed L2)
    for name, rows, heads, kv_heads, head_dim, slots, copies in (("reference 0.5B", 128, 14, 2, 64, 576, 8),
                                                                 ("long 1.5B", 128, 12, 2, 128, 3328, 4)):
        keys = torch.randn((copies, rows, kv_heads, slots, head_dim), device=device).to(dtype)
        values = torch.randn((copies, rows, kv_heads, slots, head_dim), device=device).to(dtype)
        q = torch.randn((rows, heads, head_dim), device=device).to(dtype)
        valid = torch.ones((rows, slots), dtype=torch.bool, device=device)
        valid[::3, :40] = False  # left padding on a third of the rows
        for filled in (slots // 2, slots):
            slot = torch.tensor([filled - 1], device=device)
            times, outs = {}, {}
            da.FOLD_MAX_SPLITS = 1 << 20  # the fold at every length here
            for fold in (False, True):
                da.FOLD = fold
                def call(i: int, s=slot, q=q, k=keys, v=values, m=valid) -> torch.Tensor:  # noqa: ANN001
                    return da.decode_attention(q, k[i], v[i], m, s, 0.125)

                times[fold] = dl.graph_time(call, copies)
                outs[fold] = da.decode_attention(q, keys[0], values[0], valid, slot, 0.125).float()
            k, v = (t[0, :, :, :filled].float().repeat_interleave(heads // kv_heads, 1) for t in (keys, values))
            scores = torch.einsum("bhd,bhld->bhl", q.float(), k).mul(0.125)
            scores = scores.masked_fill(~valid[:, None, :filled], float("-inf"))
            expected = torch.einsum("bhl,bhld->bhd", scores.softmax(-1), v)
            errors = {f: float((o - expected).abs().max()) for f, o in outs.items()}
            gb = 2 * rows * kv_heads * filled * head_dim * 2 / 1e9
            print(f"[attention] {name}, {filled}/{slots} slots filled ({gb * 1e3:.1f} MB of K/V): merge kernel "
                  f"{times[False]:.2f} us, folded {times[True]:.2f} us ({gb * 1e3 / times[True]:.2f} TB/s); max |err| vs "
                  f"plain fp32 attention {errors[False]:.1e} / {errors[True]:.1e}; fold == merge kernel: "
                  f"{bool(torch.equal(outs[False], outs[True]))}", flush=True)
        del keys, values
        torch.cuda.empty_cache()
    da.FOLD, da.FOLD_MAX_SPLITS = True, 8


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="128,64,32", help="decode batch sizes")
    parser.add_argument("--models", default="0.5B,1.5B", help="layer shapes: 0.5B, 1.5B")
    parser.add_argument("--dtype", default="bfloat16", help="bfloat16 (the bench presets)")
    parser.add_argument("--attention", action="store_true", help="time the decode-attention merge instead")
    args = parser.parse_args()
    if args.attention:
        attention()
        return
    device, dtype = torch.device("cuda"), getattr(torch, args.dtype)
    torch.manual_seed(0)
    table, sums = {}, {}
    for model in args.models.split(","):
        for name, out_features, in_features, has_bias in SHAPES[model]:
            weights = dl.weight_copies(out_features, in_features, dtype, device)
            bias = (torch.randn(out_features, device=device) * 0.1).to(dtype) if has_bias else None
            mb = weights[0].numel() * weights.element_size() / 1e6
            for rows in map(int, args.rows.split(",")):
                x = torch.randn((rows, in_features), device=device).to(dtype)
                cublas = dl.graph_time(lambda i, x=x, w=weights, b=bias: F.linear(x, w[i], b), len(weights))
                timed = []
                for config in dl.candidates(rows, out_features, in_features, dtype):
                    try:
                        took = dl.graph_time(lambda i, x=x, c=config, w=weights, b=bias: dl.launch(x, w[i], b, c), len(weights))
                    except Exception as err:  # noqa: BLE001 - a config that does not compile or fit
                        print(f"  {config} failed: {type(err).__name__}: {str(err)[:120]}")
                        continue
                    timed.append((took, config))
                timed.sort()
                best_time, best = timed[0]
                heur = dl.heuristic(rows, out_features, in_features, dtype)
                heur_time = next((t for t, c in timed if c == heur), float("nan"))
                expected = F.linear(x.float(), weights[0].float(), None if bias is None else bias.float())
                got = dl.launch(x, weights[0], bias, best).float()
                error = float((got - expected).abs().max() / expected.abs().max())
                again = bool(torch.equal(dl.launch(x, weights[0], bias, best), dl.launch(x, weights[0], bias, best)))
                print(
                    f"[gemm] {model} {name:7s} rows {rows:3d} N {out_features:5d} K {in_features:5d} ({mb:5.1f} MB): "
                    f"cuBLAS {cublas:6.2f} us ({mb / cublas:4.2f} TB/s) | triton best {best_time:6.2f} us "
                    f"({mb / best_time:4.2f} TB/s) {best} x{cublas / best_time:4.2f} | heuristic {heur} {heur_time:6.2f} us"
                    f" | rel err {error:.1e}, repeatable {again} | next: "
                    + ", ".join(f"{c} {t:.2f}" for t, c in timed[1:4]),
                    flush=True,
                )
                table[(rows, out_features, in_features, args.dtype)] = best
                cu, tr = sums.get((model, rows), (0.0, 0.0))
                sums[(model, rows)] = (cu + cublas, tr + best_time)
            del weights
            torch.cuda.empty_cache()
    for (model, rows), (cu, tr) in sums.items():
        print(f"[layer] {model} rows {rows}: four projections cuBLAS {cu:.2f} us, triton best {tr:.2f} us "
              f"({cu - tr:+.2f} us a layer saved)")
    print("[table] TABLE = {")
    for key, config in table.items():
        print(f"[table]     {key}: {config},")
    print("[table] }")


if __name__ == "__main__":
    main()
