"""Per-token log-probabilities and entropies of a causal LM, aligned with the input tokens."""

from __future__ import annotations

import torch


def logprobs_from_logits(logits: torch.Tensor, targets: torch.Tensor, with_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log p(target) and the entropy of each row of `logits` [..., V], computed in fp32."""
    logits = logits.float()
    log_z = torch.logsumexp(logits, dim=-1)
    chosen = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - log_z
    entropy = None
    if with_entropy:
        probs = torch.softmax(logits, dim=-1)
        entropy = log_z - (probs * logits).sum(-1)
    return chosen, entropy


def sequence_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    with_entropy: bool = False,
    chunk_size: int = 0,
    position_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Returns [B, L] tensors where column t scores token t given tokens < t (column 0 is 0).

    `chunk_size > 0` runs the LM head and log-softmax over that many positions at a time, so
    the fp32 logits of the whole batch never exist at once (large vocabularies).
    `position_ids` that restart at 0 mark packed sequences (SFT packing); the attention mask is then
    left out so transformers builds a block-diagonal mask and packed sequences never see each other.
    """
    if position_ids is not None:
        attention_mask = None
    hidden = model.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).last_hidden_state[:, :-1]
    targets = input_ids[:, 1:]
    head = model.get_output_embeddings()
    step = chunk_size or hidden.shape[1]
    parts_lp, parts_ent = [], []
    for start in range(0, hidden.shape[1], step):
        logits = head(hidden[:, start : start + step])
        lp, ent = logprobs_from_logits(logits, targets[:, start : start + step], with_entropy)
        parts_lp.append(lp)
        parts_ent.append(ent)
    zeros = hidden.new_zeros((input_ids.shape[0], 1), dtype=torch.float)
    logprobs = torch.cat([zeros, *parts_lp], dim=1)
    entropy = torch.cat([zeros, *parts_ent], dim=1) if with_entropy else None
    return logprobs, entropy
