"""Benchmarks evaluated during training (`eval.benchmarks`), next to the held-out split.

Each benchmark is sampled with its defaults (greedy, or 8 samples at temperature 0.6 for AIME/AMC)
and a fixed seed, so that two evaluations differ only by the policy. `eval.limit` caps every
benchmark as it caps the held-out split; responses stop at `eval.max_new_tokens` (else the
rollout's). Results come back as `<benchmark>/accuracy` and `<benchmark>/mean_response_length`,
which the stage loop logs as `eval/<benchmark>/accuracy`.
"""

from __future__ import annotations

from typing import Any

from rlkit.config import EvalConfig
from rlkit.data import load_benchmark
from rlkit.eval.benchmarks import TINY, Benchmark, check_gold_answers, resolve_benchmarks
from rlkit.eval.evaluate import evaluate_benchmark, sampling_for
from rlkit.rollout.base import RolloutEngine
from rlkit.scoring.pool import RewardPool


class BenchmarkEvaluator:
    """Loads the benchmarks once; each call evaluates the engine's current policy on all of them."""

    def __init__(self, config: EvalConfig, max_new_tokens: int, seed: int = 0):
        self.plans: list[tuple[Benchmark, list[dict[str, Any]]]] = []
        for bench in resolve_benchmarks(config.benchmarks, config.data_dir):
            samples = load_benchmark(bench, config.data.template, config.limit)
            if config.reward == "math" and bench.source != TINY:
                check_gold_answers(bench, samples)
            self.plans.append((bench, samples))
        self.max_new_tokens, self.seed, self.batch_size = max_new_tokens, seed, config.batch_size

    def __call__(self, engine: RolloutEngine, tokenizer, scorer: RewardPool) -> dict[str, float]:  # noqa: ANN001
        out: dict[str, float] = {}
        for bench, samples in self.plans:
            sampling = sampling_for(bench, None, None, self.max_new_tokens, self.seed)
            result = evaluate_benchmark(engine, tokenizer, bench, samples, scorer, sampling, self.batch_size, keep_problems=False)
            out[f"{bench.name}/accuracy"] = result.metrics["accuracy"]
            out[f"{bench.name}/mean_response_length"] = result.metrics["mean_response_length"]
        return out
