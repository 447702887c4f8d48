"""LoRA on the torch learner: only adapters train and are saved, the engine gets merged HF-named
weights, and the KL reference is the same module with the adapter off."""

import copy
import json

import pytest
import torch
from safetensors.torch import load_file

from rlkit.config import LearnerConfig, LoraConfig, load_config
from rlkit.learner.base import pad_sequences
from rlkit.learner.logprobs import sequence_logprobs
from rlkit.learner.torch_learner import TorchLearner
from rlkit.stages.sft import sft_loss
from rlkit.world.model import build_tiny_model

CPU = torch.device("cpu")
LORA = LoraConfig(r=4, alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])


def batch_of(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    seqs = [torch.randint(4, 100, (n,), generator=gen).tolist() for n in (14, 9, 17, 11)]
    return pad_sequences(seqs, [5] * 4, pad_id=0)


def trained_lora_learner(steps: int = 2):
    base = build_tiny_model(seed=1)
    learner = TorchLearner(base, LearnerConfig(micro_batch_size=2, lora=LORA), lr=5e-2, device=CPU)
    batch = batch_of()
    for _ in range(steps):
        learner.train_step(batch, sft_loss(float(batch.loss_mask.sum())))
    return base, learner, batch


def test_only_adapter_parameters_train_and_the_shared_model_is_untouched():
    base = build_tiny_model(seed=1)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    learner = TorchLearner(base, LearnerConfig(micro_batch_size=2, lora=LORA), lr=5e-2, device=CPU)
    trainable = {n: p.numel() for n, p in learner.model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    # r x (in + out) per adapted Linear: q (128->128), v (128->128, 2 heads x 64), down (512->128); 4 layers
    assert sum(trainable.values()) == 4 * 4 * ((128 + 128) + (128 + 128) + (512 + 128))
    batch = batch_of()
    learner.train_step(batch, sft_loss(float(batch.loss_mask.sum())))
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())  # the engine's model is not trained in place


def test_merged_weights_have_hf_names_and_match_base_plus_scaled_product():
    base, learner, batch = trained_lora_learner()
    merged = dict(learner.named_weights())
    assert sorted(merged) == sorted(name for name, _ in base.named_parameters())
    layer = learner.model.model.layers[0].self_attn.q_proj
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    expected = base.model.layers[0].self_attn.q_proj.weight + (LORA.alpha / LORA.r) * (b @ a)  # by hand
    assert torch.allclose(merged["model.layers.0.self_attn.q_proj.weight"], expected, atol=1e-6)
    assert not torch.equal(expected, base.model.layers[0].self_attn.q_proj.weight)  # the adapter did train
    assert torch.equal(merged["model.layers.0.self_attn.k_proj.weight"], base.model.layers[0].self_attn.k_proj.weight)
    # a plain model loaded with the merged weights computes what the adapted learner computes
    plain = copy.deepcopy(base)
    plain.load_state_dict(merged, strict=False)
    with torch.no_grad():
        expected_lp, _ = sequence_logprobs(plain, batch.input_ids, batch.attention_mask)
    learner_lp, _ = learner.logprobs(batch)
    mask = batch.loss_mask.bool()
    assert (expected_lp - learner_lp)[mask].abs().max() < 1e-5


def test_reference_is_the_base_model_with_the_adapter_disabled():
    base, learner, batch = trained_lora_learner()
    reference = learner.reference_policy()
    assert reference.kind == "adapter_disabled"
    ref_lp, _ = reference.logprobs(batch)
    with torch.no_grad():
        base_lp, _ = sequence_logprobs(base, batch.input_ids, batch.attention_mask)
    policy_lp, _ = learner.logprobs(batch)
    mask = batch.loss_mask.bool()
    assert (ref_lp - base_lp)[mask].abs().max() < 1e-5
    assert (policy_lp - base_lp)[mask].abs().max() > 1e-2  # the adapter is back on afterwards


def test_checkpoint_holds_only_the_adapter_and_restores_it(tmp_path):
    base, learner, batch = trained_lora_learner()
    learner.save(tmp_path)
    assert not (tmp_path / "model").exists()
    saved = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert saved and all("lora_" in k for k in saved)
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["r"] == LORA.r
    expected, _ = learner.logprobs(batch)
    fresh = TorchLearner(base, LearnerConfig(micro_batch_size=2, lora=LORA), lr=5e-2, device=CPU)
    fresh.load(tmp_path)
    restored, _ = fresh.logprobs(batch)
    assert torch.allclose(restored, expected, atol=1e-6)
    assert fresh.steps == learner.steps == 2


def test_loading_a_full_checkpoint_into_a_lora_learner_names_the_problem(tmp_path):
    full = TorchLearner(build_tiny_model(), LearnerConfig(), lr=1e-3, device=CPU)
    full.save(tmp_path)
    lora = TorchLearner(build_tiny_model(), LearnerConfig(lora=LORA), lr=1e-3, device=CPU)
    with pytest.raises(RuntimeError, match="holds no LoRA adapter"):
        lora.load(tmp_path)


def test_unknown_target_module_is_reported_with_the_key():
    config = LearnerConfig(lora=LoraConfig(target_modules=["qkv_proj"]))
    with pytest.raises(ValueError, match=r"learner.lora.target_modules=\['qkv_proj'\].*q_proj"):
        TorchLearner(build_tiny_model(), config, lr=1e-3, device=CPU)


def test_lora_recipe_key_validates(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages: [{type: rl, steps: 1}]\nlearner: {lora: {r: 8, alpha: 16, target_modules: [q_proj]}}\n")
    assert load_config(recipe).learner.lora.r == 8
    with pytest.raises(Exception, match=r"learner\.lora\.rank"):
        load_config(recipe, ["learner.lora.rank=4"])


def test_lora_stages_limits_adapters_to_the_named_stages():
    from rlkit.learner.lora import learner_for_stage

    config = LearnerConfig(lora=LoraConfig(stages=["rl"]))
    assert learner_for_stage(config, "rl").lora is not None
    assert learner_for_stage(config, "sft").lora is None  # full fine-tuning there
    assert learner_for_stage(LearnerConfig(lora=LoraConfig()), "sft").lora is not None  # default: every stage
