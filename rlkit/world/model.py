"""A small Qwen2-shaped causal LM built from a config (random weights).

head_dim is 64 so that the CPU build of vLLM can serve the same model.
"""

from __future__ import annotations

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from rlkit.world.tokenizer import VOCAB_SIZE, build_tiny_tokenizer

SHAPES = {
    "tiny": dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=2, num_key_value_heads=2),
    "small": dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=2),
}


def tiny_model_config(size: str = "tiny") -> Qwen2Config:
    tokenizer = build_tiny_tokenizer()
    return Qwen2Config(
        vocab_size=VOCAB_SIZE,
        max_position_embeddings=512,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **SHAPES[size],
    )


def build_tiny_model(size: str = "tiny", seed: int = 0, dtype: torch.dtype = torch.float32) -> Qwen2ForCausalLM:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(tiny_model_config(size))
    return model.to(dtype)
