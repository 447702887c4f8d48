"""Built-in reward plug-ins, installed as `rlkit.rewards`.

A reward is a plain function `fn(completion: str, sample: dict) -> float | RewardResult`:
`math` (rewards/math.py), `format` (format.py), `length` (length.py); rewards/code/ holds the code rewards.
Recipes name them, or a user's `pkg.module:fn` / `path/file.py:fn` (see examples/custom_reward.py).
"""

from rlkit.rewards.base import RewardResult, RewardTimeout

__all__ = ["RewardResult", "RewardTimeout"]
