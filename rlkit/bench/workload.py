"""The reference workload: a Qwen2-0.5B-shaped policy with random weights, prompts of random tokens,
every sample running to the completion limit (EOS never ends a sample), beta 0.

The tokenizer is a real word-level tokenizer whose words are `t<id>`, so a prompt's text encodes to
exactly its random token ids for both rlkit and TRL, and completions decode to text a reward reads.
"""

from __future__ import annotations

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
    return model.to(DTYPES[w.dtype])


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
    """`w.prompts` prompts of `w.prompt_tokens` random token words (never EOS)."""
    rng = random.Random(w.seed)
    return [" ".join(f"t{rng.randrange(eos_id(w))}" for _ in range(w.prompt_tokens)) for _ in range(w.prompts)]


def prompt_samples(w: Workload) -> list[dict[str, Any]]:
    """The prompts as rlkit data samples (chat messages)."""
    return [{"prompt": [{"role": "user", "content": text}]} for text in prompt_texts(w)]


def even_token_reward(completion: str, sample: dict | None = None) -> float:
    """Fraction of completion tokens with an even id: cheap, and it differs between samples, so
    GRPO's advantages are not all zero and the update is a real one."""
    words = completion.split()
    return sum(int(word[1:]) % 2 == 0 for word in words) / max(len(words), 1)
