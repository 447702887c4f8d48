"""Algorithms end to end on the tiny world.

Fast: SFT packing (layout, and packed log-probabilities equal unpacked ones), and one RL step per
estimator / option with the tiny model and a real reward plug-in, checking what each option must do.
Slow: the tiny twins in recipes/tiny/, each from one shared SFT'd model (conftest.py's quickstart_sft), must show their effect.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rlkit.config import RunConfig, load_config
from rlkit.data import PromptStream, load_samples
from rlkit.learner.base import pad_sequences
from rlkit.learner.logprobs import sequence_logprobs
from rlkit.models import load_model, load_tokenizer
from rlkit.stages.rl import build_rl_parts, rl_step
from rlkit.stages.sft import pack_sequences
from tests.conftest import run_from_quickstart_sft

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- SFT packing
def test_pack_sequences_layout():
    batch = pack_sequences([[1, 2, 3], [4, 5], [6, 7, 8, 9], [10]], [1, 1, 2, 0], max_length=5, pad_id=0)
    assert batch.input_ids.tolist() == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 3, 0]]
    assert batch.loss_mask.tolist() == [[0, 1, 1, 0, 1], [0, 0, 1, 1, 1]]
    padded = pack_sequences([[1, 2, 3], [4, 5, 6]], [0, 0], max_length=4, pad_id=0)
    assert padded.input_ids.tolist() == [[1, 2, 3], [4, 5, 6]]  # no two fit one row
    tail = pack_sequences([[1, 2, 3], [4]], [1, 0], max_length=8, pad_id=0)
    assert tail.input_ids.tolist() == [[1, 2, 3, 4]]


def test_packed_logprobs_equal_unpacked():
    """Packed sequences must not attend to each other: their log-probabilities match one-per-row."""
    model = load_model(RunConfig.model_validate({"stages": [{"type": "sft"}]}).model).eval()
    sequences = [[5, 9, 11, 40, 41], [7, 8, 30], [12, 13, 14, 15, 16, 17]]
    starts = [2, 1, 3]
    packed = pack_sequences(sequences, starts, max_length=16, pad_id=0)
    plain = pad_sequences(sequences, starts, pad_id=0)
    with torch.no_grad():
        lp_packed, _ = sequence_logprobs(model, packed.input_ids, packed.attention_mask, position_ids=packed.position_ids)
        lp_plain, _ = sequence_logprobs(model, plain.input_ids, plain.attention_mask)
    assert torch.allclose(lp_packed[packed.loss_mask.bool()], lp_plain[plain.loss_mask.bool()], atol=1e-5)


# --------------------------------------------------------------------------- one RL step per option
REWARD = '''
def even_length(completion, sample):
    """1.0 for an even number of characters: about half of a random tiny model's samples (special tokens
    decode to nothing, so lengths vary)."""
    return 1.0 if len(completion) % 2 == 0 else 0.0
'''


def make_parts(tmp_path: Path, algorithm: dict, n: int = 4, max_new_tokens: int = 8):
    reward_file = tmp_path / "reward.py"
    reward_file.write_text(REWARD)
    config = RunConfig.model_validate(
        {
            "rollout": {"n": n, "max_new_tokens": max_new_tokens},
            "rewards": [{"name": f"{reward_file}:even_length"}],
            "stages": [{"type": "rl", "batch_size": 2, "lr": 1e-3, "algorithm": algorithm}],
        }
    )
    torch.manual_seed(0)
    tokenizer, model = load_tokenizer(config.model), load_model(config.model)
    stage = config.stages[0]
    parts = build_rl_parts(config, stage, model, tokenizer, torch.device("cpu"))
    stream = PromptStream(load_samples(stage.data.model_copy(update={"size": 64})), seed=0)
    return parts, stage, config.rollout, stream, model


def step(parts, stage, rollout, stream, number: int = 1, seed: int = 1):
    return rl_step(parts, stage, rollout, stream.take(stage.batch_size), seed=seed, accuracy_reward="even_length",
                   more_prompts=stream.take, step=number)


def params_of(model):
    return [p.detach().clone() for p in model.parameters()]


def changed(before, model) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def record_calls(obj, name: str) -> list:
    """Wrap obj.name so each call's (args, result) is recorded; the call itself is unchanged."""
    calls, original = [], getattr(obj, name)

    def wrapper(*args):
        result = original(*args)
        calls.append((args, result))
        return result

    setattr(obj, name, wrapper)
    return calls


def hand_advantages(name: str, rewards: torch.Tensor, mask: torch.Tensor, n: int, lam: float = 0.95) -> torch.Tensor:
    """Each estimator's advantages written out independently of rlkit/algos (gamma 1, no KL; gae with the
    zero-initialized critic, V = 0)."""
    grouped = rewards.view(-1, n)
    centered = (grouped - grouped.mean(1, keepdim=True)).view(-1)
    if name == "grpo":
        return (centered / (grouped.std(1, keepdim=True).repeat_interleave(n).view(-1) + 1e-6))[:, None] * mask
    if name == "dr_grpo":
        return centered[:, None] * mask
    if name == "rloo":  # r - mean of the other n - 1 = n / (n - 1) * (r - mean)
        return (n / (n - 1) * centered)[:, None] * mask
    last = torch.tensor([int(row.nonzero().max()) for row in mask])
    steps_to_end = (last[:, None] - torch.arange(mask.shape[1])[None, :]).clamp(min=0).float()
    per_token = rewards[:, None] * (lam ** steps_to_end if name == "gae" else torch.ones_like(steps_to_end)) * mask
    keep = mask.bool()
    return (per_token - per_token[keep].mean()) / (per_token[keep].var() + 1e-8).sqrt() * mask  # whitened over the batch


ESTIMATORS = ["grpo", "dr_grpo", "rloo", "reinforce_pp", "gae"]


@pytest.mark.parametrize("name", ESTIMATORS)
def test_each_estimator_gives_its_own_advantages_in_the_real_step(tmp_path, name):
    """Through `rl_step`: the advantages the learner gets are this estimator's and no neighbour's, so an
    estimator that silently fell back to another (dr_grpo to grpo, say) fails here."""
    parts, stage, rollout, stream, _ = make_parts(tmp_path, {"advantage": name})
    scored, trained = record_calls(parts.scorer, "score"), record_calls(parts.learner, "train_step")
    step(parts, stage, rollout, stream)
    rewards = torch.tensor(scored[0][1].total)
    batch = trained[0][0][0]
    assert (rewards.view(-1, rollout.n).std(1) > 0).all()  # every group has a signal: the estimators can differ
    for other in ESTIMATORS:
        close = torch.allclose(batch.advantages, hand_advantages(other, rewards, batch.loss_mask, rollout.n), atol=1e-5)
        assert close == (other == name), f"{name}'s advantages {'differ from' if other == name else 'equal'} {other}'s"


@pytest.mark.parametrize(
    "algorithm",
    [
        {"advantage": "grpo"},
        {"advantage": "dr_grpo", "loss_agg": "seq_mean_token_sum_norm"},
        {"advantage": "rloo", "loss_agg": "seq_mean_token_mean"},
        {"advantage": "reinforce_pp", "kl_coef": 0.05, "kl_in_reward": True, "kl_estimator": "k1"},
        {"advantage": "grpo", "epochs": 2, "mini_batches": 2, "kl_coef": 0.01, "entropy_coef": -0.01, "dual_clip": 3.0},
    ],
    ids=["grpo", "dr_grpo", "rloo", "reinforce_pp_kl_reward", "ppo_epochs"],
)
def test_each_estimator_takes_a_step(tmp_path, algorithm):
    parts, stage, rollout, stream, model = make_parts(tmp_path, algorithm)
    before = params_of(model)
    metrics = step(parts, stage, rollout, stream)
    assert 0.0 < metrics["reward/mean"] < 1.0  # the reward varies, so there is a signal
    assert changed(before, model) and metrics["grad_norm"] > 0
    if algorithm.get("kl_in_reward"):
        assert "kl_penalty" in metrics and "kl" not in metrics  # KL enters the reward, not the loss
    if algorithm.get("epochs", 1) > 1:
        assert parts.learner.steps == 4  # 2 epochs x 2 mini-batches


def test_ppo_epochs_use_the_log_probabilities_from_before_the_update(tmp_path):
    """The first mini-batch update sees ratio 1 (nothing clipped); the later ones see the policy moved away from
    the rollout's, and the clip acts. Were the ratio's denominator the current policy, nothing would ever clip."""
    parts, stage, rollout, stream, _ = make_parts(tmp_path, {"epochs": 2, "mini_batches": 2})
    trained = record_calls(parts.learner, "train_step")
    step(parts, stage, rollout, stream)
    clipped = [metrics["clip_fraction"] for _, metrics in trained]
    assert len(clipped) == 4 and clipped[0] == 0.0 and min(clipped[1:]) > 0.0


def test_ppo_critic_warms_up_then_the_policy_trains(tmp_path):
    parts, stage, rollout, stream, model = make_parts(tmp_path, {"advantage": "gae", "critic_warmup_steps": 1, "critic_lr": 1e-3})
    before, critic_before = params_of(model), params_of(parts.critic.model)
    metrics = step(parts, stage, rollout, stream, number=1)
    assert not changed(before, model)  # policy frozen during warm-up
    assert changed(critic_before, parts.critic.model) and metrics["critic/value_loss"] > 0
    step(parts, stage, rollout, stream, number=2, seed=2)
    assert changed(before, model)


def test_entropy_only_moves_entropy_not_reward(tmp_path):
    parts, stage, rollout, stream, _ = make_parts(tmp_path, {"entropy_only": True, "entropy_coef": 1.0})
    first = step(parts, stage, rollout, stream, number=1)
    for number in range(2, 4):
        last = step(parts, stage, rollout, stream, number=number, seed=number)
    assert last["entropy"] > first["entropy"]  # the only term pushes entropy up
    assert first["loss/total"] == pytest.approx(-first["entropy"], rel=1e-5)  # no policy-gradient term


def test_dynamic_sampling_keeps_only_groups_with_signal(tmp_path):
    parts, stage, rollout, stream, _ = make_parts(tmp_path, {"dynamic_sampling": True, "max_sampling_rounds": 3}, n=2)
    scored, trained = record_calls(parts.scorer, "score"), record_calls(parts.learner, "train_step")
    metrics = step(parts, stage, rollout, stream)
    # replay the rule on the rewards each round got: rounds stop once batch_size groups had a signal, or at 3
    with_signal = [int((torch.tensor(result.total).view(-1, 2).std(1) > 0).sum()) for _, result in scored]
    found = [sum(with_signal[: r + 1]) for r in range(len(with_signal))]
    expected_rounds = next((r + 1 for r, total in enumerate(found) if total >= stage.batch_size), 3)
    assert metrics["sampling/rounds"] == expected_rounds == len(scored)
    assert metrics["sampling/kept_groups"] == min(found[-1], stage.batch_size)
    if metrics["sampling/kept_groups"]:
        trained_rows = trained[0][0][0]
        assert len(trained_rows) == 2 * metrics["sampling/kept_groups"]
    assert with_signal != [stage.batch_size]  # this seed needs more than one round: the loop is exercised


def test_overlong_filter_masks_truncated_samples(tmp_path):
    # 3 new tokens: nearly every sample is cut off, so nearly nothing is left for the loss
    parts, stage, rollout, stream, _ = make_parts(tmp_path, {"overlong_filter": True}, max_new_tokens=3)
    seen = {}
    train_step = parts.learner.train_step
    parts.learner.train_step = lambda batch, loss_fn: seen.setdefault("mask", batch.loss_mask.clone()) is None or train_step(batch, loss_fn)
    metrics = step(parts, stage, rollout, stream)
    truncated = metrics["response_length/truncated"]
    assert float(seen["mask"].sum(1).gt(0).float().mean()) == pytest.approx(1.0 - truncated)


# --------------------------------------------------------------------------- tiny twins (slow)
def gain(summary: dict) -> float:
    return summary["final_eval"]["accuracy"] - summary["initial_eval"]["accuracy"]


@pytest.mark.slow
def test_tiny_one_shot_generalizes(tmp_path):
    # its own SFT (the habit-forming teacher), then GRPO on one problem; measured: held-out 0.000 -> 0.230
    from rlkit.runner import run_recipe

    config = load_config(ROOT / "recipes" / "tiny" / "tiny_one_shot.yaml")
    summary = run_recipe(config, tmp_path / "run")
    trained_on = config.stages[-1].data.ids
    assert trained_on == ["arith-train-8"] and summary["stages"]["sft"]["eval"]["accuracy"] < 0.05
    assert gain(summary) >= 0.10  # trained on one problem, better on 200 others


@pytest.mark.slow
def test_tiny_rollout_dpo_improves(quickstart_sft, tmp_path):
    # measured: 0.290 -> 0.750 held-out (2 threads, 45 s); on 200 problems one standard error is ~3 points
    summary = run_from_quickstart_sft(ROOT / "recipes" / "tiny" / "tiny_rollout_dpo.yaml", quickstart_sft, tmp_path / "run")
    assert gain(summary) >= 0.10
    assert sum(m.get("pairs", 0) for m in summary["metrics"]) > 0


@pytest.mark.slow
def test_tiny_ppo_value_loss_falls_and_accuracy_rises(quickstart_sft, tmp_path):
    # The critic starts at V = 0 and learns the expected return; it cannot yet tell problems apart (explained
    # variance stays near 0 in 25 steps). Its loss falls below the zero critic's although the reward's
    # variance, which the loss follows, grows as accuracy climbs. Measured: value loss 0.0233 at step 1,
    # 0.0195 over steps 21-25; held-out 0.290 -> 0.745 (2 threads, 45 s).
    summary = run_from_quickstart_sft(ROOT / "recipes" / "tiny" / "tiny_ppo.yaml", quickstart_sft, tmp_path / "run")
    losses = [m["critic/value_loss"] for m in summary["metrics"] if m.get("critic/value_loss") is not None]
    explained = [m["critic/explained_variance"] for m in summary["metrics"] if "critic/explained_variance" in m]
    assert len(losses) == 25 and explained[0] == pytest.approx(0.0, abs=1e-6)  # V = 0 before the first update
    assert sum(losses[-5:]) / 5 < 0.9 * losses[0]
    assert gain(summary) >= 0.10


@pytest.mark.slow
def test_quickstart_grpo_under_lora_learns(quickstart_sft, tmp_path, capsys):
    # only the adapter trains (the engine gets merged weights); measured: 0.290 -> 0.825 (2 threads, 117 s)
    overrides = ["learner.lora.r=16", "learner.lora.stages=[rl]", "rl.lr=1e-3"]
    summary = run_from_quickstart_sft(ROOT / "recipes" / "quickstart.yaml", quickstart_sft, tmp_path / "run", overrides)
    assert "LoRA r=16 alpha=32 on ['q_proj', 'k_proj', 'v_proj', 'o_proj']: 65,536 of" in capsys.readouterr().out
    assert gain(summary) >= 0.20
    final = tmp_path / "run" / "final"  # merged: a plain HF model, no adapter files
    assert (final / "model.safetensors").is_file() and not (final / "adapter_config.json").exists()


@pytest.mark.slow
def test_tiny_dapo_fills_batches_with_signal_and_learns(quickstart_sft, tmp_path):
    # measured: held-out 0.290 -> 0.765; 16 of 16 groups kept every step, 23 of 30 steps needed a 2nd round (92 s)
    summary = run_from_quickstart_sft(ROOT / "recipes" / "tiny" / "tiny_dapo.yaml", quickstart_sft, tmp_path / "run")
    steps = [m for m in summary["metrics"] if m.get("stage") == "rl"]
    assert all(m["sampling/kept_groups"] == 16 for m in steps)  # all-right and all-wrong groups replaced
    assert any(m["sampling/rounds"] > 1 for m in steps)
    assert gain(summary) >= 0.10


@pytest.mark.slow
def test_tiny_entropy_only_raises_entropy(quickstart_sft, tmp_path):
    summary = run_from_quickstart_sft(ROOT / "recipes" / "tiny" / "tiny_entropy_only.yaml", quickstart_sft, tmp_path / "run")
    entropy = [m["entropy"] for m in summary["metrics"] if m.get("entropy") is not None]
    assert entropy[-1] > entropy[0]


def test_critic_state_is_checkpointed(tmp_path):
    from rlkit.learner.critic import Critic, LearnerWithCritic

    parts, stage, rollout, stream, model = make_parts(tmp_path, {"advantage": "gae", "critic_lr": 1e-3})
    step(parts, stage, rollout, stream)
    wrapped = LearnerWithCritic(parts.learner, parts.critic)
    (tmp_path / "ckpt").mkdir()
    wrapped.save(tmp_path / "ckpt")
    trained = params_of(parts.critic.model)
    fresh = Critic(model, 1e-3, 64, 1.0, torch.device("cpu"))
    LearnerWithCritic(parts.learner, fresh).load(tmp_path / "ckpt")
    assert all(torch.equal(a, b) for a, b in zip(trained, fresh.model.parameters()))
    assert wrapped.steps == parts.learner.steps  # everything else is the learner's
