"""The Ray runtime: placement rules (no Ray needed), then on a local Ray instance with CPU actors:
a data-parallel learner group takes the same step as one learner on the whole batch, weights reach
the engines (in-process when colocated, over the gloo weight group when split, merged under LoRA),
a dead actor stops the run with its name and keeps the checkpoint, and the tiny quickstart with
runtime=ray still learns (slow)."""

import copy
import json
import math
import sys
import textwrap
from types import SimpleNamespace

import pytest
import torch

from rlkit.config import LoraConfig, RayConfig, RolloutConfig, RunConfig, load_config
from rlkit.errors import ConfigError
from rlkit.learner.base import pad_sequences
from rlkit.learner.torch_learner import TorchLearner
from rlkit.models import encode_prompt
from rlkit.runtime.placement import plan_layout
from rlkit.stages.sft import sft_loss
from rlkit.world.model import build_tiny_model
from rlkit.world.tokenizer import build_tiny_tokenizer

TOLERANCE = 1e-4  # per-token log-probability, fp32


# --------------------------------------------------------------------------- placement (default suite)
def test_colocated_layout_puts_one_engine_on_each_learner_rank():
    layout = plan_layout(RayConfig(train_gpus=4), RolloutConfig(), cluster_gpus=8, device="auto")
    assert layout.use_gpu and layout.rollout_workers == 4 and layout.gpus == 4
    assert layout.bundles() == [{"CPU": 1.0, "GPU": 1.0}] * 4


def test_split_layout_groups_rollout_gpus_by_tensor_parallel_size():
    layout = plan_layout(RayConfig(colocate=False, train_gpus=2, rollout_gpus=4), RolloutConfig(engine="vllm", tensor_parallel_size=2), 8, "auto")
    assert layout.rollout_workers == 2 and layout.gpus == 6
    assert layout.bundles()[2:] == [{"CPU": 1.0, "GPU": 2.0}] * 2 and layout.rollout_bundle(1) == 3


def test_cpu_cluster_runs_the_same_counts_as_cpu_actors():
    layout = plan_layout(RayConfig(colocate=False, train_gpus=2, rollout_gpus=1), RolloutConfig(), cluster_gpus=0, device="auto")
    assert not layout.use_gpu and layout.bundles() == [{"CPU": 1.0}] * 3 and layout.cpus == 4


@pytest.mark.parametrize(
    "ray, rollout, gpus, device, message",
    [
        (RayConfig(train_gpus=4), RolloutConfig(), 2, "auto", r"needs 4 GPUs, the Ray cluster has 2"),
        (RayConfig(), RolloutConfig(engine="vllm", tensor_parallel_size=2), 8, "auto", r"ray.colocate: false"),
        (RayConfig(colocate=False, rollout_gpus=3), RolloutConfig(engine="vllm", tensor_parallel_size=2), 8, "auto", r"'ray.rollout_gpus': 3 is not a multiple"),
        (RayConfig(colocate=False), RolloutConfig(tensor_parallel_size=2), 8, "auto", r"needs rollout.engine: vllm"),
        (RayConfig(train_gpus=0), RolloutConfig(), 8, "auto", r"'ray.train_gpus'"),
        (RayConfig(), RolloutConfig(), 0, "cuda", r"'device': 'cuda'.*no GPUs"),
    ],
)
def test_impossible_layouts_name_the_key(ray, rollout, gpus, device, message):
    with pytest.raises(ConfigError, match=message):
        plan_layout(ray, rollout, gpus, device)


# --------------------------------------------------------------------------- on a local Ray instance
def run_config(**ray) -> RunConfig:
    return RunConfig.model_validate(
        {"runtime": "ray", "threads": 1, "seed": 0, "ray": {"num_cpus": 4, **ray}, "stages": [{"type": "sft", "lr": 1e-2}]}
    )


def sft_batch():
    gen = torch.Generator().manual_seed(0)
    seqs = [torch.randint(4, 100, (n,), generator=gen).tolist() for n in (12, 9, 15, 7, 11, 10)]
    return pad_sequences(seqs, [4] * 6, pad_id=0)


def fixed_responses():
    tok = build_tiny_tokenizer()
    prompts = [encode_prompt(tok, [{"role": "user", "content": f"Compute {a}+{b}."}]) for a, b in ((12, 7), (40, 33))]
    response = tok("<think>\n12+7=19\n</think>\n\\boxed{19}", add_special_tokens=False)["input_ids"]
    return prompts, [response, response[:20]]


def learner_logprobs_of(learner, prompts, responses) -> list[torch.Tensor]:
    batch = pad_sequences([p + r for p, r in zip(prompts, responses)], [len(p) for p in prompts], 0)
    lp, _ = learner.logprobs(batch)
    return [lp[i, len(p) : len(p) + len(r)] for i, (p, r) in enumerate(zip(prompts, responses))]


def max_gap(engine_lps: list[list[float]], learner_lps: list[torch.Tensor]) -> float:
    return max(float((torch.tensor(e) - learner).abs().max()) for e, learner in zip(engine_lps, learner_lps))


@pytest.fixture
def runtime_factory():
    pytest.importorskip("ray")
    from rlkit.runtime.ray_runtime import RayRuntime

    started = []

    def start(config: RunConfig) -> "RayRuntime":
        started.append(RayRuntime(config))
        return started[-1]

    yield start
    for runtime in started:
        runtime.shutdown()


@pytest.mark.ray
def test_colocated_two_rank_learner_group_takes_the_single_learner_step_and_syncs_engines(runtime_factory):
    config = run_config(train_gpus=2)
    runtime = runtime_factory(config)
    model = build_tiny_model(seed=4)
    ctx = SimpleNamespace(model=model)
    engines = runtime.build_engine(ctx)
    group = runtime.build_learner(ctx, config.stages[0])
    single = TorchLearner(copy.deepcopy(model), config.learner, lr=1e-2, device=torch.device("cpu"))
    batch = sft_batch()

    mask = batch.attention_mask.bool()  # padding columns are not scored
    assert torch.allclose(group.logprobs(batch)[0][mask], single.logprobs(batch)[0][mask], atol=1e-6)
    for _ in range(2):  # each rank holds 3 of the 6 sequences; gradients are summed over the gloo group
        ours = group.train_step(batch, sft_loss(float(batch.loss_mask.sum())))
        theirs = single.train_step(batch, sft_loss(float(batch.loss_mask.sum())))
        assert ours["loss"] == pytest.approx(theirs["loss"], abs=1e-6)
        assert ours["grad_norm"] == pytest.approx(theirs["grad_norm"], rel=1e-5)
    pulled = dict(group.named_weights())
    # Adam steps of lr 1e-2: summation-order noise in the gradients shows up as ~1e-5 in the weights
    assert max(float((pulled[k] - v).abs().max()) for k, v in single.named_weights()) < 1e-4

    prompts, responses = fixed_responses()
    expected = learner_logprobs_of(single, prompts, responses)
    assert min(max_gap(e, expected) for e in engines.engine_logprobs(prompts, responses)) > 1e-2  # stale before the sync
    engines.update_weights(group.named_weights())  # in each actor: engine.update_weights(learner.named_weights())
    for engine_lps in engines.engine_logprobs(prompts, responses):
        assert max_gap(engine_lps, expected) < TOLERANCE


@pytest.mark.ray
def test_split_placement_broadcasts_merged_lora_weights_over_the_gloo_group(runtime_factory):
    config = run_config(colocate=False, train_gpus=1, rollout_gpus=2)
    config.learner.lora = LoraConfig(r=4, alpha=16, target_modules=["q_proj", "v_proj", "up_proj"])
    runtime = runtime_factory(config)
    model = build_tiny_model(seed=5)
    ctx = SimpleNamespace(model=model)
    engines = runtime.build_engine(ctx)
    group = runtime.build_learner(ctx, config.stages[0])
    local = TorchLearner(copy.deepcopy(model), config.learner, lr=1e-2, device=torch.device("cpu"))
    batch = sft_batch()
    for _ in range(2):
        group.train_step(batch, sft_loss(float(batch.loss_mask.sum())))
        local.train_step(batch, sft_loss(float(batch.loss_mask.sum())))
    engines.update_weights(group.named_weights())  # learner rank 0 -> both rollout workers, one broadcast per tensor
    prompts, responses = fixed_responses()
    expected = learner_logprobs_of(local, prompts, responses)
    gaps = [max_gap(e, expected) for e in engines.engine_logprobs(prompts, responses)]
    assert len(gaps) == 2 and max(gaps) < TOLERANCE
    reference = group.reference_policy()
    assert reference.kind == "adapter_disabled"
    ref_lp, _ = reference.logprobs(batch)
    base_lp, _ = TorchLearner(copy.deepcopy(model), run_config().learner, 1e-2, torch.device("cpu")).logprobs(batch)
    mask = batch.loss_mask.bool()
    assert torch.allclose(ref_lp[mask], base_lp[mask], atol=1e-5)


@pytest.mark.ray
def test_two_rank_dpo_step_keeps_pairs_on_one_rank_and_matches_one_learner(runtime_factory):
    """3 (chosen, rejected) pairs over 2 ranks: 2 pairs + 1 pair, never a split pair; the remote
    reference (a frozen copy on each rank) and the step equal one local learner's."""
    from rlkit.config import DPOStage
    from rlkit.stages.dpo import make_dpo_loss, preference_batch

    config = run_config(train_gpus=2)
    runtime = runtime_factory(config)
    model = build_tiny_model(seed=6)
    ctx = SimpleNamespace(model=model)
    runtime.build_engine(ctx)
    group = runtime.build_learner(ctx, config.stages[0])
    single = TorchLearner(copy.deepcopy(model), config.learner, lr=1e-2, device=torch.device("cpu"))
    pairs = [([5, 6, 7], [8, 9], [10]), ([11], [12, 13, 14], [15, 16]), ([17, 18], [19], [20, 21, 22])]
    batch = preference_batch(pairs, max_length=16, pad_id=0)
    reference = group.reference_policy()
    assert reference.kind == "frozen_copy"
    batch.ref_logprobs, _ = reference.logprobs(batch)
    loss_fn = make_dpo_loss(DPOStage(type="dpo", beta=0.1), num_pairs=3)
    for _ in range(2):  # the second step moves the policy away from the reference
        ours, theirs = group.train_step(batch, loss_fn), single.train_step(batch, loss_fn)
        assert ours["loss"] == pytest.approx(theirs["loss"], abs=1e-6)
        assert ours["grad_norm"] == pytest.approx(theirs["grad_norm"], rel=1e-5)
    assert ours["loss"] < math.log(2)


KILLER_REWARD = """
import os
CALLS = 0

def reward(completion, sample):
    global CALLS
    CALLS += 1
    if CALLS > {limit} and os.path.exists({marker!r}):  # the third RL step: the reward actor's process dies
        os._exit(3)
    return 0.0
"""


@pytest.mark.ray
@pytest.mark.slow
def test_dead_actor_stops_the_run_naming_it_and_resume_continues_from_the_checkpoint(tmp_path):
    pytest.importorskip("ray")
    from rlkit.runner import run_recipe
    from rlkit.runtime.groups import WorkerDied

    killer = tmp_path / "killer.py"
    marker = tmp_path / "armed"
    marker.write_text("")
    killer.write_text(KILLER_REWARD.format(limit=2 * 2 * 4, marker=str(marker)))  # 2 steps x 2 prompts x 4 samples
    recipe = tmp_path / "r.yaml"
    recipe.write_text(textwrap.dedent(f"""
        runtime: ray
        threads: 1
        ray: {{num_cpus: 2}}
        rollout: {{n: 4, max_new_tokens: 12}}
        rewards: [{{name: math}}, {{name: "{killer}:reward", weight: 0.0}}]
        checkpoint: {{every: 1}}
        eval: {{limit: 4}}
        stages: [{{type: rl, steps: 5, batch_size: 2}}]
    """))
    with pytest.raises(WorkerDied) as err:
        run_recipe(load_config(recipe), tmp_path / "run")
    message = str(err.value)
    assert "'rlkit-reward-pool' died" in message and "step-000002" in message and "--resume" in message
    assert (tmp_path / "run" / "stages" / "rl" / "checkpoints" / "step-000002" / "state.json").exists()

    marker.unlink()  # the fault is gone: --resume continues from step 2 on fresh actors
    summary = run_recipe(load_config(tmp_path / "run" / "config.yaml"), tmp_path / "run", resume=True)
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5] and "final_eval" in summary


@pytest.mark.ray
@pytest.mark.slow
def test_quickstart_on_ray_gains_15_points(tmp_path):
    pytest.importorskip("ray")
    from rlkit.runner import run_recipe

    summary = run_recipe(load_config("recipes/quickstart.yaml", ["runtime=ray"]), tmp_path / "run")
    before, after = summary["initial_eval"]["accuracy"], summary["final_eval"]["accuracy"]
    print(json.dumps({"ray_quickstart": {"before": before, "after": after, "wall_s": summary["wall_time_s"]}}), file=sys.stderr)
    assert after - before >= 0.15, (before, after)
