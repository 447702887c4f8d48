"""learner.attention_backend: the SDPA backend named there is first in SDPA's priority order whenever the learner's
attention runs (forward, a checkpointed layer's recomputation in backward, scoring; torch and DeepSpeed learners),
torch's state is restored after, and a bad value fails when the recipe loads, naming the key.

On CPU SDPA's dispatcher ignores the priority order (flash where it can, else math), so these tests check what SDPA
is handed, not which kernel ran; scripts/train_bench.py prints the CUDA dispatcher's choice on the GPU."""

from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend

from rlkit.config import ConfigError, LearnerConfig, load_config
from rlkit.learner.base import pad_sequences
from rlkit.learner.deepspeed_learner import PolicyLogprobs
from rlkit.learner.logprobs import attention_backend
from rlkit.learner.torch_learner import TorchLearner
from rlkit.stages.sft import sft_loss
from rlkit.world.model import build_tiny_model

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
FIRST = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
         "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}


def test_the_setting_loads_and_a_bad_value_names_the_key():
    assert load_config(REPO / "recipes/quickstart.yaml").learner.attention_backend == "auto"
    assert load_config(REPO / "recipes/quickstart.yaml", ["learner.attention_backend=math"]).learner.attention_backend == "math"
    with pytest.raises(ConfigError, match=r"key 'learner\.attention_backend': .*'auto', 'flash', 'efficient', 'cudnn' or 'math'.*'flsh'"):
        load_config(REPO / "recipes/quickstart.yaml", ["learner.attention_backend=flsh"])
    with pytest.raises(ValueError, match="unknown attention backend 'flsh'"):
        attention_backend("flsh")


@pytest.fixture
def sdpa_calls(monkeypatch):
    """(first backend in SDPA's priority order, mask given, enable_gqa, grad mode) of each SDPA call."""
    calls, real = [], torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append((int(torch._C._get_sdp_priority_order()[0]), kwargs.get("attn_mask") is not None,
                      kwargs.get("enable_gqa", False), torch.is_grad_enabled()))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    return calls


def batch_of():
    gen = torch.Generator().manual_seed(0)
    seqs = [torch.randint(4, 100, (n,), generator=gen).tolist() for n in (12, 12, 15, 7)]
    return pad_sequences(seqs, [4] * 4, pad_id=0)  # rows 0-1 unpadded together, rows 2-3 padded


@pytest.mark.parametrize("backend", ["auto", *FIRST])
def test_the_backend_reaches_sdpa_in_forward_backward_and_scoring(backend, sdpa_calls):
    before = torch._C._get_sdp_priority_order()
    expected = int(FIRST[backend]) if backend != "auto" else before[0]
    config = LearnerConfig(micro_batch_size=2, gradient_checkpointing=True, attention_backend=backend)
    learner = TorchLearner(build_tiny_model("small", seed=1), config, lr=1e-3, device=CPU)
    batch = batch_of()
    metrics = learner.train_step(batch, sft_loss(float(batch.loss_mask.sum())))
    learner.logprobs(batch)
    layers = learner.model.config.num_hidden_layers
    # 2 micro-batches x layers in forward, again in backward (checkpointed layers recompute), again when scoring
    assert len(sdpa_calls) == 3 * 2 * layers
    assert {first for first, *_ in sdpa_calls} == {expected}
    assert {grad for *_, grad in sdpa_calls} == {True, False}
    # the unpadded micro-batch: no mask, KV heads unrepeated; the padded one: a mask (repeat_kv, no enable_gqa)
    assert {(mask, gqa) for _, mask, gqa, _ in sdpa_calls} == {(False, True), (True, False)}
    assert torch._C._get_sdp_priority_order() == before  # restored
    assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.math_sdp_enabled()
    assert torch.backends.cuda.mem_efficient_sdp_enabled() and torch.backends.cuda.cudnn_sdp_enabled()
    assert metrics["loss"] == pytest.approx(sft_reference_loss(), rel=1e-6)


def sft_reference_loss() -> float:
    model = build_tiny_model("small", seed=1)
    learner = TorchLearner(model, LearnerConfig(micro_batch_size=2), lr=1e-3, device=CPU)
    batch = batch_of()
    return learner.train_step(batch, sft_loss(float(batch.loss_mask.sum())))["loss"]


def test_the_deepspeed_learners_module_hands_it_on(sdpa_calls):
    module = PolicyLogprobs(build_tiny_model("small", seed=1), chunk_size=0, attention="math")
    batch = batch_of()
    module(batch.input_ids, batch.attention_mask)
    assert {first for first, *_ in sdpa_calls} == {int(SDPBackend.MATH)}
