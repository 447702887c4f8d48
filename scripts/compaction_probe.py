"""Does the fast engine compact a sampled ragged batch on the GPU? (issue 18: `rlkit bench --preset ragged` reported
decode useful/computed 0.28, every row decoded to the limit.) Two generate calls of the ragged preset per engine setting
(the second replays the first one's captured graphs), with each compaction printed. Call d of the sixth session ran the
one-call version: every setting compacted; the bench's timed step, a second call, did not (the stop-id tensor, fixed
since, was made per call and read by the graphs at a freed address).

Usage (on the GPU machine): python3 scripts/compaction_probe.py"""

from __future__ import annotations

import torch

from rlkit.bench.workload import PRESETS, build_policy, build_tokenizer, prompt_samples
from rlkit.models import encode_prompt
from rlkit.rollout import hf_fast
from rlkit.rollout.base import SamplingParams
from rlkit.rollout.hf_fast import FastHFEngine

w = PRESETS["ragged"]
device = torch.device("cuda")
model, tokenizer = build_policy(w, device).eval(), build_tokenizer(w)
prompts = [encode_prompt(tokenizer, p["prompt"]) for p in prompt_samples(w)]
sampling = SamplingParams(n=w.samples, temperature=1.0, max_new_tokens=w.completion_tokens, seed=7)
keep = hf_fast.DecodeState.keep


def logged_keep(self, live, size):  # noqa: ANN001, ANN202
    print(f"  keep: {len(live)} live -> {size} rows", flush=True)
    return keep(self, live, size)


hf_fast.DecodeState.keep = logged_keep
for label, options in (("default", {}), ("torch sampling", {"sampling": "torch"}), ("no compile", {"compile": False}),
                       ("no graph", {"cuda_graph": False, "compile": False})):
    torch._dynamo.reset()
    engine = FastHFEngine(model, tokenizer)
    for key, value in options.items():
        setattr(engine, key, value)
    for call in (1, 2):  # the second call replays the graphs the first one captured
        engine.stats = {}
        out = engine.generate(prompts, sampling)
        lengths = [len(c.response_ids) for c in out]
        stopped = sum(c.finish_reason == "stop" for c in out)
        print(f"[probe] {label}, generate {call}: useful {engine.stats['decode_useful']} computed "
              f"{engine.stats['decode_computed']} (fraction {engine.stats['decode_useful'] / engine.stats['decode_computed']:.2f}); "
              f"mean length {sum(lengths) / len(lengths):.0f}, {stopped}/{len(out)} stopped", flush=True)
