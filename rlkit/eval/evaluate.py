"""Evaluate a policy: generate samples per problem in batches, score them, summarize.

One generation loop (`generate_scored`) serves two summaries: `evaluate_accuracy`, the held-out
accuracy a run prints (greedy, the mean correctness score), and `evaluate_benchmark`, a benchmark's
avg@k / pass@k / maj@k (a sample is correct when its score is above 0.5; the math reward gives 1 or 0).
The engine is any RolloutEngine (HF or vLLM); the scorer is a RewardPool holding the correctness reward.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rlkit.eval.benchmarks import Benchmark
from rlkit.eval.scores import avg_at_k, maj_at_k, mean_pass_at_k, pass_ks
from rlkit.models import encode_prompt
from rlkit.progress import ProgressBar
from rlkit.rollout.base import Completion, RolloutEngine, SamplingParams
from rlkit.scoring.pool import RewardBatch, RewardPool


@dataclass
class BenchmarkResult:
    benchmark: Benchmark
    metrics: dict[str, Any]  # what results.json holds
    problems: list[dict[str, Any]] = field(default_factory=list)  # per problem: gold, responses, verdicts


def sampling_for(bench: Benchmark, n: int | None, temperature: float | None, max_new_tokens: int, seed: int = 0,
                 top_p: float | None = None) -> SamplingParams:
    """The benchmark's defaults, with whatever the caller set explicitly on top."""
    temperature = bench.temperature if temperature is None else temperature
    n = bench.n if n is None else n
    return SamplingParams(
        n=n, temperature=temperature, top_p=bench.top_p if top_p is None else top_p, max_new_tokens=max_new_tokens, seed=seed
    )


def extracted_answer(text: str, info: dict[str, Any]) -> str | None:
    """The answer a sample votes with: the reward's own extraction, else the math reward's rule
    (the last \\boxed{} after the last </think>; none while a <think> is open)."""
    if isinstance(info.get("pred"), str):
        return info["pred"]
    from rlkit.rewards.math import answer_part, last_boxed

    part = answer_part(text)
    return last_boxed(part) if part is not None else None


def gold_or_none(sample: dict[str, Any]) -> str | None:
    """The gold answer as the math reward reads it, for samples.jsonl (None when the row has none)."""
    from rlkit.rewards.math import gold_answer

    try:
        return gold_answer(sample)
    except KeyError:  # a custom reward may not need one
        return None


def math_equivalence(timeout: float = 3) -> Callable[[str, str], bool]:
    """Answer equivalence for majority voting: equal without spaces, or equal by math-verify, under
    the math reward's time limit (main thread only: it is a signal); an answer that cannot be parsed
    or compared in time is equal only to itself."""
    from rlkit.rewards.base import RewardTimeout
    from rlkit.rewards.math import answers_equal, parse_answer, usable_limit

    limit = usable_limit(timeout)
    parsed: dict[str, Any] = {}

    def parse_once(answer: str) -> Any:
        if answer not in parsed:
            try:
                parsed[answer] = parse_answer(answer, limit)
            except RewardTimeout:
                parsed[answer] = []
        return parsed[answer]

    def equivalent(a: str, b: str) -> bool:
        if a.replace(" ", "") == b.replace(" ", ""):
            return True
        pa, pb = parse_once(a), parse_once(b)
        if not pa or not pb:
            return False
        try:
            return answers_equal(pa, pb, limit)
        except RewardTimeout:
            return False

    return equivalent


def generate_scored(
    engine: RolloutEngine, tokenizer, samples: list[dict[str, Any]], scorer: RewardPool, sampling: SamplingParams, batch_size: int  # noqa: ANN001
) -> Iterator[tuple[list[Completion], RewardBatch]]:
    """`sampling.n` completions per sample, `batch_size` prompts per generate call, each batch scored;
    a completion's `prompt_index` indexes `samples`."""
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        generated = engine.generate([encode_prompt(tokenizer, s["prompt"]) for s in chunk], sampling)
        scored = scorer.score([c.text for c in generated], [chunk[c.prompt_index] for c in generated])
        for completion in generated:
            completion.prompt_index += start  # index into `samples`, not into the chunk
        yield generated, scored


def evaluate_accuracy(
    engine: RolloutEngine,
    tokenizer,  # noqa: ANN001
    samples: list[dict[str, Any]],
    scorer: RewardPool,
    max_new_tokens: int,
    batch_size: int = 256,
) -> dict[str, float]:
    """Held-out accuracy: greedy decoding, the mean correctness score over the samples; with rows of
    several categories (the tiny world's, or any data with a `category` field) also `accuracy/<category>`."""
    sampling = SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens)
    correct, lengths, truncated, done = 0.0, 0, 0, 0
    by_category: dict[str, list[float]] = {}
    for completions, scored in generate_scored(engine, tokenizer, samples, scorer, sampling, batch_size):
        correct += sum(scored.total)
        lengths += sum(len(c.response_ids) for c in completions)
        truncated += sum(c.finish_reason == "length" for c in completions)
        for sample, score in zip(samples[done : done + len(completions)], scored.total):  # n=1: one per sample
            if isinstance(sample.get("category"), str):
                by_category.setdefault(sample["category"], []).append(score)
        done += len(completions)
    n = len(samples)
    result = {"accuracy": correct / n, "mean_response_length": lengths / n, "truncated": truncated / n, "count": n}
    if len(by_category) > 1:
        result.update({f"accuracy/{name}": sum(scores) / len(scores) for name, scores in sorted(by_category.items())})
    return result


def evaluate_benchmark(
    engine: RolloutEngine,
    tokenizer,  # noqa: ANN001
    bench: Benchmark,
    samples: list[dict[str, Any]],
    scorer: RewardPool,
    sampling: SamplingParams,
    batch_size: int = 64,
    keep_problems: bool = True,
    progress: ProgressBar | None = None,
) -> BenchmarkResult:
    """Generate `sampling.n` completions per sample, `batch_size` prompts at a time, and score them
    (`progress` hears of each batch's problems)."""
    started = time.perf_counter()
    completions: list[Completion] = []
    verdict_scores: list[float] = []
    infos: list[dict[str, Any]] = []
    errors = timeouts = 0
    for generated, scored in generate_scored(engine, tokenizer, samples, scorer, sampling, batch_size):
        completions += generated
        verdict_scores += scored.total
        errors += scored.errors
        timeouts += scored.timeouts
        if progress is not None:
            progress.advance(len({c.prompt_index for c in generated}))
        # one reward: its info dict (pred, gold, reason); several: merged, the first reward's pred wins
        for info in scored.infos:
            merged: dict[str, Any] = {}
            for part in reversed(list(info.values())):
                merged.update(part or {})
            infos.append(merged)

    n = sampling.n
    verdicts: list[list[bool]] = [[] for _ in samples]
    answers: list[list[str | None]] = [[] for _ in samples]
    problems: list[dict[str, Any]] = [{"id": s.get("id"), "gold": gold_or_none(s), "responses": []} for s in samples]
    for completion, score, info in zip(completions, verdict_scores, infos):
        i = completion.prompt_index
        correct = score > 0.5
        answer = extracted_answer(completion.text, info)
        verdicts[i].append(correct)
        answers[i].append(answer)
        problems[i]["responses"].append(
            {"text": completion.text, "answer": answer, "correct": correct, "score": score,
             "length": len(completion.response_ids), "finish_reason": completion.finish_reason}
        )
    for i, got in enumerate(verdicts):
        if len(got) != n:
            raise RuntimeError(f"{bench.name}: the engine returned {len(got)} completions for problem {i}, expected {n}")

    lengths = [len(c.response_ids) for c in completions]
    metrics: dict[str, Any] = {"benchmark": bench.name, "source": bench.source, "accuracy": avg_at_k(verdicts)}
    metrics[f"avg@{n}"] = metrics["accuracy"]
    for k in pass_ks(n):
        metrics[f"pass@{k}"] = mean_pass_at_k(verdicts, k)
    metrics[f"maj@{n}"] = maj_at_k(answers, verdicts, math_equivalence())
    metrics.update(
        mean_response_length=sum(lengths) / len(lengths),
        problems=len(samples),
        samples=len(completions),
        correct_samples=sum(map(sum, verdicts)),
        truncated=sum(c.finish_reason == "length" for c in completions),
        no_answer=sum(a is None for problem in answers for a in problem),
        reward_errors=errors,
        reward_timeouts=timeouts,
        sampling={"n": n, "temperature": sampling.temperature, "top_p": sampling.top_p,
                  "max_new_tokens": sampling.max_new_tokens, "seed": sampling.seed},
        time_s=time.perf_counter() - started,
    )
    return BenchmarkResult(bench, metrics, problems if keep_problems else [])
