"""The bench workloads: Qwen2-shaped policies with random weights, prompts of random tokens, beta 0.

`reference` (DESIGN.md): a 0.5B shape, every sample running to the completion limit. `ragged`: prompts
of varied length and long-tailed completions: the policy's head gets a bias on the stop token so that
each decode step stops a row with a fixed probability (lengths are geometric, median a quarter of the
limit, ~6% reach it); the model really emits the stop token, so every engine (and TRL) sees the same
distribution, and the learner scores the same biased head. `long`: a 1.5B shape at 3,072 tokens.

The tokenizer is a real word-level tokenizer whose words are `t<id>`, so a prompt's text encodes to
exactly its random token ids for both rlkit and TRL, and completions decode to text a reward reads.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM


@dataclass(frozen=True)
class Workload:
    hidden: int = 896
    layers: int = 24
    heads: int = 14
    kv_heads: int = 2
    intermediate: int = 4864
    vocab: int = 151936
    prompts: int = 16
    samples: int = 8
    prompt_tokens: int = 64
    completion_tokens: int = 512
    dtype: str = "bfloat16"
    micro_batch_size: int = 32  # 4 micro-batches of the 128 sequences, as in DESIGN.md's naive reference
    micro_batch_tokens: int = 0  # rlkit's learner.micro_batch_tokens (0 = micro_batch_size padded rows)
    stop_median: float = 0.0  # median completion length as a fraction of the limit; 0 = every sample runs to the limit
    prompt_tokens_min: int = 0  # prompts get uniform lengths in [this, prompt_tokens]; 0 = all prompt_tokens long
    lr: float = 1e-6
    seed: int = 0

    @property
    def sequences(self) -> int:
        return self.prompts * self.samples

    def describe(self) -> dict[str, Any]:
        return asdict(self)


REFERENCE = Workload()  # DESIGN.md "Performance: the reference workload"
TINY = replace(  # the CPU twin used in CI
    REFERENCE, hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=512, prompts=4, samples=2,
    prompt_tokens=8, completion_tokens=8, dtype="float32", micro_batch_size=4,
)

RAGGED = replace(REFERENCE, prompt_tokens=128, prompt_tokens_min=32, completion_tokens=1024, stop_median=0.25,
                 micro_batch_tokens=16384)
LONG = replace(  # Qwen2.5-Math-1.5B's shape; full-length samples: the memory a long run needs
    REFERENCE, hidden=1536, layers=28, heads=12, kv_heads=2, intermediate=8960, prompt_tokens=256, completion_tokens=3072,
    micro_batch_size=8, micro_batch_tokens=32768,
)
PRESETS = {"reference": REFERENCE, "ragged": RAGGED, "long": LONG, "tiny": TINY}

DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}


def policy_config(w: Workload) -> Qwen2Config:
    return Qwen2Config(
        vocab_size=w.vocab,
        hidden_size=w.hidden,
        intermediate_size=w.intermediate,
        num_hidden_layers=w.layers,
        num_attention_heads=w.heads,
        num_key_value_heads=w.kv_heads,
        max_position_embeddings=max(1024, w.prompt_tokens + w.completion_tokens),
        rope_theta=1000000.0,
        tie_word_embeddings=True,
        eos_token_id=eos_id(w),
        pad_token_id=eos_id(w),
        bos_token_id=None,
    )


def build_policy(w: Workload, device: torch.device | str = "cpu") -> Qwen2ForCausalLM:
    """Random weights (seeded), built directly in the workload's dtype on `device`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(w.seed)
        with torch.device(device):
            model = Qwen2ForCausalLM(policy_config(w))
    model = model.to(DTYPES[w.dtype])
    if w.stop_median:
        add_stop_bias(model, w)
    return model


def stop_hazard(w: Workload) -> float:
    """Per-step stop probability whose geometric lengths have median `stop_median` x the limit."""
    return 1.0 - 0.5 ** (1.0 / max(1.0, w.stop_median * w.completion_tokens))


@torch.no_grad()
def add_stop_bias(model: Qwen2ForCausalLM, w: Workload) -> None:
    """Give the (tied) head a bias that is zero except on the stop token, set from the prompts' own logits so
    that the stop token's probability is about `stop_hazard` at every step."""
    head = model.lm_head
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True, device=head.weight.device, dtype=head.weight.dtype)
    biased.weight = head.weight  # still tied to the embedding
    biased.bias.requires_grad_(False).zero_()
    ids = torch.tensor([[int(t[1:]) for t in text.split()][:32] for text in prompt_texts(replace(w, prompt_tokens_min=0))],
                       device=head.weight.device)
    logits = model(input_ids=ids).logits.float().flatten(0, 1)
    eos = eos_id(w)
    rest = torch.cat([logits[:, :eos], logits[:, eos + 1 :]], dim=1).logsumexp(-1)
    hazard = stop_hazard(w)
    biased.bias[eos] = float(math.log(hazard / (1 - hazard)) + (rest - logits[:, eos]).median())
    model.lm_head = biased


def eos_id(w: Workload) -> int:
    return w.vocab - 1


def build_tokenizer(w: Workload) -> PreTrainedTokenizerFast:
    """Word-level: token `t<i>` is id i; text is space-separated words; the last id is EOS and padding."""
    vocab = {f"t{i}": i for i in range(w.vocab)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=f"t{eos_id(w)}"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token=f"t{eos_id(w)}", pad_token=f"t{eos_id(w)}", unk_token=f"t{eos_id(w)}"
    )
    tokenizer.chat_template = "{{ messages[-1]['content'] }}"  # the prompt is its own text, nothing added
    tokenizer.model_max_length = w.prompt_tokens + w.completion_tokens
    return tokenizer


def prompt_texts(w: Workload) -> list[str]:
    """`w.prompts` prompts of random token words (never EOS), `w.prompt_tokens` long or of uniform
    lengths from `w.prompt_tokens_min`."""
    rng = random.Random(w.seed)
    lengths = [rng.randint(w.prompt_tokens_min, w.prompt_tokens) if w.prompt_tokens_min else w.prompt_tokens
               for _ in range(w.prompts)]
    return [" ".join(f"t{rng.randrange(eos_id(w))}" for _ in range(n)) for n in lengths]


def prompt_samples(w: Workload) -> list[dict[str, Any]]:
    """The prompts as rlkit data samples (chat messages)."""
    return [{"prompt": [{"role": "user", "content": text}]} for text in prompt_texts(w)]


def even_token_reward(completion: str, sample: dict | None = None) -> float:
    """Fraction of completion tokens with an even id: cheap, and it differs between samples, so
    GRPO's advantages are not all zero and the update is a real one."""
    words = completion.split()
    return sum(int(word[1:]) % 2 == 0 for word in words) / max(len(words), 1)
