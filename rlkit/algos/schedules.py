"""Per-step schedules of sampling knobs (Phi-4-Mini-Reasoning anneals the rollout temperature)."""

from __future__ import annotations


def linear_schedule(start: float, end: float, over: float, step: int, total_steps: int) -> float:
    """The value at 1-based `step` of `total_steps`: `start` at step 1, moving linearly by equal amounts
    so that it reaches `end` once the first `over` fraction of the steps has passed, then `end`.

    Phi-4-Mini-Reasoning's rollout temperature is start 1.0, end 0.6, over 0.5: with 10 steps,
    1.0, 0.92, 0.84, 0.76, 0.68 in the first half, then 0.6. `over` = 0 is `end` from the first step.
    """
    if total_steps < 1 or not 1 <= step <= total_steps:
        raise ValueError(f"step {step} is outside 1..{total_steps}")
    if not 0.0 <= over <= 1.0:
        raise ValueError(f"over must be a fraction of the steps in [0, 1], got {over}")
    ramp_steps = over * total_steps
    progress = 1.0 if ramp_steps == 0 else min((step - 1) / ramp_steps, 1.0)
    return start + (end - start) * progress
