"""The Generator seam: `generate(prompts, n, ...) -> n texts per prompt`, for the large models that data
stages ask (a teacher's solutions, SwS's concepts, problems and ratings).

A prompt is a text or chat messages ([{"role": "user", "content": ...}]). Each backend is a class
registered by name (`@register_generator("openai")`) and built from a `GeneratorConfig`:

    generator = build_generator(GeneratorConfig(backend="tiny_teacher", slip_rate=0.1))
    results = generator.generate(["Compute 47+38."], n=8, temperature=1.0)
    results[0].texts        # 8 texts; results[0].error says why a prompt got none (e.g. a server down)

A prompt whose request still fails after the backend's retries comes back with no texts and its
`error`; the caller records it and goes on (rerunning later does the rest).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from rlkit.config import GeneratorConfig

Prompt = str | list[dict[str, str]]


@dataclass
class Generation:
    """What one prompt got: `n` texts (with their finish reasons), or none and the reason."""

    texts: list[str] = field(default_factory=list)
    finish_reasons: list[str] = field(default_factory=list)  # "stop" or "length" per text
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None


class Generator(Protocol):
    def generate(
        self,
        prompts: Sequence[Prompt],
        n: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_tokens: int = 256,
        stop: Sequence[str] | None = None,
        seed: int = 0,
    ) -> list[Generation]:
        """`n` sampled texts for each prompt, in prompt order; `seed` makes reruns repeat where the
        backend can (the tiny teacher always, a server when it honours seeds)."""

    def close(self) -> None:
        """Release what the backend holds (a model, connections)."""


GENERATORS: dict[str, Callable[[GeneratorConfig], Generator]] = {}


def register_generator(name: str) -> Callable:
    """Class decorator: the backend `name` is built as `cls(config)`."""

    def register(cls: type) -> type:
        GENERATORS[name] = cls
        return cls

    return register


def prompt_text(prompt: Prompt) -> str:
    """A chat prompt's last user message, or the text itself (for backends that read only the problem)."""
    if isinstance(prompt, str):
        return prompt
    users = [m["content"] for m in prompt if m.get("role", "user") == "user"]
    return users[-1] if users else prompt[-1]["content"]


def cut_at_stop(text: str, stop: Sequence[str] | None) -> tuple[str, bool]:
    """The text up to the first stop string (excluded, as the OpenAI API does), and whether one was found."""
    cuts = [text.find(s) for s in stop or () if s and s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)
