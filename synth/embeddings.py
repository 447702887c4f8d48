"""Concept embeddings for combination sampling: mean-pooled last hidden states of a local model.

SwS scores a candidate concept by its cosine similarity to the mean embedding of the concepts already
chosen. rlkit embeds with the model `synth.embedding_model` names (usually the local backend's
model); without one, sampling uses co-occurrence alone.
"""

from __future__ import annotations

from collections.abc import Callable


def hf_embedder(model_path: str, batch_size: int = 64) -> Callable[[list[str]], list[list[float]]]:
    """texts -> one vector each: the mean of the model's last hidden states over the text's tokens."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModel.from_pretrained(model_path).eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    @torch.no_grad()
    def embed(texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start : start + batch_size], return_tensors="pt", padding=True)
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            vectors += ((hidden * mask).sum(1) / mask.sum(1)).float().tolist()
        return vectors

    return embed
