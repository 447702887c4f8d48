"""Rollout-DPO pair selection: from k labelled responses of one prompt, (chosen, rejected) index pairs."""

from __future__ import annotations

import random

PAIR_SELECTIONS = ("random", "first", "longest_rejected")


def select_pairs(
    correct: list[bool], lengths: list[int], mode: str, pairs_per_prompt: int, rng: random.Random
) -> list[tuple[int, int]]:
    """Pairs (chosen, rejected) of one prompt's responses; chosen is correct, rejected is not.

    A prompt with no correct or no incorrect response gives no pair. At most `pairs_per_prompt`
    distinct pairs, each response used at most once while unused ones remain:
      random: random correct with random incorrect;
      first: in sampling order;
      longest_rejected: the shortest correct responses against the longest incorrect ones
        (penalizes rambling; ties keep sampling order).
    """
    good = [i for i, ok in enumerate(correct) if ok]
    bad = [i for i, ok in enumerate(correct) if not ok]
    if not good or not bad:
        return []
    if mode == "random":
        rng.shuffle(good)
        rng.shuffle(bad)
    elif mode == "longest_rejected":
        good.sort(key=lambda i: lengths[i])
        bad.sort(key=lambda i: -lengths[i])
    elif mode != "first":
        raise ValueError(f"unknown pair selection {mode!r} (expected one of {', '.join(PAIR_SELECTIONS)})")
    # The diagonal first, so each response is used once before any is reused; then the other pairs.
    diagonal = [(good[j % len(good)], bad[j % len(bad)]) for j in range(max(len(good), len(bad)))]
    rest = [(g, b) for g in good for b in bad if (g, b) not in diagonal]
    return (diagonal + rest)[:pairs_per_prompt]
