"""Distillation sets from scored teacher samples, against hand-built rows."""

import random

from rlkit.algos.pairs import select_pairs
from rlkit.distill_sets import build_distill_sets


def rows_of(pid: str, texts_and_rewards: list[tuple[str, float]], **fields) -> list[dict]:
    return [{"id": pid, "problem": f"Compute {pid}.", "answer": "5", **fields, "completion": t, "reward": r, "sample_index": j}
            for j, (t, r) in enumerate(texts_and_rewards)]


def test_sft_rows_pairs_and_tags():
    rows = rows_of("a", [("right", 1.0), ("wrong!", 0.0), ("right2", 1.0), ("wrong2!!", 0.0)], category="add2")
    rows += rows_of("b", [("x", 0.0), ("yy", 0.0)])  # all wrong: tags only, no SFT row, no pair
    rows += rows_of("c", [("ok", 1.0), ("ok", 1.0)])  # all right: SFT rows, no pair
    sets = build_distill_sets(rows, pair_selection="first", pairs_per_prompt=2)
    assert [p["id"] for p in sets.problems] == ["a", "b", "c"]
    a = sets.problems[0]
    assert (a["pass_rate"], a["mean_length"], a["samples"], a["correct"], a["category"]) == (0.5, 6.25, 4, 2, "add2")  # lengths 5, 6, 6, 8
    assert not {"completion", "reward", "sample_index"} & set(a)
    assert [(r["id"], r["response"]) for r in sets.sft] == [("a-s0", "right"), ("a-s2", "right2"), ("c-s0", "ok"), ("c-s1", "ok")]
    assert all(r["pass_rate"] == 0.5 for r in sets.sft[:2])  # tags travel with every row, for data.where
    assert [(p["chosen"], p["rejected"]) for p in sets.dpo] == [("right", "wrong!"), ("right2", "wrong2!!")]
    assert sets.funnel() == {"problems": 3, "samples": 8, "correct": 4, "problems_with_a_correct_sample": 2, "pairs": 2}


def test_pairs_follow_rollout_dpo_selection():
    texts = [("short", 1.0), ("a much longer right one", 1.0), ("no", 0.0), ("a very long wrong answer", 0.0)]
    sets = build_distill_sets(rows_of("a", texts), pair_selection="longest_rejected", pairs_per_prompt=1)
    assert [(p["chosen"], p["rejected"]) for p in sets.dpo] == [("short", "a very long wrong answer")]
    # random selection draws from the same rng rollout_dpo's select_pairs uses, seeded
    got = build_distill_sets(rows_of("a", texts), pair_selection="random", pairs_per_prompt=2, seed=3).dpo
    want = select_pairs([True, True, False, False], [len(t) for t, _ in texts], "random", 2, random.Random(3))
    assert [(p["chosen"], p["rejected"]) for p in got] == [(texts[c][0], texts[r][0]) for c, r in want]


def test_correct_field_wins_over_reward():
    rows = [{**r, "correct": r["reward"] >= 1.0} for r in rows_of("a", [("close", 0.9), ("right", 1.0)])]
    assert [r["response"] for r in build_distill_sets(rows).sft] == ["right"]  # 0.9 is not the accuracy reward's 1


def test_rlkit_generate_writes_the_distill_sets(tmp_path):
    import json

    from rlkit.cli import main as cli_main

    out, sets = tmp_path / "samples.jsonl", tmp_path / "sets"
    assert cli_main(["generate", "--backend", "tiny_teacher", "--slip-rate", "0.15", "--input", "tiny:arithmetic", "--size", "20",
                     "--n", "4", "-o", str(out), "--distill-sets", str(sets), "--pairs-per-prompt", "2"]) == 0
    samples = [json.loads(line) for line in out.read_text().splitlines()]
    sft = [json.loads(line) for line in (sets / "sft.jsonl").read_text().splitlines()]
    dpo = [json.loads(line) for line in (sets / "dpo.jsonl").read_text().splitlines()]
    problems = [json.loads(line) for line in (sets / "problems.jsonl").read_text().splitlines()]
    assert len(problems) == 20 and len(sft) == sum(s["correct"] for s in samples)
    assert {p["id"]: p["pass_rate"] for p in problems} == {s["id"]: s["pass_rate"] for s in samples}  # the same rate generate wrote
    assert len(dpo) == sum(min(2, p["correct"] * (4 - p["correct"])) for p in problems)  # a pair needs a right and a wrong sample
