"""LoRA through peft, shared by both learners.

Only the adapter trains and is checkpointed. The rollout engine never sees adapters: it
receives the *merged* weights (base + scale * B @ A) under the plain Hugging Face names, so
any engine that loads a full model (HF, vLLM) takes them unchanged. The KL reference is the
same module with the adapter disabled, not a second copy of the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch

from rlkit.config import LearnerConfig, LoraConfig

ADAPTER_DIR = "adapter"
BASE_LAYER = ".base_layer"


def apply_lora(model: torch.nn.Module, lora: LoraConfig, seed: int = 0):  # noqa: ANN201 - returns a peft PeftModel
    """Inject LoRA adapters into `model` (in place) and freeze everything else.

    The adapters' random initialization is seeded, so every data-parallel rank starts from the
    same adapter (and a resumed run from the same one as the original)."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    targets = lora.target_modules
    peft_config = PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            peft_model = get_peft_model(model, peft_config)
    except ValueError as err:  # peft names the missing module; add the key the user wrote
        names = sorted({name.rsplit(".", 1)[-1] for name, _ in model.named_modules() if name})
        raise ValueError(f"learner.lora.target_modules={targets!r}: {err}. Module names in this model: {', '.join(names)}") from None
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in peft_model.parameters())
    print(f"LoRA r={lora.r} alpha={lora.alpha} on {targets}: {trainable:,} of {total:,} parameters train", flush=True)
    return peft_model


def lora_layers(base_model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Module path -> peft LoRA layer, for every adapted module of the (injected) base model."""
    from peft.tuners.lora import LoraLayer

    return {name: module for name, module in base_model.named_modules() if isinstance(module, LoraLayer)}


def learner_for_stage(learner: LearnerConfig, stage_name: str) -> LearnerConfig:
    """The learner config a stage trains with: without LoRA when `learner.lora.stages` leaves it out."""
    if learner.lora is None or learner.lora.stages is None or stage_name in learner.lora.stages:
        return learner
    return learner.model_copy(update={"lora": None})


GatherFn = Callable[[list[torch.nn.Parameter]], AbstractContextManager]


def merged_named_weights(peft_model, gather: GatherFn | None = None) -> Iterator[tuple[str, torch.Tensor]]:  # noqa: ANN001
    """Full policy weights with Hugging Face names, each adapted Linear merged (W + delta).

    Adapter tensors are not yielded. `gather(params)` is a context that makes the listed
    parameters whole (DeepSpeed ZeRO-3); tensors are yielded while it is open, so consumers
    copy them before asking for the next one. Tied weights appear once, as in `named_parameters`.
    """
    gather = gather or (lambda params: nullcontext())
    base = peft_model.get_base_model()
    layers = lora_layers(base)
    adapter = peft_model.active_adapter
    for name, param in base.named_parameters():
        if ".lora_" in name:
            continue
        owner, _, leaf = name.rpartition(".")
        if owner.endswith(BASE_LAYER):  # the wrapped Linear's own weight or bias
            layer_name = owner[: -len(BASE_LAYER)]
            layer = layers[layer_name]
            plain_name = f"{layer_name}.{leaf}"
            if leaf != "weight" or adapter not in layer.lora_A:
                with gather([param]):
                    yield plain_name, param.detach()
                continue
            adapter_params = [layer.lora_A[adapter].weight, layer.lora_B[adapter].weight]
            with gather([param, *adapter_params]):
                delta = layer.get_delta_weight(adapter)
                yield plain_name, (param.detach() + delta.to(param.dtype)).detach()
        else:
            with gather([param]):
                yield name, param.detach()


def save_adapter(peft_model, directory: Path) -> None:  # noqa: ANN001
    """Adapter weights and config only (a few MB), in peft's own format."""
    peft_model.save_pretrained(Path(directory) / ADAPTER_DIR)


def load_adapter(peft_model, directory: Path, device: torch.device | str = "cpu") -> None:  # noqa: ANN001
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    path = Path(directory) / ADAPTER_DIR / "adapter_model.safetensors"
    if not path.is_file():
        raise RuntimeError(f"checkpoint {directory} holds no LoRA adapter ({path} is missing); was it saved without learner.lora?")
    result = set_peft_model_state_dict(peft_model, load_file(str(path), device=str(device)))
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise RuntimeError(f"adapter in {path} does not match learner.lora: unexpected keys {unexpected[:3]}")
