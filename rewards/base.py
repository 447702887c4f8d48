"""What a reward returns when it has more to say than a number."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RewardResult:
    score: float
    info: dict[str, Any] = field(default_factory=dict)  # e.g. the extracted answer and why it scored so
