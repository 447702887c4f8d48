"""The vLLM engine: n samples per prompt with token ids and sampling logprobs, weight updates from the
learner, and sleep/wake around the learner's step.

Weight updates take one of two paths:
- colocated (the engine lives in the learner's process, or a Ray actor that holds the weights):
  `update_weights(named_tensors)` calls the vLLM model's own `load_weights` in-process;
- split placement (engines on other GPUs or nodes): `init_weight_update_group(...)` once, then for each
  update the learner broadcasts (`rlkit.rollout.weight_group.broadcast_weights`) while every engine
  runs `receive_weights(names, dtypes, shapes)`. NCCL between GPUs, gloo on CPU.

The engine core runs in the caller's process (VLLM_ENABLE_V1_MULTIPROCESSING=0 unless set): an
in-process weight update is then a plain copy, and the caller needs no `if __name__ == "__main__"`
guard. With tensor_parallel_size > 1 vLLM still starts one worker process per GPU.

vLLM is imported only here and only when a recipe selects `rollout.engine: vllm`.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from rlkit.errors import ConfigError
from rlkit.rollout.base import Completion, SamplingParams
from rlkit.rollout.weight_group import open_weight_update_group, receive_weights

MIN_VLLM = "0.11.0"  # first release with every API used here (kv_cache_memory_bytes, logprobs_mode, worker_extension_cls)
TESTED_VLLM = "0.32.0"
INSTALL_HINT = "install it with `pip install 'rlkit[gpu]'` on a GPU machine, or `bash scripts/setup_vllm_venv.sh` (CPU build, .venv-vllm)"
CPU_KV_CACHE_BYTES = 512 << 20  # CPU only: vLLM otherwise sizes the KV cache from free RAM; 512 MiB holds 128k tiny-model tokens
FINISH_REASONS = {"stop": "stop", "length": "length"}
WORKER_EXTENSION = "rlkit.rollout.vllm_engine.WeightUpdateWorkerExtension"


def check_vllm_version(version: str, where: str = "") -> None:
    """Raise ConfigError unless `version` (vllm.__version__) is MIN_VLLM or newer; warn past the tested minor."""
    from packaging.version import InvalidVersion, Version

    found = f"found vLLM {version!r}" + (f" in {where}" if where else "")
    try:
        parsed = Version(version)
    except InvalidVersion:
        raise ConfigError(f"rollout.engine=vllm: cannot read the vLLM version ({found}); {INSTALL_HINT}") from None
    if parsed.release[:3] < Version(MIN_VLLM).release:
        raise ConfigError(
            f"rollout.engine=vllm needs vLLM >= {MIN_VLLM} (tested with {TESTED_VLLM}), {found}; upgrade: {INSTALL_HINT}"
        )
    if parsed.release[:2] > Version(TESTED_VLLM).release[:2]:
        warnings.warn(f"vLLM {version} is newer than the tested {TESTED_VLLM}; if the engine fails, pin vllm=={TESTED_VLLM}", stacklevel=2)


def import_vllm() -> Any:
    """Import vLLM after checking its version; errors say what to install."""
    # Set before vLLM reads them (at import and at engine start); a user's own setting wins.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    try:
        import vllm
    except ImportError as err:
        raise ConfigError(f"rollout.engine=vllm but vLLM cannot be imported ({err}); {INSTALL_HINT}") from None
    check_vllm_version(getattr(vllm, "__version__", "unknown"), where=str(Path(vllm.__file__).parent))
    return vllm


def vllm_sampling_params(vllm: Any, sampling: SamplingParams, stop_ids: list[int], seed: int | None) -> Any:
    """rlkit's SamplingParams as vLLM's. logprobs=0 returns the sampled token's logprob only."""
    return vllm.SamplingParams(
        n=sampling.n,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        max_tokens=sampling.max_new_tokens,
        seed=seed,
        logprobs=0,
        stop_token_ids=stop_ids,
        detokenize=False,  # rlkit decodes with its own tokenizer, as the HF engine does
    )


class WeightUpdateWorkerExtension:
    """Mixed into each vLLM worker (`worker_extension_cls`): the receiving end of split-placement sync.

    Runs inside vLLM's worker, where `self` is the worker (`self.rank`, `self.device`, `self.get_model()`).
    """

    def rlkit_init_weight_update_group(self, master_address: str, port: int, rank_offset: int, world_size: int, backend: str) -> int:
        rank = rank_offset + self.rank
        self._rlkit_weight_group = open_weight_update_group(master_address, port, rank, world_size, backend)
        return rank

    def rlkit_load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Load Hugging Face-named tensors into the running model.

        vLLM >= 0.12 has `reload_weights`, which also redoes the post-load processing (on CPU the
        linear layers repack their weights for oneDNN, after which a plain `model.load_weights`
        finds no `weight_loader` on them); older releases load through the model's `load_weights`.
        """
        if hasattr(self, "reload_weights"):
            self.reload_weights(weights_iterator=iter(named_tensors), is_checkpoint_format=True)
        else:
            self.get_model().load_weights(weights=iter(named_tensors))
        from vllm.platforms import current_platform

        if current_platform.is_cpu():
            repack_tied_cpu_layers(self.get_model())

    def rlkit_receive_weights(self, names: list[str], dtypes: list[str], shapes: list[list[int]]) -> None:
        group = getattr(self, "_rlkit_weight_group", None)
        if group is None:
            raise RuntimeError("receive_weights before init_weight_update_group")
        self.rlkit_load_weights(receive_weights(group, names, dtypes, shapes, self.device))


def repack_tied_cpu_layers(model: torch.nn.Module) -> int:
    """Redo the CPU weight packing of every layer that shares its weight with another (a tied LM head).

    On CPU vLLM packs each linear layer's weight into a oneDNN handle at load time. The in-place reload
    re-packs the layer it loads into (the embedding) but skips the tied LM head, whose handle would
    keep computing logits from the old weights. Returns the number of layers re-packed.
    """
    sharing: dict[int, list[torch.nn.Module]] = {}
    for module in model.modules():
        weight = module._parameters.get("weight")
        if weight is not None:
            sharing.setdefault(id(weight), []).append(module)
    repacked = 0
    for modules in sharing.values():
        if len(modules) < 2:
            continue
        for module in modules:
            method = getattr(module, "quant_method", None)
            if method is not None and hasattr(method, "process_weights_after_loading"):
                method.process_weights_after_loading(module)
                repacked += 1
    return repacked


class VLLMEngine:
    """A RolloutEngine backed by `vllm.LLM`, started from a Hugging Face model directory."""

    def __init__(
        self,
        model_dir: str | os.PathLike,
        tokenizer: Any,
        *,
        dtype: str = "float32",
        seed: int = 0,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.5,
        sleep_mode: bool = True,
        kv_cache_bytes: int | None = None,
        max_model_len: int | None = None,
    ):
        vllm = import_vllm()
        from vllm.platforms import current_platform

        self._vllm = vllm
        self.tokenizer = tokenizer
        self.stop_ids = [tokenizer.eos_token_id]
        self.on_cpu = current_platform.is_cpu()
        # Sleep mode needs vLLM's CUDA memory pool; on CPU vLLM refuses it at start, so it stays off there.
        self.sleep_mode = bool(sleep_mode) and current_platform.is_sleep_mode_available()
        if sleep_mode and not self.sleep_mode:
            warnings.warn(
                f"vLLM sleep mode is not available on the {current_platform.device_type} platform: "
                "sleep()/wake() do nothing and the engine keeps its memory while the learner trains",
                stacklevel=2,
            )
        if kv_cache_bytes is None and self.on_cpu and "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
            kv_cache_bytes = CPU_KV_CACHE_BYTES
        self.llm = vllm.LLM(
            model=str(model_dir),
            tokenizer=str(model_dir),
            dtype=dtype,
            seed=seed,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            enable_sleep_mode=self.sleep_mode,
            kv_cache_memory_bytes=kv_cache_bytes,
            max_model_len=max_model_len,
            # Logprobs after temperature/top-p, as the HF engine records them: the probability the token was drawn with.
            logprobs_mode="processed_logprobs",
            worker_extension_cls=WORKER_EXTENSION,
            # CPU: no graph capture or compilation (start-up in seconds, and nothing to re-capture after a weight update).
            enforce_eager=self.on_cpu,
            compilation_config=0 if self.on_cpu else None,
        )
        # The engine core and its one worker live in this process (no worker processes to pickle for).
        self.in_process = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0" and tensor_parallel_size == 1
        self.asleep = False
        self._weights_awake = False
        self._owned_dir: tempfile.TemporaryDirectory | None = None

    @classmethod
    def from_config(cls, config: Any, tokenizer: Any, model: torch.nn.Module | None = None) -> VLLMEngine:
        """The engine for a RunConfig. `model` (the current policy) is written to a temporary directory
        that vLLM starts from; without it vLLM loads `model.path` (the tiny world's model is built first)."""
        owned = None
        if model is None and config.model.path != "tiny":
            model_dir = config.model.path
        else:
            if model is None:
                from rlkit.models import load_model

                model = load_model(config.model, seed=config.seed)
            owned = tempfile.TemporaryDirectory(prefix="rlkit-vllm-")
            model_dir = owned.name
            save_policy(model, tokenizer, model_dir)
        engine = cls(
            model_dir,
            tokenizer,
            dtype=config.model.dtype,
            seed=config.seed,
            tensor_parallel_size=config.rollout.tensor_parallel_size,
            gpu_memory_utilization=config.rollout.gpu_memory_utilization,
            sleep_mode=config.ray.colocate,
        )
        engine._owned_dir = owned
        return engine

    # ------------------------------------------------------------------ generation
    def generate(self, prompts: list[list[int]], sampling: SamplingParams) -> list[Completion]:
        """`sampling.n` completions per prompt, grouped by prompt in order."""
        self._ensure_awake("generate")
        # One seed per prompt, n apart: vLLM gives sample j of a request seed + j, and prompts that
        # repeat (1-shot RLVR) must still draw different samples.
        params = [
            vllm_sampling_params(self._vllm, sampling, self.stop_ids, None if sampling.seed is None else sampling.seed + i * sampling.n)
            for i in range(len(prompts))
        ]
        outputs = self.llm.generate([{"prompt_token_ids": list(p)} for p in prompts], params, use_tqdm=False)
        completions = []
        for index, (prompt, output) in enumerate(zip(prompts, outputs)):
            for sample in output.outputs:
                completions.append(self._completion(index, prompt, sample))
        return completions

    def _completion(self, index: int, prompt: list[int], sample: Any) -> Completion:
        tokens = list(sample.token_ids)
        if sample.logprobs is None or len(sample.logprobs) != len(tokens):
            raise RuntimeError(f"vLLM returned {len(sample.logprobs or [])} logprobs for {len(tokens)} tokens (prompt {index})")
        finish = FINISH_REASONS.get(sample.finish_reason)
        if finish is None:
            raise RuntimeError(f"vLLM finished prompt {index} with reason {sample.finish_reason!r} (expected stop or length)")
        return Completion(
            prompt_index=index,
            prompt_ids=list(prompt),
            response_ids=tokens,
            logprobs=[float(step[token].logprob) for step, token in zip(sample.logprobs, tokens)],
            text=self.tokenizer.decode(tokens, skip_special_tokens=True),
            finish_reason=finish,
        )

    def score(self, prompts: list[list[int]], responses: list[list[int]]) -> list[list[float]]:
        """log p(response token | everything before it) for given (prompt, response) pairs, as the engine
        computes it; for checking the engine against the learner and for engine-side reference logprobs."""
        self._ensure_awake("score")
        params = self._vllm.SamplingParams(max_tokens=1, prompt_logprobs=0, detokenize=False)
        requests = [{"prompt_token_ids": list(p) + list(r)} for p, r in zip(prompts, responses)]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        scores = []
        for prompt, response, output in zip(prompts, responses, outputs):
            per_position = output.prompt_logprobs[len(prompt) :]
            scores.append([float(step[token].logprob) for step, token in zip(per_position, response)])
        return scores

    # ------------------------------------------------------------------ weights
    @torch.no_grad()
    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """In-process: vLLM's loader takes Hugging Face names (it stacks q/k/v and gate/up itself) and
        copies each tensor into its parameters, converting dtype and device."""
        if self.asleep and not self._weights_awake:
            self.llm.wake_up(tags=["weights"])  # weights back, KV cache stays freed until wake()
            self._weights_awake = True
        tensors = ((name, tensor.detach()) for name, tensor in named_tensors)
        # In-process the worker consumes the iterator as it loads, so a ZeRO-3 learner's gathered tensors
        # are taken one at a time; worker processes (tensor parallel) need a list they get pickled.
        self.llm.collective_rpc("rlkit_load_weights", args=(tensors if self.in_process else list(tensors),))
        self._after_weight_update()

    def init_weight_update_group(self, master_address: str, port: int, rank_offset: int, world_size: int, backend: str = "nccl") -> list[int]:
        """Join the learner's weight update group (split placement); returns the ranks of this engine's workers.
        Blocks until every rank joined: the learner opens its side (`open_weight_update_group`, rank 0) concurrently."""
        return self.llm.collective_rpc("rlkit_init_weight_update_group", args=(master_address, port, rank_offset, world_size, backend))

    def receive_weights(self, names: list[str], dtypes: list[str], shapes: list[list[int]]) -> None:
        """Receive one broadcast of the named tensors (the learner runs `broadcast_weights` at the same time)."""
        if self.asleep and not self._weights_awake:
            self.llm.wake_up(tags=["weights"])
            self._weights_awake = True
        self.llm.collective_rpc("rlkit_receive_weights", args=(list(names), [str(d).removeprefix("torch.") for d in dtypes], [list(s) for s in shapes]))
        self._after_weight_update()

    def _after_weight_update(self) -> None:
        # The prefix cache holds KV computed with the old weights; reusing it would mix policies.
        if not self.asleep:
            self.llm.reset_prefix_cache()

    # ------------------------------------------------------------------ memory
    def sleep(self) -> None:
        """Free accelerator memory while the learner trains: weights go to host memory, the KV cache is dropped.
        A no-op where vLLM has no sleep mode (CPU)."""
        if not self.sleep_mode or self.asleep:
            return
        self.llm.sleep(level=1)
        self.asleep, self._weights_awake = True, False

    def wake(self) -> None:
        if not self.asleep:
            return
        self.llm.wake_up()  # what is still asleep (the KV cache alone after a weight update)
        self.asleep, self._weights_awake = False, False
        self.llm.reset_prefix_cache()

    def _ensure_awake(self, what: str) -> None:
        if self.asleep:
            raise RuntimeError(f"VLLMEngine.{what} while asleep: call wake() first")

    def close(self) -> None:
        """Stop the engine and remove the temporary model directory it was started from."""
        llm = getattr(self, "llm", None)
        if llm is not None:
            self.llm = None
            engine = getattr(llm, "llm_engine", None)
            shutdown = getattr(getattr(engine, "engine_core", None), "shutdown", None)
            if callable(shutdown):
                shutdown()
            del llm
        if self._owned_dir is not None:
            self._owned_dir.cleanup()
            self._owned_dir = None


def save_policy(model: torch.nn.Module, tokenizer: Any, directory: str | os.PathLike) -> None:
    """Write the policy as a plain Hugging Face directory vLLM can start from (merged, if it carries LoRA)."""
    adapted = [name for name, _ in model.named_parameters() if ".lora_" in name or ".base_layer." in name]
    if adapted:  # LoRA layers injected: vLLM needs plain names, the merged weights come with update_weights
        raise ValueError(
            f"the policy carries LoRA layers ({adapted[0]}); start vLLM from the base model and push "
            "merged weights with update_weights(learner.named_weights())"
        )
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
