"""Any rlkit rollout engine (HF, fast HF, vLLM) as a generation backend: a teacher or instruct model
loaded from a HF id or directory, or the policy of a running stage (`LocalEngineGenerator(engine, tokenizer)`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rlkit.config import GeneratorConfig
from rlkit.errors import ConfigError
from rlkit.generation.base import Generation, Prompt, cut_at_stop, register_generator
from rlkit.models import encode_prompt
from rlkit.rollout.base import RolloutEngine, SamplingParams


class LocalEngineGenerator:
    """Chat prompts go through the tokenizer's chat template; text prompts are tokenized as they are.
    Stop strings cut the decoded text (the engine stops at its end-of-sequence token)."""

    def __init__(self, engine: RolloutEngine, tokenizer: Any, batch_size: int = 64):
        self.engine, self.tokenizer, self.batch_size = engine, tokenizer, batch_size

    def _ids(self, prompt: Prompt) -> list[int]:
        if isinstance(prompt, str):
            return self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        return encode_prompt(self.tokenizer, prompt)

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
        out: list[Generation] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start : start + self.batch_size]
            sampling = SamplingParams(n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_tokens, seed=seed + start)
            results = [Generation() for _ in chunk]
            for completion in self.engine.generate([self._ids(p) for p in chunk], sampling):
                text, found = cut_at_stop(completion.text, stop)
                results[completion.prompt_index].texts.append(text)
                results[completion.prompt_index].finish_reasons.append("stop" if found else completion.finish_reason)
            out.extend(results)
        return out

    def close(self) -> None:
        close = getattr(self.engine, "close", None)  # the vLLM engine frees its memory; in-process engines hold nothing
        if callable(close):
            close()


@register_generator("local")
def local_generator(config: GeneratorConfig) -> LocalEngineGenerator:
    """Load `config.model` and build the engine `config.engine` on it."""
    from rlkit.config import ModelConfig, RunConfig
    from rlkit.models import load_model, load_tokenizer, resolve_device
    from rlkit.rollout import build_engine

    if not config.model:
        raise ConfigError("key 'generator.model': the local backend needs a model (a HF id or directory)")
    model_config = ModelConfig(path=config.model, dtype=config.dtype)
    run = RunConfig(model=model_config, rollout={"engine": config.engine}, stages=[{"type": "rl"}])
    tokenizer = load_tokenizer(model_config)
    model = load_model(model_config).to(resolve_device("auto")).eval()
    return LocalEngineGenerator(build_engine(run, model, tokenizer), tokenizer, config.batch_size)
