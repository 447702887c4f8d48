"""Asking a generation backend and reading its answers, with retries that never lose finished work.

Every synthesis step that talks to a model (concepts, problems, ratings, answers) goes through
`ask`: it renders one prompt per item, asks the backend, parses each text, and asks again (up to
`retries` more times) only for the items whose text did not parse or whose request failed. An item
that still has no parse after the retries is counted and skipped, never an exception that would
lose the batch: a 70B server that is down for a minute costs those items, not the run.

A backend is a rlkit.generation Generator: `generate(prompts, n=..., temperature=..., top_p=...,
max_tokens=..., seed=...)` -> one Generation per prompt (its n `texts`, or none and an `error`).
A retry asks with the next seed, so a seeded backend does not simply repeat the text that failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any, Protocol, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
TEMPLATES = Path(__file__).parent / "templates"


class Generator(Protocol):
    def generate(
        self,
        prompts: Sequence[Any],
        n: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_tokens: int = 1024,
        stop: Sequence[str] | None = None,
        seed: int = 0,
    ) -> list[Any]: ...  # rlkit.generation.base.Generation: .texts, .error


@dataclass(frozen=True)
class Sampling:
    """How one step samples its backend (the paper: temperature 0 for concepts, 0.6 for problems)."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 1024


@dataclass
class AskStats:
    """What happened to one step's requests: retried texts and items given up on, by reason."""

    asked: int = 0
    retried: int = 0
    failed: dict[str, int] = field(default_factory=dict)

    def fail(self, reason: str) -> None:
        self.failed[reason] = self.failed.get(reason, 0) + 1


def load_template(name_or_path: str) -> Template:
    """A prompt template: a file path, or a name of a file in synth/templates/ (`concepts` -> concepts.txt).

    Templates use `$name` placeholders (string.Template), so the braces of LaTeX need no escaping."""
    path = Path(name_or_path)
    if not path.suffix:
        path = TEMPLATES / f"{name_or_path}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"prompt template {path} not found (a name in {TEMPLATES} or a path to a .txt file)")
    return Template(path.read_text())


def ask(
    generator: Generator,
    prompts: Sequence[str],
    parse: Callable[[list[str]], T | None],
    sampling: Sampling,
    stats: AskStats,
    retries: int = 2,
    seed: int = 0,
) -> list[T | None]:
    """Ask each prompt for `sampling.n` texts and parse them; re-ask the unparsed up to `retries` times.

    `parse` gets all n texts of one prompt and returns the parsed value or None (unusable). Returns one
    value per prompt, None where every attempt failed (counted in `stats.failed` as 'unparseable' or
    'request failed')."""
    results: list[T | None] = [None] * len(prompts)
    pending = list(range(len(prompts)))
    last_reason: dict[int, str] = {}
    stats.asked += len(prompts)
    for attempt in range(retries + 1):
        if not pending:
            break
        if attempt:
            stats.retried += len(pending)
        try:
            texts = generator.generate(
                [prompts[i] for i in pending], n=sampling.n, temperature=sampling.temperature,
                top_p=sampling.top_p, max_tokens=sampling.max_tokens, seed=seed + attempt,
            )
        except Exception as err:  # noqa: BLE001 - a backend that is down is retried, then its items skipped
            log.warning("generation backend failed (attempt %d of %d): %s", attempt + 1, retries + 1, err)
            for i in pending:
                last_reason[i] = "request failed"
            continue
        still = []
        for i, generation in zip(pending, texts, strict=False):
            outs = list(generation.texts)
            value = parse(outs) if outs else None
            if value is None:
                last_reason[i] = "unparseable" if outs else "request failed"
                still.append(i)
            else:
                results[i] = value
        still += pending[len(texts):]  # a backend that returned fewer lists than prompts
        pending = still
    for i in pending:
        stats.fail(last_reason.get(i, "request failed"))
    return results
