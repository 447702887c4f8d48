"""The one config schema. Every default lives here; recipes say only what differs.

A recipe is YAML validated into `RunConfig` before anything heavy starts. Unknown keys,
wrong types and missing files raise `ConfigError` naming the key, the file and what was
expected. Dotted overrides (`rl.lr=1e-5`, `rollout.n=4`) address top-level sections or a
stage by its name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from rlkit.algos.advantage_estimators import ADVANTAGE_ESTIMATORS
from rlkit.algos.kl import KL_ESTIMATORS
from rlkit.algos.loss_aggregation import LOSS_AGGREGATIONS
from rlkit.algos.schedules import linear_schedule
from rlkit.errors import ConfigError
from rlkit.plugins import import_function, is_target
from rlkit.shared_data import ENV as SHARED_DATA_ENV
from rlkit.shared_data import resolve_shared, shared_data_root
from rlkit.world.categories import DEFAULT_MIX, check_mix


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------- model, data
class ModelConfig(Section):
    path: str = Field("tiny", description="the policy: 'tiny' builds the tiny-world model; else a Hugging Face id or a local model directory.")
    tiny_size: Literal["tiny", "small"] = Field("tiny", description="shape of the tiny-world model when path='tiny' (tiny: 1.1M parameters, head_dim 64).")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="parameter dtype of the policy and the rollout engine; bfloat16 for speed on a GPU.")
    chat_template: str | None = Field(None, description="a Jinja chat template replacing the tokenizer's own; None keeps the tokenizer's.")


class DataConfig(Section):
    source: str = Field(
        "tiny:arithmetic",
        description="'tiny:arithmetic', a .jsonl/.parquet file (relative to where rlkit runs), 'shared:<path>' (a file in the "
        "shared data folder, see `shared_data`), 'hf:<dataset id>', or a loader "
        "'file.py:fn' / 'pkg.module:fn' called with split= that returns row dicts (examples/custom_dataset.py).",
    )
    split: Literal["train", "test"] = Field("train", description="tiny-world and hf: split; a file is used whole.")
    limit: int | None = Field(None, ge=1, description="use only the first N rows (of those `ids` picks, when given); None = all.")
    ids: list[str] | None = Field(None, min_length=1, description="use only the rows with these ids, in this order (e.g. the 1-shot example).")
    where: list[str] | None = Field(
        None, min_length=1,
        description="keep only rows whose fields pass every condition, before ids, limit and repeat: 'FIELD OP VALUE' with OP == != < <= > >= in, not in, contains (e.g. 'category == sub', 'pass_rate <= 0.5'; rlkit/where.py).",
    )
    repeat: int = Field(1, ge=1, description="replicate the rows N times (1-shot RLVR replicates one example 128 times).")
    shuffle: bool = Field(True, description="visit the rows in a seeded random order each epoch (seed: the run's `seed`).")
    template: str = Field("auto", description="prompt template: auto, tiny, plain, qwen_boxed, qwen25_math_cot, deepscaler, r1_think (rlkit/templates.py).")
    size: int = Field(4000, ge=1, description="number of tiny-world problems generated for this split.")
    unboxed_fraction: float = Field(
        0.0, ge=0.0, le=1.0,
        description="tiny world: fraction of teacher traces that end 'The answer is N.' instead of \\boxed{N} (a format habit for RL to remove).",
    )
    synthetic_from: str | None = Field(
        None, description="name of an earlier synthesize stage whose new problems are added to these rows (SwS's augmented RL); None = none.",
    )
    mix: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_MIX),
        description="tiny world: weight of each problem category (add2, add3, sub, mul1); a small weight makes a weak category on purpose. The default is the original world.",
    )

    @field_validator("where", mode="before")
    @classmethod
    def _parse_conditions(cls, where: Any) -> Any:
        from rlkit.where import parse_condition

        where = [where] if isinstance(where, str) else where
        for text in where or []:
            if isinstance(text, str):
                parse_condition(text)
        return where

    @field_validator("mix")
    @classmethod
    def _known_categories(cls, mix: dict[str, float]) -> dict[str, float]:
        check_mix(mix)
        return mix


class SamplingConfig(Section):
    n: int = Field(8, ge=1, description="samples per prompt (the GRPO group size).")
    temperature: float = Field(1.0, ge=0.0, description="sampling temperature; 0 = greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling: keep the smallest token set with this much probability; 1 = off.")
    max_new_tokens: int = Field(64, ge=1, description="response length limit in tokens; a sample that reaches it is 'truncated'.")


class TemperatureSchedule(Section):
    """A linear rollout-temperature schedule (Phi-4-Mini-Reasoning: from 1.0 to 0.6 over the first half)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)
    start: float = Field(..., alias="from", ge=0.0, description="temperature at the stage's first step.")
    end: float = Field(..., alias="to", ge=0.0, description="temperature once `over` of the stage's steps have passed, and after.")
    over: float = Field(0.5, ge=0.0, le=1.0, description="fraction of the stage's steps over which it moves linearly from `from` to `to`.")


def _temperature_kind(value: Any) -> str:
    return "schedule" if isinstance(value, (dict, TemperatureSchedule)) else "constant"


# a number or a schedule; the discriminator keeps a bad schedule's error about the schedule (not "not a number")
Temperature = Annotated[
    Annotated[Annotated[float, Field(ge=0.0)], Tag("constant")] | Annotated[TemperatureSchedule, Tag("schedule")],
    Discriminator(_temperature_kind),
]
UNION_TAGS = ("constant", "schedule")  # left out of the dotted key an error names


class RolloutConfig(SamplingConfig):
    temperature: Temperature = Field(  # type: ignore[assignment]
        1.0,
        description="sampling temperature: a constant, or {from, to, over}: a linear schedule over the steps of each "
        "rl and rollout_dpo stage (logged as rollout/temperature).",
    )

    def temperature_at(self, step: int, total_steps: int) -> float:
        """The sampling temperature of 1-based `step` of a stage of `total_steps`."""
        schedule = self.temperature
        if isinstance(schedule, TemperatureSchedule):
            return linear_schedule(schedule.start, schedule.end, schedule.over, step, total_steps)
        return schedule
    engine: Literal["hf", "vllm"] = Field("hf", description="hf = transformers generate; vllm needs the gpu extra.")
    tensor_parallel_size: int = Field(1, ge=1, description="vllm: GPUs each engine spans (tensor parallelism).")
    gpu_memory_utilization: float = Field(0.5, gt=0.0, le=1.0, description="vllm: fraction of GPU memory an engine may take (weights + KV cache).")
    static_cache: bool = Field(False, description="HF engine: static KV cache decode loop (CUDA graph + torch.compile on GPU).")
    decode_kernels: Literal["triton", "torch"] = Field(
        "triton",
        description="static_cache engine on CUDA: the decode step's attention and temperature sampling as rlkit's Triton "
        "kernels (rollout/decode_attention.py, decode_sampling.py) where Triton imports; torch = plain torch ops (the "
        "switch if a kernel fails or misbehaves on some GPU). No effect on CPU or with other engines.",
    )


class RewardSpec(Section):
    name: str = Field(..., description="built-in name (math, format, length, unit_tests, code_quality), 'pkg.module:fn' or 'path/file.py:fn'.")
    weight: float = Field(1.0, description="factor of this reward in the weighted sum that is the RL reward.")
    args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments bound to the reward function (checked against its signature at load).")


class RewardConfig(Section):
    workers: int = Field(0, ge=0, description="reward worker processes; 0 scores in the main process.")
    timeout: float = Field(10.0, gt=0, description="seconds per reward call (workers > 0) before it scores 0 and counts as a timeout.")


class GeneratorConfig(Section):
    """A generation backend (rlkit/generation/): the teacher or instruct model that data stages ask."""

    backend: str = Field("tiny_teacher", description="registered backend: tiny_teacher (the tiny world's fallible teacher), local (an rlkit rollout engine on `model`), openai (an OpenAI-compatible server at `base_url`).")
    model: str | None = Field(None, description="local: a HF id or directory ('tiny' for the untrained tiny model); openai: the model name the server serves.")
    engine: Literal["hf", "vllm"] = Field("hf", description="local: the rollout engine that runs `model`.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="local: parameter dtype.")
    batch_size: int = Field(64, ge=1, description="local: prompts per engine call.")
    base_url: str | None = Field(None, description="openai: the server's API root, e.g. http://localhost:8000/v1.")
    api_key_env: str | None = Field(None, description="openai: name of the environment variable holding the API key (the key itself is never written to config or logs); None sends no key.")
    api: Literal["chat", "completions"] = Field("chat", description="openai: /chat/completions (chat messages; a text prompt becomes one user message) or /completions (text prompts).")
    concurrency: int = Field(8, ge=1, description="openai: requests in flight at once.")
    retries: int = Field(3, ge=0, description="openai: retries of a failed request (connection error, timeout, 408/409/429/5xx) before it is recorded as failed and skipped.")
    backoff: float = Field(1.0, ge=0, description="openai: seconds before the first retry; doubled for each further retry.")
    timeout: float = Field(120.0, gt=0, description="openai: seconds per request.")
    slip_rate: float = Field(0.05, ge=0.0, le=1.0, description="tiny_teacher: probability that a column line slips, times the problem's difficulty.")


# --------------------------------------------------------------------------- learner / runtime
class LoraConfig(Section):
    r: int = Field(16, ge=1, description="LoRA rank of each adapter (Hu et al., 2021).")
    alpha: int = Field(32, description="LoRA scale numerator: the adapter's output is multiplied by alpha / r.")
    dropout: float = Field(0.0, description="dropout on the adapter's input.")
    target_modules: list[str] | str = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="names of the modules that get adapters (a list, or one PEFT pattern string); the default is the attention projections.",
    )
    stages: list[str] | None = Field(None, description="names of the stages that train an adapter; None = every stage, others train fully.")


class LearnerConfig(Section):
    backend: Literal["torch", "deepspeed"] = Field("torch", description="torch = one process; deepspeed = ZeRO over several GPUs (deepspeed extra).")
    micro_batch_size: int = Field(64, ge=1, description="sequences per forward/backward pass (when micro_batch_tokens is 0); gradients accumulate over a step's micro-batches.")
    micro_batch_tokens: int = Field(
        0, ge=0,
        description="torch learner: real tokens per forward/backward pass; sequences are sorted by length and packed into rows "
                    "(position ids keep them apart), so padding costs nothing. 0 = micro_batch_size padded rows.",
    )
    max_grad_norm: float = Field(1.0, gt=0, description="clip the gradient's global L2 norm to this before each optimizer step.")
    weight_decay: float = Field(0.0, description="AdamW weight decay.")
    gradient_checkpointing: bool = Field(False, description="recompute activations in backward: less memory, more compute.")
    zero_stage: Literal[2, 3] = Field(2, description="deepspeed: ZeRO stage (2 shards optimizer state and gradients, 3 also parameters).")
    lora: LoraConfig | None = Field(None, description="train LoRA adapters instead of all weights; None = full fine-tuning.")
    logprob_chunk_size: int = Field(0, ge=0, description="tokens per chunk of the fused LM-head logprobs/entropy (no fp32 logits kept for backward); 0 = plain, whole micro-batch.")
    compile: bool = Field(False, description="torch.compile the transformer body for the learner's forward/backward (CUDA only).")
    compile_scope: Literal["layers", "body"] = Field(
        "layers",
        description="with compile: layers = each decoder layer compiled on its own (regional compilation; identical layers share "
                    "one compiled code: on the reference shape a 12 s first step instead of 53 s, and 7% faster steps, "
                    "docs/BENCHMARKS.md); body = the whole transformer body as one graph.",
    )
    head_kernels: Literal["triton", "torch"] = Field(
        "triton",
        description="the fused LM head's per-chunk log-softmax/entropy and gradient passes on CUDA: triton = one-pass Triton "
                    "kernels (where Triton imports), torch = torch.compile'd torch ops.",
    )
    head_loss_mask_only: bool = Field(
        False,
        description="train step (torch and deepspeed learners): run the LM head (its GEMMs and softmax passes, forward and "
                    "backward) only on the positions the loss mask covers, the prompt's and padding's skipped; the loss then "
                    "reads 0 there. Losses and gradients are unchanged up to fp32 rounding (every loss reads logprobs and "
                    "entropy under the mask); the rounding alone changes a long tiny-world run's outcome, as any "
                    "rounding change does (tests/test_tiny_algos.py's one-shot recipe). False = every position.",
    )
    keep_head_logits_gib: float = Field(
        12.0,
        ge=0.0,
        description="fused LM head: keep each chunk's logits from forward for backward instead of recomputing them (one GEMM "
                    "less a chunk, -6% train step on the reference shape) when a micro-batch's logits take at most this many "
                    "GiB (tokens x vocab x 2 bytes in bf16: 5.2 GiB at 32 x 576 tokens, 8.5 GiB at 29,952 tokens with a "
                    "151,936 vocabulary); longer micro-batches recompute them. 0 = always recompute.",
    )
    packed_attention: Literal["auto", "mask", "varlen"] = Field(
        "auto",
        description="how packed rows (the torch learner's micro_batch_tokens micro-batches, SFT's packing in the torch and "
                    "deepspeed learners) keep their sequences apart: varlen = torch's "
                    "variable-length flash attention over each sequence alone (rlkit/learner/varlen_attention.py; serves CUDA "
                    "with bf16/fp16 weights where torch has the op; elsewhere the learner warns and uses the mask); mask = a "
                    "block-diagonal mask from the restarting position ids, through SDPA (every row's W x W scores computed); "
                    "auto = varlen where it serves, else mask, silently. On one H200 the ragged preset's train phase took "
                    "0.52 s with varlen against 1.00 s with the mask (docs/BENCHMARKS.md; SFT packing not measured on a GPU). Rows of "
                    "one sequence each, padded micro-batches and generation keep SDPA's path.",
    )
    attention_backend: Literal["auto", "flash", "efficient", "cudnn", "math"] = Field(
        "auto",
        description="the SDPA backend the learner's attention tries first (forward and backward, torch and deepspeed "
                    "learners): auto = torch's own order (cuDNN first on an H100/H200 with a recent cuDNN); flash, "
                    "efficient (memory-efficient), cudnn or math first, the others kept as fallbacks for calls it cannot "
                    "run (flash takes no mask, so padded or packed micro-batches fall back). With compile, code traced under "
                    "another setting in the same process is dropped and recompiled, and a setting other than auto compiles "
                    "without Inductor's on-disk caches (they do not key on it). On one H200 (reference shape) auto, i.e. "
                    "cuDNN, was the fastest: flash 0.525 vs 0.510 s a train step (docs/BENCHMARKS.md).",
    )


class RayConfig(Section):
    address: str | None = Field(None, description="existing cluster address ('auto' or host:port); None starts a local Ray instance.")
    colocate: bool = Field(True, description="engines and learner ranks share GPUs (engines sleep while the learner trains); false = split placement.")
    rollout_gpus: int = Field(1, ge=0, description="GPUs for rollout engines (split placement).")
    train_gpus: int = Field(1, ge=0, description="GPUs for learner ranks (colocated: also the engines').")
    num_cpus: int | None = Field(None, description="CPUs of a locally started Ray instance; None = this machine's CPU count (at least what the layout needs).")


class CheckpointConfig(Section):
    every: int = Field(50, ge=1, description="save a resumable checkpoint every N steps of a stage.")
    keep: int = Field(2, ge=1, description="number of step checkpoints kept per stage (deleted when the stage's output is saved).")


class LoggingConfig(Section):
    backends: list[Literal["jsonl", "tensorboard", "wandb"]] = Field(
        default_factory=list,
        description="experiment trackers that get every metrics.jsonl line (which is always written): tensorboard "
        "(event files in <run>/tensorboard) and/or wandb (needs `pip install 'rlkit[tracking]'`).",
    )
    wandb_project: str = Field("rlkit", description="W&B project the run is logged to.")
    wandb_mode: Literal["online", "offline"] | None = Field(
        None, description="W&B mode; offline writes <run>/wandb/offline-run-* for `wandb sync` later. None: W&B's own default (WANDB_MODE, else online).",
    )

    @field_validator("backends")
    @classmethod
    def _installed(cls, backends: list[str]) -> list[str]:
        """A tracker that is not installed fails when the recipe loads, not after the first stage."""
        import importlib.util

        for name in backends:
            if name != "jsonl" and importlib.util.find_spec(name) is None:
                raise ValueError(f"the '{name}' backend needs the '{name}' package, which is not installed: pip install 'rlkit[tracking]'")
        return backends


class EvalConfig(Section):
    data: DataConfig = Field(
        default_factory=lambda: DataConfig(split="test", size=200, shuffle=False),
        description="the held-out set, decoded greedily: by default 200 tiny-world test problems.",
    )
    limit: int | None = Field(None, ge=1, description="evaluate only the first N held-out rows (and benchmark rows); None = all.")
    every: int = Field(0, ge=0, description="evaluate every N RL steps; 0 = only before and after.")
    benchmarks: list[str] = Field(default_factory=list, description="extra benchmarks evaluated periodically (names, files, hf:<id>).")
    data_dir: str | None = Field(None, description="where benchmark names find <name>.jsonl; None = math/ in the shared data folder (see `shared_data`).")
    reward: str = Field("math", description="the correctness reward that defines accuracy (a reward name or spec, no args).")
    max_new_tokens: int | None = Field(None, description="response limit when evaluating; None = rollout.max_new_tokens.")
    batch_size: int = Field(256, ge=1, description="prompts per generate call when evaluating.")


# --------------------------------------------------------------------------- stages
class AlgorithmConfig(Section):
    advantage: str = Field("grpo", description=f"advantage estimator: {', '.join(ADVANTAGE_ESTIMATORS.names())} (rlkit/algos/advantage_estimators.py).")
    normalize_std: bool = Field(True, description="GRPO: divide by the group std.")
    loss_agg: str = Field("token_mean", description=f"how per-token losses become the batch loss: {', '.join(LOSS_AGGREGATIONS.names())} (rlkit/algos/loss_aggregation.py).")
    clip_low: float = Field(0.2, ge=0, description="PPO clip: the ratio is kept above 1 - clip_low for positive advantages (epsilon of Schulman et al., 2017).")
    clip_high: float = Field(0.2, ge=0, description="PPO clip upper bound 1 + clip_high; DAPO's clip-higher sets it above clip_low (0.28).")
    dual_clip: float | None = Field(None, gt=1.0, description="dual-clip constant c (> 1) for negative advantages (Ye et al., 2020).")
    kl_coef: float = Field(0.0, ge=0, description="weight of KL(policy || reference); the reference is the policy the stage started from. 0 = no reference.")
    kl_estimator: str = Field("k3", description=f"per-token KL estimator: {', '.join(KL_ESTIMATORS.names())} (Schulman's; rlkit/algos/kl.py).")
    kl_in_reward: bool = Field(False, description="apply KL as a reward penalty instead of a loss term.")
    kl_ratio_correction: bool = Field(
        False, description="loss-term KL times the importance ratio: the unbiased reverse-KL gradient (DeepSeek-V3.2; TRL's use_bias_correction_kl)."
    )
    entropy_coef: float = Field(0.0, description="signed: positive pushes entropy up (loss -= coef * entropy).")
    entropy_only: bool = Field(False, description="ignore the outcome reward; only the entropy term drives the update.")
    epochs: int = Field(1, ge=1, description="PPO epochs over each rollout batch.")
    mini_batches: int = Field(1, ge=1, description="optimizer steps per epoch.")
    gamma: float = Field(1.0, description="discount per token for the token-level estimators (reinforce_pp, gae); 1 = none.")
    lam: float = Field(0.95, description="GAE lambda: bias-variance trade-off of the critic's advantages (Schulman et al., 2016).")
    value_clip: float | None = Field(0.2, description="PPO value clipping: a value moves at most this far from the one the advantages used; None = plain squared error.")
    critic_lr: float = Field(1e-5, description="learning rate of PPO's critic (advantage: gae).")
    critic_warmup_steps: int = Field(0, description="first N steps train only the critic; the policy stays frozen.")
    dynamic_sampling: bool = Field(False, description="DAPO: drop groups whose rewards are all equal.")
    max_sampling_rounds: int = Field(3, ge=1, description="dynamic sampling: at most this many generate rounds per step to fill the batch.")
    overlong_filter: bool = Field(False, description="mask samples that hit max_new_tokens out of the loss.")
    rebalance: bool = Field(
        False,
        description="Phi-4-Mini-Reasoning: per group keep every correct sample and as many random incorrect ones; "
        "advantages over the kept samples (grpo, dr_grpo).",
    )
    accuracy_band: tuple[float, float] | None = Field(
        None,
        description="[low, high]: keep only prompts whose sampled accuracy (the eval.reward score, mean over the group) lies in the band, inclusive, refilling as dynamic sampling does (max_sampling_rounds); logs sampling/below_band and sampling/above_band. SwS skips prompts outside [0.1, 0.9]; Phi-4-Mini-Reasoning drops those above 0.5. None = off.",
    )

    @field_validator("accuracy_band")
    @classmethod
    def _ordered_band(cls, band: tuple[float, float] | None) -> tuple[float, float] | None:
        if band is not None and not 0.0 <= band[0] <= band[1] <= 1.0:
            raise ValueError(f"expected [low, high] with 0 <= low <= high <= 1, got {list(band)}")
        return band

    # the allowed names come from the registries, so a new estimator needs no edit here
    @field_validator("advantage")
    @classmethod
    def _registered_advantage(cls, name: str) -> str:
        return ADVANTAGE_ESTIMATORS.check(name)

    @field_validator("loss_agg")
    @classmethod
    def _registered_loss_agg(cls, name: str) -> str:
        return LOSS_AGGREGATIONS.check(name)

    @field_validator("kl_estimator")
    @classmethod
    def _registered_kl_estimator(cls, name: str) -> str:
        return KL_ESTIMATORS.check(name)


REBALANCING_ESTIMATORS = ("grpo", "dr_grpo")  # the estimators that take `keep` (rlkit/algos/advantage_estimators.py)


class StageBase(Section):
    name: str | None = Field(None, description="defaults to the stage type; overrides address stages by name.")
    data: DataConfig = Field(default_factory=DataConfig, description="the stage's training data.")
    steps: int = Field(100, ge=1, description="optimizer steps (rl: rollout batches) of the stage.")
    lr: float = Field(1e-5, gt=0, description="peak learning rate (AdamW), constant after warm-up.")
    warmup_steps: int = Field(0, ge=0, description="linear learning-rate warm-up from 0 over the first N steps.")
    batch_size: int = Field(16, ge=1, description="prompts (rl) or sequences (sft, dpo) per step.")


class SFTStage(StageBase):
    type: Literal["sft"] = Field(description="supervised fine-tuning on the assistant's tokens.")
    packing: bool = Field(False, description="fill each row with several samples up to max_length (position ids restart per sample).")
    max_length: int = Field(256, ge=8, description="tokens per row; longer samples are cut.")


class LengthFilterConfig(Section):
    samples: int = Field(8, ge=2, description="responses sampled per prompt with the stage's starting policy.")
    max_spread: float = Field(
        ..., gt=0.0, description="keep prompts whose response lengths' coefficient of variation (std / mean) is at most this."
    )


class RLStage(StageBase):
    type: Literal["rl"] = Field(description="policy optimization with verifiable rewards.")
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig, description="advantage estimator, loss and their options.")
    length_filter: LengthFilterConfig | None = Field(
        None,
        description="Phi-4-Mini-Reasoning's prompt optimization: once before the stage, drop prompts whose sampled "
        "response lengths vary more than max_spread (logged as length_filter/kept and /dropped at step 0).",
    )


class DPOStage(StageBase):
    type: Literal["dpo"] = Field(description="DPO on (chosen, rejected) pairs of the stage's data.")
    beta: float = Field(0.1, gt=0, description="DPO temperature: scale of the log-ratio (Rafailov et al., 2023).")
    loss: Literal["sigmoid", "ipo"] = Field("sigmoid", description="sigmoid = DPO; ipo = IPO's squared loss on per-token mean log-ratios (Azar et al., 2023).")
    max_length: int = Field(256, ge=8, description="tokens per sequence; longer ones are cut.")


class RolloutDPOStage(DPOStage):
    type: Literal["rollout_dpo"] = Field(description="DPO on pairs of the policy's own samples, labelled by the rewards.")  # type: ignore[assignment]
    pair_selection: Literal["random", "first", "longest_rejected"] = Field(
        "random", description="which correct/incorrect samples pair up; longest_rejected = shortest correct vs longest incorrect."
    )
    pairs_per_prompt: int = Field(1, ge=1, description="at most this many pairs per prompt.")


class SynthConfig(Section):
    """SwS's synthesis pipeline (synth/pipeline.py). Paper: arXiv 2506.08989, section 3; "rlkit" marks values the paper does not give."""

    threshold: float = Field(0.5, ge=0.0, le=1.0, description="a weakness's best epoch has at most this training accuracy (paper: 0.5; the authors' released failure list includes best epochs of exactly 0.5).")
    max_slope: float = Field(0.0, description="and its accuracy slope over epochs is at most this (paper: 0; the authors' released list includes problems at 0 in every epoch, slope exactly 0).")
    budget: int = Field(1000, ge=0, description="concept combinations to write problems from, split over categories by failure rate (paper, 7B: ~1M; rlkit default 1000).")
    combination_size: int = Field(5, ge=1, description="concepts per combination (paper: 5).")
    combination_temperature: float = Field(0.2, gt=0.0, description="softmax temperature of concept sampling (paper: 0.2).")
    levels: list[str] = Field(
        default_factory=lambda: ["AMC 10", "AMC 12", "AIME", "HMMT", "USAMO", "IMO"],
        min_length=1, description="target difficulty levels, one drawn at random per combination (paper's examples: AMC12, HMMT, AIME, USAMO).",
    )
    embedding_model: str | None = Field(
        None, description="HF id or path whose mean-pooled hidden states embed concepts for sampling; None = co-occurrence only.",
    )
    concepts_template: str = Field("concepts", description="prompt file for concept extraction: a name in synth/templates/ or a path.")
    problem_template: str = Field("problem", description="prompt file for writing a problem (rationale, then problem).")
    rating_template: str = Field("rating", description="prompt file for the quality raters (ends with a rating word).")
    solve_template: str = Field("solve", description="prompt file for the answer model.")
    problem_temperature: float = Field(0.6, ge=0.0, description="sampling temperature of the problem writer (paper: 0.6).")
    problem_max_tokens: int = Field(4096, ge=1, description="token limit of the problem writer (paper: 4,096).")
    answer_samples: int = Field(8, ge=1, description="answer-model samples per problem (paper: 8).")
    answer_temperature: float = Field(0.6, ge=0.0, description="answer-model sampling temperature (rlkit: the paper does not say).")
    answer_max_tokens: int = Field(8192, ge=1, description="answer-model token limit (rlkit: the paper does not say).")
    answer_min_share: float = Field(0.5, gt=0.0, le=1.0, description="keep a problem if its majority answer holds at least this share of the samples (paper: half).")
    difficulty_samples: int = Field(8, ge=1, description="policy samples per problem for the difficulty filter (paper: 8).")
    difficulty_band: tuple[float, float] = Field((0.25, 0.75), description="keep problems whose policy accuracy lies in [low, high] (paper: [0.25, 0.75]).")
    ngram: int = Field(13, ge=1, description="word n-gram length of deduplication and decontamination (rlkit: the paper gives no rule).")
    overlap_threshold: float = Field(0.5, gt=0.0, le=1.0, description="drop a problem when this share of its n-grams occurs in the train set, a benchmark or an earlier new problem (rlkit).")
    decontaminate_dir: str | None = Field(
        "shared:math", description="every .jsonl here is a benchmark to decontaminate against ('shared:' = in the shared data folder); None = none.",
    )
    retries: int = Field(2, ge=0, description="re-asks of a backend for an item whose text did not parse or whose request failed, before it is counted and skipped.")
    chunk_size: int = Field(64, ge=1, description="items per backend call; each finished chunk is written at once, so a rerun resumes after it.")
    seed: int | None = Field(None, description="seed of concept sampling; None = the run's seed.")
    category_field: str = Field("category", description="the row field that holds a problem's category (SwS: Algebra, Geometry, ...); rows without it count as 'uncategorized'.")


class SynthesizeStage(Section):
    """SwS between two rl stages: the earlier one's ledger and model in, new problems out (rlkit/stages/synthesize.py)."""

    type: Literal["synthesize"] = Field(description="SwS: weaknesses of the rl stage before it -> new problems for the rl stage after it.")
    name: str | None = Field(None, description="defaults to 'synthesize'; a later rl stage names it in `data.synthetic_from`.")
    source: str | None = Field(None, description="the rl stage whose ledger, data and model are read; None = the last rl stage before this one.")
    concepts: GeneratorConfig = Field(
        default_factory=lambda: GeneratorConfig(backend="tiny_concepts"),
        description="the instruct model that lists each weak problem's concepts (paper: Llama-3.3-70B-Instruct, temperature 0).",
    )
    writer: GeneratorConfig = Field(
        default_factory=lambda: GeneratorConfig(backend="tiny_writer"),
        description="the instruct model that writes a rationale, then a problem, per concept combination (paper: Llama-3.3-70B-Instruct).",
    )
    raters: list[GeneratorConfig] = Field(
        default_factory=lambda: [GeneratorConfig(backend="tiny_rater_strict"), GeneratorConfig(backend="tiny_rater_lenient")],
        min_length=1, description="the models that rate each problem bad / acceptable / perfect (paper: two).",
    )
    solver: GeneratorConfig = Field(
        default_factory=lambda: GeneratorConfig(backend="tiny_teacher"),
        description="the reasoning model whose majority answer of `synth.answer_samples` labels a problem (paper: Skywork-OR1-Math-7B; QwQ-32B for 32B).",
    )
    synth: SynthConfig = Field(default_factory=SynthConfig, description="the pipeline's steps and filters.")


class DistillStage(Section):
    """A data stage: teacher solutions -> SFT rows, DPO pairs and per-problem tags (no model is trained)."""

    type: Literal["distill"] = Field(description="a data stage: the teacher solves each problem n times; writes sft, dpo, problems and samples sets.")
    name: str | None = Field(None, description="defaults to 'distill'; later stages read its sets as data.source: stage:<name>/<set>.")
    data: DataConfig = Field(default_factory=DataConfig, description="the problems the teacher solves (they need a gold answer).")
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig, description="the teacher: a generation backend (rlkit/generation/).")
    n: int = Field(8, ge=1, description="teacher samples per problem.")
    temperature: float = Field(1.0, ge=0.0, description="the teacher's sampling temperature.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="the teacher's nucleus sampling.")
    max_tokens: int = Field(256, ge=1, description="tokens per teacher sample; longer ones are cut (finish_reason 'length').")
    reward: str | None = Field(None, description="the reward that verifies a sample (correct = scores 1); None = eval.reward.")
    pair_selection: Literal["random", "first", "longest_rejected"] = Field("random", description="DPO pairs per problem, as rollout_dpo chooses them.")
    pairs_per_prompt: int = Field(1, ge=1, description="DPO pairs per problem at most (each needs a correct and an incorrect sample).")
    chunk: int = Field(32, ge=1, description="problems sampled, scored and written at a time (a resumed stage redoes at most one chunk).")


DISTILL_SETS = ("sft", "dpo", "problems", "samples")  # what `stage:<name>/<set>` can name
DATA_STAGES = ("distill",)  # stages that write datasets, not a model

Stage = Annotated[SFTStage | RLStage | DPOStage | RolloutDPOStage | DistillStage | SynthesizeStage, Field(discriminator="type")]


class RunConfig(Section):
    name: str = Field("run", description="a label for the run (the run directory is named after the recipe).")
    seed: int = Field(0, description="seeds model init, data order and sampling.")
    runtime: Literal["local", "ray"] = Field("local", description="local = one process; ray = engines, learner and rewards on Ray actors (ray extra).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when available, else cpu.")
    threads: int | None = Field(None, ge=1, description="torch CPU threads; None leaves torch's default.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="the policy model.")
    rollout: RolloutConfig = Field(default_factory=RolloutConfig, description="the rollout engine and its sampling.")
    rewards: list[RewardSpec] = Field(default_factory=lambda: [RewardSpec(name="math")], description="rewards whose weighted sum is the RL reward.")
    reward: RewardConfig = Field(default_factory=RewardConfig, description="how rewards are computed (worker processes, timeouts).")
    learner: LearnerConfig = Field(default_factory=LearnerConfig, description="the learner: backend, micro-batches, LoRA.")
    ray: RayConfig = Field(default_factory=RayConfig, description="placement under runtime: ray.")
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig, description="resumable step checkpoints.")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="experiment tracking besides metrics.jsonl.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="held-out accuracy and benchmarks, during and after training.")
    shared_data: str | None = Field(
        None,
        description=f"the folder of public data that 'shared:<path>' sources and named benchmarks read; None = ${SHARED_DATA_ENV}, "
        "else the first shared/data beside the current folder, the recipe's or the rlkit checkout (or beside a folder above them).",
    )
    stages: list[Stage] = Field(..., min_length=1, description="the stages, run in order; each continues from the model the last one left.")

    @field_validator("stages")
    @classmethod
    def _unique_stage_names(cls, stages: list[StageBase]) -> list[StageBase]:
        seen: set[str] = set()
        for stage in stages:
            stage.name = stage.name or stage.type  # type: ignore[attr-defined]
            if stage.name in seen:
                raise ValueError(f"two stages are named {stage.name!r}; give each a unique 'name'")
            seen.add(stage.name)
        return stages

    @model_validator(mode="after")
    def _check_algorithms(self) -> RunConfig:
        """Combinations the schema cannot express one field at a time, checked when the recipe loads
        (not when the RL stage starts, after the stages before it have trained)."""
        if self.learner.micro_batch_tokens and self.learner.backend != "torch":
            raise ValueError("key 'learner.micro_batch_tokens': packed token-budget micro-batches need learner.backend: torch; "
                             "the deepspeed learner takes learner.micro_batch_size rows (set micro_batch_tokens: 0)")
        for stage in self.stages:
            if not isinstance(stage, RLStage):
                continue
            alg, key = stage.algorithm, f"{stage.name}.algorithm"
            if alg.entropy_only and not alg.entropy_coef:
                raise ValueError(f"key '{key}.entropy_only': needs a non-zero {key}.entropy_coef (the only term left)")
            if ADVANTAGE_ESTIMATORS.get(alg.advantage).compares_group and self.rollout.n < 2:
                raise ValueError(f"key 'rollout.n': {key}.advantage '{alg.advantage}' compares the samples of a prompt; "
                                 f"expected n >= 2, got {self.rollout.n}")
            if alg.kl_in_reward and alg.kl_coef <= 0:
                raise ValueError(f"key '{key}.kl_in_reward': needs {key}.kl_coef > 0")
            if alg.rebalance and alg.advantage not in REBALANCING_ESTIMATORS:
                raise ValueError(f"key '{key}.rebalance': needs advantage {' or '.join(REBALANCING_ESTIMATORS)} "
                                 f"(group statistics over the kept samples), got '{alg.advantage}'")
        return self

    @model_validator(mode="after")
    def _synthesis_wiring(self) -> RunConfig:
        """A synthesize stage reads an earlier rl stage; `data.synthetic_from` names an earlier synthesize stage."""
        kinds: dict[str, str] = {}
        for stage in self.stages:
            if isinstance(stage, SynthesizeStage):
                rl_before = [name for name, kind in kinds.items() if kind == "rl"]
                if stage.source is None and not rl_before:
                    raise ValueError(f"stage '{stage.name}': a synthesize stage needs an rl stage before it (its ledger and model)")
                if stage.source is not None and kinds.get(stage.source) != "rl":
                    raise ValueError(f"key '{stage.name}.source': '{stage.source}' is not an rl stage before it (rl stages before: {rl_before or 'none'})")
                stage.source = stage.source or rl_before[-1]
            elif stage.data.synthetic_from is not None and kinds.get(stage.data.synthetic_from) != "synthesize":
                raise ValueError(
                    f"key '{stage.name}.data.synthetic_from': '{stage.data.synthetic_from}' is not a synthesize stage before it"
                )
            kinds[str(stage.name)] = stage.type
        return self

    def stage(self, name: str) -> StageBase:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)


# --------------------------------------------------------------------------- loading
def _error_key(loc: tuple, raw: dict[str, Any]) -> str:
    """Pydantic's location as the dotted key a user writes: stages are named, not numbered."""
    parts = [str(p) for p in loc if not str(p).startswith("function-after") and p not in UNION_TAGS]
    if len(parts) >= 2 and parts[0] == "stages" and parts[1].isdigit():
        index = int(parts[1])
        stages = raw.get("stages") or []
        stage = stages[index] if index < len(stages) and isinstance(stages[index], dict) else {}
        name = stage.get("name") or stage.get("type") or f"stages[{index}]"
        rest = parts[2:]
        if rest and rest[0] == stage.get("type"):
            rest = rest[1:]  # the discriminator tag pydantic inserts
        return ".".join([f"{name}", *rest]) if rest else f"stages[{index}]"
    return ".".join(parts)


def _format_validation_error(err: ValidationError, source: str, raw: dict[str, Any]) -> str:
    first = err.errors()[0]
    key = _error_key(first["loc"], raw)
    kind, msg = first["type"], first["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return f"{source}: unknown key '{key}'"
    if kind == "missing":
        return f"{source}: missing required key '{key}'"
    if kind == "value_error" and not key:  # a whole-recipe check: its message names the keys
        return f"{source}: {first['ctx']['error']}"
    if kind == "value_error":
        msg = str(first["ctx"]["error"])
    value = first.get("input")
    shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return f"{source}: key '{key}': {msg} (got {shown})"


def parse_override(text: str) -> tuple[list[str], Any]:
    """'rl.lr=1e-5' -> (['rl', 'lr'], 1e-5). Values are parsed as YAML scalars."""
    if "=" not in text:
        raise ConfigError(f"bad override '{text}': expected KEY=VALUE with a dotted key, e.g. rl.lr=1e-5")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"bad override '{text}': empty key part in '{key}'")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):  # YAML reads 1e-5 as a string; numbers should be numbers
        try:
            value = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            pass
    return key.split("."), value


def apply_override(raw: dict[str, Any], parts: list[str], value: Any, text: str) -> None:
    """Set a dotted key in the raw recipe dict; the first part may name a stage."""
    stages = raw.get("stages") or []
    target: Any = raw
    head = parts[0]
    stage_by_name = {(s.get("name") or s.get("type")): s for s in stages if isinstance(s, dict)}
    if head not in RunConfig.model_fields and head in stage_by_name:
        target, parts = stage_by_name[head], parts[1:]
    elif head not in RunConfig.model_fields:
        names = ", ".join(sorted(stage_by_name)) or "none"
        raise ConfigError(f"bad override '{text}': '{head}' is neither a config section nor a stage name (stages: {names})")
    if not parts:
        raise ConfigError(f"bad override '{text}': cannot replace a whole stage; set one of its keys")
    for part in parts[:-1]:
        nxt = target.get(part) if isinstance(target, dict) else None
        if nxt is None:
            nxt = {}
            target[part] = nxt
        if not isinstance(nxt, dict):
            raise ConfigError(f"bad override '{text}': '{part}' is not a section")
        target = nxt
    target[parts[-1]] = value


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a recipe, apply dotted overrides, validate, and check referenced files exist."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level, got {type(raw).__name__}")
    for text in overrides or []:
        parts, value = parse_override(text)
        apply_override(raw, parts, value, text)
    config = validate_config(raw, f"{path}" + (" (with overrides)" if overrides else ""))
    resolve_shared_paths(config, recipe_dir=path.parent)
    check_files(config, base=path.parent)
    return config


def resolve_shared_paths(config: RunConfig, recipe_dir: Path) -> None:
    """Replace 'shared:<path>' data sources and folders by their place in the shared data folder, and point
    named benchmarks at its math/ folder; the folder is looked for only when something names it."""
    near = [recipe_dir]

    def resolve(value: str, key: str, hint: str = "") -> str:
        try:
            return resolve_shared(value, config.shared_data, near)
        except ConfigError as err:
            raise ConfigError(f"key '{key}': {err}{hint}") from None

    for stage in config.stages:
        data = getattr(stage, "data", None)
        if data is not None:
            data.source = resolve(data.source, f"{stage.name}.data.source")
        synth = getattr(stage, "synth", None)
        if synth is not None and synth.decontaminate_dir:
            synth.decontaminate_dir = resolve(synth.decontaminate_dir, f"{stage.name}.synth.decontaminate_dir",
                                              "; or set it to null to skip decontamination")
    config.eval.data.source = resolve(config.eval.data.source, "eval.data.source")
    config.eval.benchmarks = [resolve(spec, "eval.benchmarks") for spec in config.eval.benchmarks]
    if config.eval.data_dir:
        config.eval.data_dir = resolve(config.eval.data_dir, "eval.data_dir")
    elif config.eval.benchmarks:
        from rlkit.eval.benchmarks import KNOWN

        if not any(spec in KNOWN for spec in config.eval.benchmarks):
            return
        root = shared_data_root(config.shared_data, near, required=False)
        config.eval.data_dir = str(root / "math") if root else None  # None: the benchmark check names the settings


def validate_config(raw: dict[str, Any], source: str) -> RunConfig:
    """A raw recipe dict as a RunConfig; a ConfigError naming `source` and the key otherwise."""
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source, raw)) from None


def _check_data(data: DataConfig, key: str, base: Path) -> None:
    src = data.source
    if src.startswith(("tiny:", "hf:")):
        if src.startswith("tiny:") and src != "tiny:arithmetic":
            raise ConfigError(f"key '{key}.source': unknown tiny-world task '{src}' (expected tiny:arithmetic)")
        return
    if is_target(src):
        try:
            import_function(src, "loader")
        except ConfigError as err:
            raise ConfigError(f"key '{key}.source': {err}") from None
        return
    if not Path(src).expanduser().exists():
        raise ConfigError(f"key '{key}.source': file not found: {src}")


def stage_reference(source: str) -> tuple[str, str] | None:
    """'stage:distill/sft' -> ('distill', 'sft'); None for any other source."""
    if not source.startswith("stage:"):
        return None
    name, _, data_set = source[len("stage:") :].partition("/")
    return name, data_set


def _check_stage_reference(source: str, key: str, earlier: dict[str, str]) -> None:
    name, data_set = stage_reference(source)  # type: ignore[misc]
    if earlier.get(name) not in DATA_STAGES:
        data_stages = [n for n, kind in earlier.items() if kind in DATA_STAGES]
        raise ConfigError(
            f"key '{key}.source': '{source}' names no earlier data stage '{name}' (earlier data stages: {', '.join(data_stages) or 'none'})"
        )
    if data_set not in DISTILL_SETS:
        raise ConfigError(f"key '{key}.source': '{source}': unknown set '{data_set}'; expected stage:{name}/ one of {', '.join(DISTILL_SETS)}")


def check_files(config: RunConfig, base: Path) -> None:
    """Missing files are config errors, found before any model is built."""
    earlier: dict[str, str] = {}
    for stage in config.stages:
        data = getattr(stage, "data", None)  # a synthesize stage has none: it reads the data of the rl stage before it
        if data is not None and stage_reference(data.source):
            _check_stage_reference(data.source, f"{stage.name}.data", earlier)
        elif data is not None:
            _check_data(data, f"{stage.name}.data", base)
        earlier[str(stage.name)] = stage.type
    _check_data(config.eval.data, "eval.data", base)
    if config.eval.benchmarks:  # names and files, before any model is built
        from rlkit.eval.benchmarks import resolve_benchmarks

        try:
            resolve_benchmarks(config.eval.benchmarks, config.eval.data_dir)
        except ConfigError as err:
            raise ConfigError(f"key 'eval.benchmarks': {err}") from None
    from rlkit.files import missing_model_dir

    if (problem := missing_model_dir(config.model.path)) is not None:
        raise ConfigError(f"key 'model.path': {problem}")
    check_rewards(config)


def check_rewards(config: RunConfig) -> None:
    """Each reward resolves to a function that takes its args, before any model is built: an unknown name,
    a missing file or function, or an argument the function does not take is an error naming the key."""
    from rlkit.scoring.registry import resolve_reward

    specs = [(f"rewards[{index}]", spec.name, spec.args) for index, spec in enumerate(config.rewards)]
    for key, name, args in [*specs, ("eval.reward", config.eval.reward, {})]:
        if ".py:" in name and not Path(name.rsplit(":", 1)[0]).expanduser().exists():
            raise ConfigError(f"key '{key}': reward file not found: {name.rsplit(':', 1)[0]} (from '{name}')")
        try:
            resolve_reward(name, args)
        except ConfigError as err:
            raise ConfigError(f"key '{key}': {err}") from None


def explain(config: RunConfig, key: str) -> str:
    """What a dotted key means: its help text, its schema default and the value `config` resolves it to.

    The first part is a section (`rollout.n`) or a stage name (`rl.algorithm.clip_high`), as in overrides."""
    parts = key.split(".")
    head = parts[0]
    if head in RunConfig.model_fields:
        node: Any = config
    else:
        try:
            node, parts = config.stage(head), parts[1:]
        except KeyError:
            names = ", ".join(str(s.name) for s in config.stages)
            raise ConfigError(f"--explain {key}: '{head}' is neither a config section nor a stage name (stages: {names})") from None
        if not parts:
            return f"{key}: stage of type '{node.type}'\n" + yaml.safe_dump(node.model_dump(mode="json"), sort_keys=False).rstrip()
    for index, part in enumerate(parts):
        fields = type(node).model_fields if isinstance(node, BaseModel) else {}
        if part not in fields:
            where = ".".join([*key.split(".")[: len(key.split(".")) - len(parts) + index]]) or "the top level"
            known = ", ".join(fields) or "none (not a section)"
            raise ConfigError(f"--explain {key}: no key '{part}' in {where} (keys: {known})")
        info, node = fields[part], getattr(node, part)
    default = "required" if info.is_required() else _inline_yaml(info.get_default(call_default_factory=True))
    return f"{key}: {info.description}\n  default: {default}\n  this recipe: {_inline_yaml(node)}"


def _inline_yaml(value: Any) -> str:
    """A value as it would be written in a recipe, on one line."""
    plain = TypeAdapter(Any).dump_python(value, mode="json")  # sections and lists of them become dicts
    return yaml.safe_dump(plain, sort_keys=False, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
