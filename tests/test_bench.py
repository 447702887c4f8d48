"""`rlkit bench` on a CPU with a tiny shape: rlkit's real step and TRL's GRPOTrainer, one invocation."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from rlkit.bench.report import floor_seconds, summarize
from rlkit.bench.workload import REFERENCE, TINY, build_tokenizer, even_token_reward, prompt_texts
from rlkit.cli import main


def test_bench_runs_rlkit_and_trl_on_cpu(tmp_path, capsys) -> None:
    out = tmp_path / "bench.json"
    code = main(["bench", "--tiny", "--frameworks", "rlkit,trl", "--steps", "1", "--warmup", "1",
                 "--device", "cpu", "--output", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    result = json.loads(out.read_text())
    rows = {row["framework"]: row for row in result["summary"]}
    assert set(rows) == {"rlkit", "trl"}
    rlkit = rows["rlkit"]
    assert rlkit["step_s"] > 0 and rlkit["generate_s"] > 0 and rlkit["train_s"] > 0
    assert rlkit["other_s"] >= -1e-6  # the phases never add up to more than the step
    # every sample ran to the completion limit (EOS ignored): tokens per step = sequences x limit
    step = next(r for r in result["runs"][0]["records"] if not r["warmup"])
    assert step["completion_tokens"] == TINY.sequences * TINY.completion_tokens
    assert rows["trl"]["step_s"] > 0
    assert "| rlkit |" in printed and "| trl |" in printed and "faster than TRL" in printed


def test_floor_matches_design_md_for_the_reference_workload() -> None:
    floor = floor_seconds(REFERENCE)
    assert 490e6 < floor["params"] < 500e6  # Qwen2-0.5B with tied embeddings: 494M
    assert floor["floor_s"] == pytest.approx(0.55, abs=0.03)  # DESIGN.md: ~0.55 s
    # hand count: 512 reads of 2-byte weights + the KV cache (12 KiB a token) at 3 TB/s; 6NT at 790 TFLOP/s
    kv = 128 * 24 * 2 * 2 * 64 * 2 * sum(64 + t for t in range(512))
    assert floor["decode_s"] == pytest.approx((512 * floor["params"] * 2 + kv) / 3e12)
    assert floor["train_s"] == pytest.approx(6 * floor["params"] * 128 * 576 / 790e12)


def test_summary_uses_the_median_of_timed_steps() -> None:
    records = [{"warmup": True, "wall": 9.0, "completion_tokens": 10.0}] + [
        {"warmup": False, "wall": w, "completion_tokens": 10.0} for w in (1.0, 3.0, 2.0)
    ]
    row = summarize({"framework": "x", "records": records}, floor=0.5)
    assert row["step_s"] == 2.0 and row["x_floor"] == 4.0 and row["completion_tok_per_s"] == 5.0


def test_tokenizer_round_trips_prompt_ids_and_reward_reads_text() -> None:
    w = replace(TINY, vocab=50)
    tokenizer = build_tokenizer(w)
    text = prompt_texts(w)[0]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == w.prompt_tokens and tokenizer.decode(ids) == text and w.vocab - 1 not in ids
    assert even_token_reward("t2 t3 t4 t7") == 0.5


def test_bad_frameworks_and_shapes_are_user_errors(capsys) -> None:
    assert main(["bench", "--tiny", "--frameworks", "rlkit,vllm", "--device", "cpu"]) == 2
    assert "--frameworks" in capsys.readouterr().err
    assert main(["bench", "--tiny", "--heads", "3", "--device", "cpu"]) == 2
    assert "--heads" in capsys.readouterr().err


def test_ragged_preset_stops_samples_early_and_counts_tokens(tmp_path) -> None:
    """The stop-token bias ends samples at geometric lengths (median ~ a quarter of the limit); the report
    counts useful vs computed tokens in decode and training, and the ragged floor uses the real lengths."""
    out = tmp_path / "bench.json"
    code = main(["bench", "--tiny", "--stop-median", "0.25", "--completion-tokens", "64", "--prompt-tokens-min", "3",
                 "--micro-batch-tokens", "128", "--frameworks", "rlkit", "--steps", "1", "--warmup", "0",
                 "--device", "cpu", "--output", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    [row] = result["summary"]
    [record] = result["runs"][0]["records"]
    assert 4 <= row["response_mean"] <= 40  # geometric with median 16 of a 64 limit (mean ~ 23)
    assert 0 < row["decode_useful_fraction"] < 1 and 0 < row["train_useful_fraction"] <= 1
    assert record["decode_useful"] == record["completion_tokens"]
    assert record["floor_s"] < floor_seconds(replace(TINY, completion_tokens=64))["floor_s"]  # fewer tokens than the full-length floor

