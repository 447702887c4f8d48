"""`length`: DAPO's soft overlong punishment (Yu et al., 2025, eq. 13).

    L <= max_len - cache_len            ->  0
    max_len - cache_len < L <= max_len  ->  (max_len - cache_len - L) / cache_len   (0 down to -1)
    L > max_len                         -> -1

L is counted in characters by default (exact for the tiny world's character tokenizer, a rough
proxy elsewhere: about 3-4 characters per token for English BPE). With `tokenizer` set to a
Hugging Face tokenizer id or local directory (or 'tiny'), L is the number of tokens it encodes the
completion to, without special tokens. Add it to a correctness reward with a weight of 1, as DAPO does.

    >>> length_reward("x" * 900, {}, max_len=1000, cache_len=200).score
    -0.5
"""

from __future__ import annotations

import functools
from typing import Any

from rlkit.errors import ConfigError
from rlkit.rewards.base import RewardResult


def overlong_penalty(length: int, max_len: int, cache_len: int) -> float:
    """The DAPO penalty for a response of `length` units."""
    start = max_len - cache_len
    if length <= start:
        return 0.0
    if length > max_len:
        return -1.0
    return (start - length) / cache_len


@functools.lru_cache(maxsize=4)
def _load_tokenizer(name: str) -> Any:
    if name == "tiny":
        from rlkit.world.tokenizer import build_tiny_tokenizer

        return build_tiny_tokenizer()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name)


def check_args(max_len: int = 4096, cache_len: int = 512, tokenizer: str | None = None) -> None:
    """Called when the recipe is resolved, so bad lengths fail before the run, not on every call."""
    if not (isinstance(max_len, int) and isinstance(cache_len, int) and 0 < cache_len <= max_len):
        raise ConfigError(f"reward 'length': expected integers 0 < cache_len <= max_len, got max_len={max_len!r}, cache_len={cache_len!r}")
    if tokenizer is not None:
        try:
            _load_tokenizer(tokenizer)
        except Exception as err:  # noqa: BLE001 - name the tokenizer the recipe asked for
            raise ConfigError(f"reward 'length': cannot load tokenizer {tokenizer!r}: {type(err).__name__}: {err}") from None


def length_reward(
    completion: str, sample: dict[str, Any], max_len: int = 4096, cache_len: int = 512, tokenizer: str | None = None
) -> RewardResult:
    check_args(max_len, cache_len, tokenizer)
    if tokenizer is None:
        length, unit = len(completion), "chars"
    else:
        length, unit = len(_load_tokenizer(tokenizer).encode(completion, add_special_tokens=False)), "tokens"
    return RewardResult(overlong_penalty(length, max_len, cache_len), {"length": length, "unit": unit})


length_reward.check_args = check_args  # type: ignore[attr-defined]  # see rlkit.scoring.registry
