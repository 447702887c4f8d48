"""The DeepSpeed learner on DeepSpeed's CPU accelerator (gloo): ZeRO-2 and ZeRO-3 take the same
steps as the plain torch learner, gradient accumulation over micro-batches changes nothing,
ZeRO-3 shards are gathered for the weight sync, checkpoints restore, LoRA works; and the tiny
quickstart with learner.backend=deepspeed still learns (slow)."""

import copy
import json

import pytest
import torch

pytest.importorskip("deepspeed")

from rlkit.config import LearnerConfig, LoraConfig
from rlkit.learner.base import pad_sequences
from rlkit.learner.deepspeed_learner import DeepSpeedLearner, deepspeed_config
from rlkit.learner.torch_learner import TorchLearner
from rlkit.stages.sft import sft_loss
from rlkit.world.model import build_tiny_model

pytestmark = pytest.mark.deepspeed
CPU = torch.device("cpu")
TOL = 1e-4  # fp32; DeepSpeed's flattened AdamW differs from torch's in the last bits only


def batch_of():
    gen = torch.Generator().manual_seed(0)
    seqs = [torch.randint(4, 100, (n,), generator=gen).tolist() for n in (12, 9, 15, 7, 11)]
    return pad_sequences(seqs, [4] * 5, pad_id=0)


def run_steps(learner, steps: int = 2) -> list[dict]:
    batch = batch_of()
    return [learner.train_step(batch, sft_loss(float(batch.loss_mask.sum()))) for _ in range(steps)]


def max_weight_gap(a, b) -> float:
    wa = {k: v.clone() for k, v in a.named_weights()}
    wb = {k: v.clone() for k, v in b.named_weights()}
    assert sorted(wa) == sorted(wb)
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_stage_matches_the_torch_learner(stage):
    base = build_tiny_model(seed=2)
    torch_learner = TorchLearner(copy.deepcopy(base), LearnerConfig(micro_batch_size=2), lr=1e-3, device=CPU)
    ds = DeepSpeedLearner(copy.deepcopy(base), LearnerConfig(micro_batch_size=2, zero_stage=stage), lr=1e-3, device=CPU)
    lp_t, _ = torch_learner.logprobs(batch_of())
    lp_d, _ = ds.logprobs(batch_of())
    assert torch.allclose(lp_t, lp_d, atol=1e-6)
    for mt, md in zip(run_steps(torch_learner), run_steps(ds)):
        assert md["loss"] == pytest.approx(mt["loss"], abs=1e-6)
        assert md["grad_norm"] == pytest.approx(mt["grad_norm"], rel=1e-4)
    gap = max_weight_gap(torch_learner, ds)
    assert gap < TOL
    if stage == 3:  # the module's own parameters are shards; named_weights gathered them whole
        partitioned = [p for p in ds.policy.parameters() if p.numel() == 0 or getattr(p, "ds_status", None) is not None]
        assert partitioned


@pytest.mark.parametrize("stage", [2, 3])
def test_head_on_the_loss_mask_only_gives_the_same_step(stage):
    """learner.head_loss_mask_only against the head over every position: the same losses and steps."""
    base = build_tiny_model(seed=2)
    masked = DeepSpeedLearner(copy.deepcopy(base), LearnerConfig(micro_batch_size=2, zero_stage=stage, head_loss_mask_only=True),
                              lr=1e-3, device=CPU)
    every = DeepSpeedLearner(copy.deepcopy(base), LearnerConfig(micro_batch_size=2, zero_stage=stage, head_loss_mask_only=False),
                             lr=1e-3, device=CPU)
    batch = batch_of()
    outside = {}

    def recording(name):  # sft_loss, noting whether the logprobs outside the loss mask reached it as 0
        def loss_fn(micro, logprobs, entropy):
            outside.setdefault(name, []).append(bool((logprobs[micro.loss_mask == 0] == 0).all()))
            return sft_loss(float(batch.loss_mask.sum()))(micro, logprobs, entropy)
        return loss_fn

    for _ in range(2):
        mm, me = masked.train_step(batch, recording("masked")), every.train_step(batch, recording("every"))
        assert mm["loss"] == pytest.approx(me["loss"], abs=1e-6)
        assert mm["grad_norm"] == pytest.approx(me["grad_norm"], rel=1e-5)
    assert all(outside["masked"]) and not any(outside["every"])  # the prompt's columns were skipped, or scored
    assert max_weight_gap(masked, every) < TOL


def test_gradient_accumulation_over_micro_batches_gives_the_same_step():
    base = build_tiny_model(seed=2)
    one_pass = DeepSpeedLearner(copy.deepcopy(base), LearnerConfig(micro_batch_size=8), lr=1e-3, device=CPU)
    accumulated = DeepSpeedLearner(copy.deepcopy(base), LearnerConfig(micro_batch_size=2), lr=1e-3, device=CPU)
    run_steps(one_pass, 1)
    run_steps(accumulated, 1)
    assert max_weight_gap(one_pass, accumulated) < TOL


def test_dpo_pairs_stay_whole_in_micro_batches():
    """3 pairs with micro_batch_size 3 -> 2 micro-batches of 4 + 2 rows (never 3 + 3): same step as one pass."""
    from rlkit.config import DPOStage
    from rlkit.stages.dpo import make_dpo_loss, preference_batch

    base = build_tiny_model(seed=3)
    batch = preference_batch([([5, 6, 7], [8, 9], [10]), ([11], [12, 13, 14], [15, 16]), ([17, 18], [19], [20, 21, 22])], 16, 0)
    batch.ref_logprobs = torch.zeros(batch.input_ids.shape)
    loss_fn = make_dpo_loss(DPOStage(type="dpo", beta=0.1), num_pairs=3)
    split = DeepSpeedLearner(copy.deepcopy(base), LearnerConfig(micro_batch_size=3), lr=1e-3, device=CPU)
    whole = DeepSpeedLearner(copy.deepcopy(base), LearnerConfig(micro_batch_size=6), lr=1e-3, device=CPU)
    assert split.train_step(batch, loss_fn)["loss"] == pytest.approx(whole.train_step(batch, loss_fn)["loss"], abs=1e-6)
    assert max_weight_gap(split, whole) < TOL


def test_checkpoint_round_trip_restores_weights_optimizer_and_step(tmp_path):
    base = build_tiny_model(seed=2)
    learner = DeepSpeedLearner(copy.deepcopy(base), LearnerConfig(micro_batch_size=4), lr=1e-3, device=CPU)
    run_steps(learner, 1)
    learner.save(tmp_path)
    after_two = DeepSpeedLearner(copy.deepcopy(base), LearnerConfig(micro_batch_size=4), lr=1e-3, device=CPU)
    after_two.load(tmp_path)
    assert after_two.steps == 1 and max_weight_gap(learner, after_two) == 0.0
    run_steps(learner, 1)
    run_steps(after_two, 1)  # same optimizer moments: the same second step
    assert max_weight_gap(learner, after_two) < 1e-6


def test_lora_under_zero3_trains_only_adapters_and_saves_only_them(tmp_path):
    lora = LoraConfig(r=4, alpha=8, target_modules=["q_proj", "v_proj"])
    base = build_tiny_model(seed=2)
    torch_learner = TorchLearner(copy.deepcopy(base), LearnerConfig(micro_batch_size=2, lora=lora), lr=1e-2, device=CPU)
    ds = DeepSpeedLearner(copy.deepcopy(base), LearnerConfig(micro_batch_size=2, zero_stage=3, lora=lora), lr=1e-2, device=CPU)
    run_steps(torch_learner)
    run_steps(ds)
    assert max_weight_gap(torch_learner, ds) < TOL  # merged weights, gathered from ZeRO-3 shards
    assert ds.reference_policy().kind == "adapter_disabled"
    ds.save(tmp_path)
    model_bytes = sum(p.numel() * p.element_size() for p in base.parameters())
    saved_bytes = sum(f.stat().st_size for f in (tmp_path / "deepspeed").iterdir())
    assert saved_bytes < 0.1 * model_bytes  # adapters and their optimizer state, no frozen base weights
    restored = DeepSpeedLearner(copy.deepcopy(base), LearnerConfig(micro_batch_size=2, zero_stage=3, lora=lora), lr=1e-2, device=CPU)
    restored.load(tmp_path)
    assert max_weight_gap(restored, ds) < 1e-6


def test_sft_packed_rows_attend_by_their_boundaries(monkeypatch):
    """SFT packing under ZeRO-2: with the varlen path on (its CPU loop standing in for torch's CUDA op) every layer's
    attention gets the rows' boundaries, and the steps equal the mask path's."""
    from rlkit.learner import varlen_attention
    from rlkit.stages.sft import pack_sequences

    gen = torch.Generator().manual_seed(1)
    seqs = [torch.randint(4, 100, (n,), generator=gen).tolist() for n in (12, 9, 15, 7, 11, 14, 5)]
    batch = pack_sequences(seqs, [4] * len(seqs), max_length=24, pad_id=0)
    calls = []
    loop = varlen_attention._causal_loop
    monkeypatch.setattr(varlen_attention, "_causal_loop", lambda *args: calls.append(1) or loop(*args))
    base = build_tiny_model(seed=2)
    mask = DeepSpeedLearner(copy.deepcopy(base), LearnerConfig(micro_batch_size=2), lr=1e-3, device=CPU)
    varlen = DeepSpeedLearner(copy.deepcopy(base), LearnerConfig(micro_batch_size=2, packed_attention="varlen"), lr=1e-3,
                              device=CPU)
    assert not varlen.varlen  # CPU: torch's op cannot serve; the test turns the path on with the loop
    varlen.varlen = True
    varlen_attention.install(varlen.policy)
    loss = sft_loss(float(batch.loss_mask.sum()))
    for _ in range(2):
        mm, mv = mask.train_step(batch, loss), varlen.train_step(batch, loss)
        assert mv["loss"] == pytest.approx(mm["loss"], abs=1e-6) and mv["grad_norm"] == pytest.approx(mm["grad_norm"], rel=1e-5)
    layers, micro_batches = base.config.num_hidden_layers, -(-len(batch) // 2)
    assert len(calls) == 2 * layers * micro_batches
    assert max_weight_gap(mask, varlen) < TOL


def test_config_follows_the_recipe():
    cfg = deepspeed_config(LearnerConfig(micro_batch_size=4, zero_stage=3, max_grad_norm=0.5), world_size=2, bf16=True)
    assert cfg["zero_optimization"]["stage"] == 3 and cfg["gradient_clipping"] == 0.5
    assert cfg["bf16"]["enabled"] and cfg["train_batch_size"] == 8


@pytest.mark.slow
def test_quickstart_with_deepspeed_learner_gains_15_points(tmp_path):
    from rlkit.config import load_config
    from rlkit.runner import run_recipe

    summary = run_recipe(load_config("recipes/quickstart.yaml", ["learner.backend=deepspeed"]), tmp_path / "run")
    before, after = summary["initial_eval"]["accuracy"], summary["final_eval"]["accuracy"]
    print(json.dumps({"deepspeed_quickstart": {"before": before, "after": after, "wall_s": summary["wall_time_s"]}}))
    assert after - before >= 0.15, (before, after)
