"""The stage registry: a recipe's `type: <name>` -> the function that runs that stage, `fn(ctx, stage)`.

Each stage module registers its own function (`@STAGES.register("sft")`), as the algorithm parts do
(rlkit/algos/registry.py); the runner dispatches through it and reads the traits:
  rl_like     the stage learns from rewards or preferences: the held-out eval runs once before the first one;
  data_stage  the stage writes datasets, not a model (no model saved, no eval; it returns its funnel).
A new stage type is its config class in the `Stage` union (rlkit/config.py) and one registration here.
"""

from __future__ import annotations

from rlkit.algos.registry import Registry

STAGES = Registry("stage", "stages[].type")
