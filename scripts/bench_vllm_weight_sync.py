"""Time the vLLM engine's start and weight sync on the tiny-world models (CPU build of vLLM).

    .venv-vllm/bin/python scripts/bench_vllm_weight_sync.py [tiny|small] [repeats]

Prints the engine start time, the in-process update (`update_weights`, colocated placement) and the
gloo broadcast + load (`receive_weights`, split placement), and checks after each that the engine's
logprobs of a fixed response equal the learner's.
"""

from __future__ import annotations

import copy
import socket
import statistics
import sys
import threading
import time

import torch

from rlkit.learner.logprobs import sequence_logprobs
from rlkit.rollout.vllm_engine import VLLMEngine, save_policy
from rlkit.rollout.weight_group import broadcast_weights, open_weight_update_group, weight_metadata
from rlkit.world.model import build_tiny_model
from rlkit.world.tokenizer import build_tiny_tokenizer


def max_logprob_gap(engine: VLLMEngine, model: torch.nn.Module, prompt: list[int], response: list[int]) -> float:
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        want = sequence_logprobs(model, ids, torch.ones_like(ids))[0][0, len(prompt) :]
    return float((torch.tensor(engine.score([prompt], [response])[0]) - want).abs().max())


def main(size: str = "tiny", repeats: int = 5) -> None:
    import tempfile

    tokenizer = build_tiny_tokenizer()
    policy = build_tiny_model(size, seed=0).eval()
    numel = sum(p.numel() for p in policy.parameters())
    with tempfile.TemporaryDirectory() as model_dir:
        save_policy(policy, tokenizer, model_dir)
        started = time.perf_counter()
        engine = VLLMEngine(model_dir, tokenizer, sleep_mode=False)
        start_s = time.perf_counter() - started
    prompt, response = list(range(4, 40)), list(range(40, 72))
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    port_number = port.getsockname()[1]
    port.close()
    side: dict = {}
    opener = threading.Thread(target=lambda: side.update(group=open_weight_update_group("127.0.0.1", port_number, 0, 2, "gloo")))
    opener.start()
    engine.init_weight_update_group("127.0.0.1", port_number, 1, 2, "gloo")
    opener.join()

    colocated, split, gaps = [], [], []
    for step in range(repeats):
        model = copy.deepcopy(policy)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.02 * (step + 1))
        weights = list(model.named_parameters())
        t = time.perf_counter()
        engine.update_weights(weights)
        colocated.append(time.perf_counter() - t)
        gaps.append(max_logprob_gap(engine, model, prompt, response))

        model2 = copy.deepcopy(model)
        with torch.no_grad():
            for p in model2.parameters():
                p.mul_(0.9)
        weights = list(model2.named_parameters())
        t = time.perf_counter()
        sender = threading.Thread(target=broadcast_weights, args=(side["group"], weights))
        sender.start()
        engine.receive_weights(*weight_metadata(weights))
        sender.join()
        split.append(time.perf_counter() - t)
        gaps.append(max_logprob_gap(engine, model2, prompt, response))
    engine.close()
    mb = numel * 4 / 2**20
    print(f"model {size}: {numel / 1e6:.2f}M params ({mb:.1f} MiB fp32); engine start {start_s:.1f} s")
    print(f"in-process update_weights: median {statistics.median(colocated) * 1e3:.0f} ms over {repeats}")
    print(f"gloo broadcast + receive_weights: median {statistics.median(split) * 1e3:.0f} ms over {repeats}")
    print(f"max |engine - learner| logprob after updates: {max(gaps):.2e}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tiny", int(sys.argv[2]) if len(sys.argv) > 2 else 5)
