"""What a reward returns when it has more to say than a number, and how it says it ran out of time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RewardResult:
    score: float
    info: dict[str, Any] = field(default_factory=dict)  # e.g. the extracted answer and why it scored so


class RewardTimeout(Exception):
    """Raised by a reward whose own time limit ran out (e.g. math-verify's). The pool scores it 0 and
    counts it in `reward/timeouts`, like a call the pool itself had to stop."""
