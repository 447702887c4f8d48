"""Load the policy and its tokenizer: the tiny world's, a local HF directory, or a hub id."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from rlkit.config import ModelConfig
from rlkit.errors import ConfigError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("key 'device': 'cuda' was asked for but torch sees no GPU")
    return torch.device(name)


def load_tokenizer(config: ModelConfig, path: str | Path | None = None):  # noqa: ANN201
    source = str(path or config.path)
    if source == "tiny":
        from rlkit.world.tokenizer import build_tiny_tokenizer

        tokenizer = build_tiny_tokenizer()
    else:
        tokenizer = AutoTokenizer.from_pretrained(source)
    if config.chat_template:
        tokenizer.chat_template = config.chat_template
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(config: ModelConfig, path: str | Path | None = None, seed: int = 0) -> PreTrainedModel:
    """`path` (a previous stage's output) takes precedence over the recipe's model."""
    source = str(path or config.path)
    dtype = DTYPES[config.dtype]
    if source == "tiny":
        from rlkit.world.model import build_tiny_model

        return build_tiny_model(config.tiny_size, seed=seed, dtype=dtype)
    try:
        return AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except OSError as err:
        raise ConfigError(f"key 'model.path': cannot load a model from {source!r}: {err}") from None


def encode_prompt(tokenizer, messages: list[dict[str, str]]) -> list[int]:  # noqa: ANN001
    """Chat-templated prompt ids, ending where the assistant's answer starts."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]
