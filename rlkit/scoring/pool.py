"""RewardPool: score completions with the recipe's weighted rewards.

A reward that raises scores 0, is counted in the batch's `errors` and logged once per
reward; the run goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from rlkit.config import RewardSpec
from rlkit.rewards.base import RewardResult
from rlkit.scoring.registry import resolve_reward

log = logging.getLogger("rlkit.rewards")


@dataclass
class RewardBatch:
    total: list[float]  # weighted sum per completion
    per_reward: dict[str, list[float]]
    infos: list[dict[str, Any]]
    errors: int = 0
    timeouts: int = 0
    error_samples: list[str] = field(default_factory=list)


def as_result(value: Any) -> RewardResult:
    if isinstance(value, RewardResult):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"a reward must return a float or RewardResult, got {type(value).__name__}")
    return RewardResult(float(value))


class RewardPool:
    def __init__(self, specs: list[RewardSpec], workers: int = 0, timeout: float = 10.0):
        self.specs = specs
        self.names = [spec.name.rsplit(":", 1)[-1] if ":" in spec.name else spec.name for spec in specs]
        self.fns = [resolve_reward(spec.name, spec.args) for spec in specs]
        self.timeout = timeout
        self._logged: set[str] = set()

    def score(self, completions: list[str], samples: list[dict[str, Any]]) -> RewardBatch:
        batch = RewardBatch(total=[0.0] * len(completions), per_reward={n: [] for n in self.names}, infos=[{} for _ in completions])
        for name, spec, fn in zip(self.names, self.specs, self.fns):
            for i, (text, sample) in enumerate(zip(completions, samples)):
                try:
                    result = as_result(fn(text, sample))
                except Exception as err:  # noqa: BLE001 - any reward failure scores 0
                    batch.errors += 1
                    batch.error_samples.append(str(sample.get("id")))
                    if name not in self._logged:
                        self._logged.add(name)
                        log.warning("reward %s failed on sample %s: %s: %s (scored 0; logged once)", name, sample.get("id"), type(err).__name__, err)
                    result = RewardResult(0.0, {"error": f"{type(err).__name__}: {err}"})
                batch.per_reward[name].append(result.score)
                batch.total[i] += spec.weight * result.score
                batch.infos[i][name] = result.info
        return batch

    def close(self) -> None:
        pass
