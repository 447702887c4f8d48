"""Rollout engines: turn prompts into sampled completions. Backends are imported only when selected."""

from rlkit.rollout.base import Completion, RolloutEngine, SamplingParams

__all__ = ["Completion", "RolloutEngine", "SamplingParams", "build_engine"]


def build_engine(config, model, tokenizer) -> RolloutEngine:  # noqa: ANN001 - config is RunConfig
    """The engine a recipe selects. `model` is the learner's module for in-process engines."""
    if config.rollout.engine == "hf" and config.rollout.static_cache:
        from rlkit.rollout.hf_fast import FastHFEngine  # static KV cache + CUDA graph decode loop

        engine = FastHFEngine(model, tokenizer)
        triton = config.rollout.decode_kernels == "triton"  # each kernel is still used only where Triton runs
        engine.attention, engine.sampling = ("triton", "triton") if triton else ("plain", "torch")
        return engine
    if config.rollout.engine == "hf":
        from rlkit.rollout.hf import HFEngine

        return HFEngine(model, tokenizer)
    if config.rollout.engine == "vllm":
        from rlkit.rollout.vllm_engine import VLLMEngine

        return VLLMEngine.from_config(config, tokenizer, model=model)  # vLLM starts from the current policy
    raise ValueError(config.rollout.engine)
