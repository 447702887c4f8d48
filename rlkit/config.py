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
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, field_validator

from rlkit.algos.schedules import linear_schedule
from rlkit.errors import ConfigError
from rlkit.world.categories import DEFAULT_MIX, check_mix


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# --------------------------------------------------------------------------- model, data
class ModelConfig(Section):
    path: str = Field("tiny", description="'tiny' builds the tiny-world model; else a HF id or a local directory.")
    tiny_size: Literal["tiny", "small"] = Field("tiny", description="shape of the tiny-world model when path='tiny'.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="parameter dtype of policy and engine.")
    chat_template: str | None = Field(None, description="override the tokenizer's chat template (Jinja).")


class DataConfig(Section):
    source: str = Field(
        "tiny:arithmetic",
        description="'tiny:arithmetic', a .jsonl/.parquet file, or 'hf:<dataset id>'.",
    )
    split: Literal["train", "test"] = Field("train", description="tiny-world split; files are used whole.")
    limit: int | None = Field(None, ge=1, description="use only the first N rows (of those `ids` picks, when given).")
    ids: list[str] | None = Field(None, min_length=1, description="use only the rows with these ids, in this order (e.g. the 1-shot example).")
    repeat: int = Field(1, ge=1, description="replicate the rows N times (1-shot RLVR replicates one example).")
    shuffle: bool = True
    template: str = Field("auto", description="prompt template: auto, tiny, plain, qwen_boxed, qwen25_math_cot, deepscaler, r1_think (rlkit/templates.py).")
    size: int = Field(4000, ge=1, description="number of tiny-world problems generated for this split.")
    unboxed_fraction: float = Field(
        0.0, ge=0.0, le=1.0,
        description="tiny world: fraction of teacher traces that end 'The answer is N.' instead of \\boxed{N} (a format habit for RL to remove).",
    )
    mix: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_MIX),
        description="tiny world: weight of each problem category (add2, add3, sub, mul1); a small weight makes a weak category on purpose. The default is the original world.",
    )

    @field_validator("mix")
    @classmethod
    def _known_categories(cls, mix: dict[str, float]) -> dict[str, float]:
        check_mix(mix)
        return mix


class SamplingConfig(Section):
    n: int = Field(8, ge=1, description="samples per prompt (the GRPO group size).")
    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_new_tokens: int = Field(64, ge=1)


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
    tensor_parallel_size: int = Field(1, ge=1)
    gpu_memory_utilization: float = Field(0.5, gt=0.0, le=1.0)
    static_cache: bool = Field(False, description="HF engine: static KV cache decode loop (CUDA graph + torch.compile on GPU).")


class RewardSpec(Section):
    name: str = Field(..., description="built-in name (math, format, length, ...), 'pkg.module:fn' or 'path/file.py:fn'.")
    weight: float = 1.0
    args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments bound to the reward.")


class RewardConfig(Section):
    workers: int = Field(0, ge=0, description="reward worker processes; 0 scores in the main process.")
    timeout: float = Field(10.0, gt=0, description="seconds per reward call before it scores 0.")


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
    retries: int = Field(3, ge=0, description="openai: retries of a failed request (connection error, timeout, 408/429/5xx) before it is recorded as failed and skipped.")
    backoff: float = Field(1.0, ge=0, description="openai: seconds before the first retry; doubled for each further retry.")
    timeout: float = Field(120.0, gt=0, description="openai: seconds per request.")
    slip_rate: float = Field(0.05, ge=0.0, le=1.0, description="tiny_teacher: probability that a column line slips, times the problem's difficulty.")


# --------------------------------------------------------------------------- learner / runtime
class LoraConfig(Section):
    r: int = Field(16, ge=1)
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] | str = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    stages: list[str] | None = Field(None, description="names of the stages that train an adapter; None = every stage, others train fully.")


class LearnerConfig(Section):
    backend: Literal["torch", "deepspeed"] = "torch"
    micro_batch_size: int = Field(64, ge=1, description="sequences per forward/backward pass.")
    max_grad_norm: float = Field(1.0, gt=0)
    weight_decay: float = 0.0
    gradient_checkpointing: bool = False
    zero_stage: Literal[2, 3] = 2
    lora: LoraConfig | None = None
    logprob_chunk_size: int = Field(0, ge=0, description="tokens per chunk of the fused LM-head logprobs/entropy (no fp32 logits kept for backward); 0 = plain, whole micro-batch.")
    compile: bool = Field(False, description="torch.compile the transformer body for the learner's forward/backward (CUDA only).")


class RayConfig(Section):
    address: str | None = Field(None, description="existing cluster address; None starts a local Ray instance.")
    colocate: bool = True
    rollout_gpus: int = Field(1, ge=0)
    train_gpus: int = Field(1, ge=0)
    num_cpus: int | None = None


class CheckpointConfig(Section):
    every: int = Field(50, ge=1, description="save a resumable checkpoint every N steps of a stage.")
    keep: int = Field(2, ge=1, description="number of step checkpoints kept per stage.")


class EvalConfig(Section):
    data: DataConfig = Field(default_factory=lambda: DataConfig(split="test", size=200, shuffle=False))
    limit: int | None = Field(None, ge=1)
    every: int = Field(0, ge=0, description="evaluate every N RL steps; 0 = only before and after.")
    benchmarks: list[str] = Field(default_factory=list, description="extra benchmarks evaluated periodically.")
    data_dir: str | None = None
    reward: str = Field("math", description="the correctness reward that defines accuracy.")
    max_new_tokens: int | None = None
    batch_size: int = Field(256, ge=1)


# --------------------------------------------------------------------------- stages
class AlgorithmConfig(Section):
    advantage: Literal["grpo", "dr_grpo", "rloo", "reinforce_pp", "gae"] = "grpo"
    normalize_std: bool = Field(True, description="GRPO: divide by the group std.")
    loss_agg: Literal["token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "seq_mean_token_sum_norm"] = "token_mean"
    clip_low: float = Field(0.2, ge=0)
    clip_high: float = Field(0.2, ge=0, description="DAPO clip-higher: set above clip_low.")
    dual_clip: float | None = Field(None, gt=1.0, description="dual-clip constant c (> 1) for negative advantages.")
    kl_coef: float = Field(0.0, ge=0)
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"
    kl_in_reward: bool = Field(False, description="apply KL as a reward penalty instead of a loss term.")
    kl_ratio_correction: bool = Field(
        False, description="loss-term KL times the importance ratio: the unbiased reverse-KL gradient (DeepSeek-V3.2; TRL's use_bias_correction_kl)."
    )
    entropy_coef: float = Field(0.0, description="signed: positive pushes entropy up (loss -= coef * entropy).")
    entropy_only: bool = Field(False, description="ignore the outcome reward; only the entropy term drives the update.")
    epochs: int = Field(1, ge=1, description="PPO epochs over each rollout batch.")
    mini_batches: int = Field(1, ge=1, description="optimizer steps per epoch.")
    gamma: float = 1.0
    lam: float = 0.95
    value_clip: float | None = 0.2
    critic_lr: float = 1e-5
    critic_warmup_steps: int = 0
    dynamic_sampling: bool = Field(False, description="DAPO: drop groups whose rewards are all equal.")
    max_sampling_rounds: int = Field(3, ge=1)
    overlong_filter: bool = Field(False, description="mask samples that hit max_new_tokens out of the loss.")
    rebalance: bool = Field(
        False,
        description="Phi-4-Mini-Reasoning: per group keep every correct sample and as many random incorrect ones; "
        "advantages over the kept samples (grpo, dr_grpo).",
    )


class StageBase(Section):
    name: str | None = Field(None, description="defaults to the stage type; overrides address stages by name.")
    data: DataConfig = Field(default_factory=DataConfig)
    steps: int = Field(100, ge=1)
    lr: float = Field(1e-5, gt=0)
    warmup_steps: int = Field(0, ge=0)
    batch_size: int = Field(16, ge=1, description="prompts (rl) or sequences (sft, dpo) per step.")


class SFTStage(StageBase):
    type: Literal["sft"]
    packing: bool = False
    max_length: int = Field(256, ge=8)


class LengthFilterConfig(Section):
    samples: int = Field(8, ge=2, description="responses sampled per prompt with the stage's starting policy.")
    max_spread: float = Field(
        ..., gt=0.0, description="keep prompts whose response lengths' coefficient of variation (std / mean) is at most this."
    )


class RLStage(StageBase):
    type: Literal["rl"]
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    length_filter: LengthFilterConfig | None = Field(
        None,
        description="Phi-4-Mini-Reasoning's prompt optimization: once before the stage, drop prompts whose sampled "
        "response lengths vary more than max_spread (logged as length_filter/kept and /dropped at step 0).",
    )


class DPOStage(StageBase):
    type: Literal["dpo"]
    beta: float = Field(0.1, gt=0)
    loss: Literal["sigmoid", "ipo"] = "sigmoid"
    max_length: int = Field(256, ge=8)


class RolloutDPOStage(DPOStage):
    type: Literal["rollout_dpo"]  # type: ignore[assignment]
    pair_selection: Literal["random", "first", "longest_rejected"] = "random"
    pairs_per_prompt: int = Field(1, ge=1)


class DistillStage(Section):
    """A data stage: teacher solutions -> SFT rows, DPO pairs and per-problem tags (no model is trained)."""

    type: Literal["distill"]
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

Stage = Annotated[SFTStage | RLStage | DPOStage | RolloutDPOStage | DistillStage, Field(discriminator="type")]


class RunConfig(Section):
    name: str = "run"
    seed: int = 0
    runtime: Literal["local", "ray"] = "local"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1, description="torch CPU threads; None leaves torch's default.")
    model: ModelConfig = Field(default_factory=ModelConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    rewards: list[RewardSpec] = Field(default_factory=lambda: [RewardSpec(name="math")])
    reward: RewardConfig = Field(default_factory=RewardConfig)
    learner: LearnerConfig = Field(default_factory=LearnerConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    stages: list[Stage] = Field(..., min_length=1)

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
    source = f"{path}" + (" (with overrides)" if overrides else "")
    try:
        config = RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source, raw)) from None
    check_files(config, base=path.parent)
    return config


def _check_data(data: DataConfig, key: str, base: Path) -> None:
    src = data.source
    if src.startswith(("tiny:", "hf:")):
        if src.startswith("tiny:") and src != "tiny:arithmetic":
            raise ConfigError(f"key '{key}.source': unknown tiny-world task '{src}' (expected tiny:arithmetic)")
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
        if stage_reference(stage.data.source):
            _check_stage_reference(stage.data.source, f"{stage.name}.data", earlier)
        else:
            _check_data(stage.data, f"{stage.name}.data", base)
        earlier[str(stage.name)] = stage.type
    _check_data(config.eval.data, "eval.data", base)
    if config.eval.benchmarks:  # names and files, before any model is built
        from rlkit.eval.benchmarks import resolve_benchmarks

        try:
            resolve_benchmarks(config.eval.benchmarks, config.eval.data_dir)
        except ConfigError as err:
            raise ConfigError(f"key 'eval.benchmarks': {err}") from None
    model = config.model.path
    if model != "tiny" and (model.startswith((".", "/", "~")) or model.endswith("/")) and not Path(model).expanduser().exists():
        raise ConfigError(f"key 'model.path': directory not found: {model}")
    for spec in config.rewards:
        if ".py:" in spec.name:
            file = spec.name.rsplit(":", 1)[0]
            if not Path(file).expanduser().exists():
                raise ConfigError(f"key 'rewards': reward file not found: {file} (from '{spec.name}')")


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
