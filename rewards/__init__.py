"""Built-in reward plug-ins, installed as `rlkit.rewards`.

A reward is a plain function `fn(completion: str, sample: dict) -> float | RewardResult`.
"""

from rlkit.rewards.base import RewardResult

__all__ = ["RewardResult"]
