"""The tiny world's fallible teacher as a generation backend, so teacher sampling runs anywhere (CI)."""

from __future__ import annotations

from collections.abc import Sequence

from rlkit.config import GeneratorConfig
from rlkit.generation.base import Generation, Prompt, cut_at_stop, prompt_text, register_generator
from rlkit.world.teacher import FallibleTeacher


@register_generator("tiny_teacher")
class TinyTeacherGenerator:
    """Reads the tiny-world expression in each prompt and samples the fallible teacher's solutions.
    Sample j of a problem is the same text in every run with the same seed; temperature 0 gives every
    sample the teacher's first solution (one answer, as greedy decoding would); a prompt without a
    tiny-world problem fails with the reason, as a server's bad request would."""

    def __init__(self, config: GeneratorConfig):
        self.slip_rate = config.slip_rate

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
        teacher = FallibleTeacher(self.slip_rate, seed)
        out = []
        for prompt in prompts:
            try:
                texts = [teacher.solve(prompt_text(prompt), 0 if temperature == 0 else j) for j in range(n)]
            except ValueError as err:
                out.append(Generation(error=str(err)))
                continue
            cut = [cut_at_stop(text[:max_tokens], stop) for text in texts]  # one character is one tiny token
            out.append(Generation([t for t, _ in cut], ["stop" if found or len(t) < max_tokens else "length" for t, found in cut]))
        return out

    def close(self) -> None:
        pass
