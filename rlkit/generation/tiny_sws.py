"""The tiny world's SwS roles as generation backends (rlkit/world/sws_roles.py): `tiny_concepts`,
`tiny_writer`, `tiny_rater_strict` and `tiny_rater_lenient`, so a recipe names them as it would name
a served 70B model, and the synthesis pipeline runs in CI."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rlkit.config import GeneratorConfig
from rlkit.generation.base import Generation, Prompt, prompt_text, register_generator
from rlkit.world import sws_roles


class _TinyRole:
    """Answers each prompt with `answer(prompt text, seed, sample index)`; a prompt the role cannot read
    fails with the reason, as a server's bad request would."""

    answer: Callable[[str, int, int], str]

    def __init__(self, config: GeneratorConfig):
        self.config = config
        self.sampled = 0  # texts sampled so far: a model at temperature > 0 answers a repeated prompt differently

    def generate(
        self, prompts: Sequence[Prompt], n: int = 1, temperature: float = 1.0, top_p: float = 1.0,
        max_tokens: int = 256, stop: Sequence[str] | None = None, seed: int = 0,
    ) -> list[Generation]:
        out = []
        for prompt in prompts:
            try:
                texts = [type(self).answer(prompt_text(prompt), seed, 0 if temperature == 0 else self.sampled + j)[:max_tokens] for j in range(n)]
                self.sampled += n
            except ValueError as err:
                out.append(Generation(error=str(err)))
                continue
            out.append(Generation(texts, ["stop"] * n))
        return out

    def close(self) -> None:
        pass


@register_generator("tiny_concepts")
class TinyConceptExtractor(_TinyRole):
    answer = staticmethod(lambda prompt, seed, sample: sws_roles.extract_concepts(prompt))


@register_generator("tiny_writer")
class TinyProblemWriter(_TinyRole):
    answer = staticmethod(lambda prompt, seed, sample: sws_roles.write_problem(prompt, seed, sample))


@register_generator("tiny_rater_strict")
class TinyStrictRater(_TinyRole):
    answer = staticmethod(lambda prompt, seed, sample: sws_roles.rate_problem(prompt, strict=True))


@register_generator("tiny_rater_lenient")
class TinyLenientRater(_TinyRole):
    answer = staticmethod(lambda prompt, seed, sample: sws_roles.rate_problem(prompt, strict=False))
