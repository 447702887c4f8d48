"""The SwS pipeline end to end in the tiny world: its roles, the funnel, resume, empty weaknesses."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from rlkit.config import GeneratorConfig, SynthConfig
from rlkit.generation import build_generator
from rlkit.synth.asking import load_template
from rlkit.synth.pipeline import Backends, run_pipeline
from rlkit.synth.problems import format_concepts
from rlkit.world import sws_roles
from rlkit.world.arithmetic import arithmetic_samples, split_of
from rlkit.world.categories import CATEGORIES, parse_problem


def _writer_prompt(category: str, concepts: list[str]) -> str:
    return load_template("problem").safe_substitute(category=category, level="AIME", concepts=format_concepts(concepts))


def test_tiny_concept_extractor_reads_the_problem_out_of_the_template():
    prompt = load_template("concepts").safe_substitute(problem="Compute 74-38.", category="sub")
    assert sws_roles.extract_concepts(prompt) == "- subtraction\n- borrow"


def test_tiny_writer_writes_a_training_split_problem_with_every_concept():
    for sample in range(20):
        text = sws_roles.write_problem(_writer_prompt("add3", ["three-operands", "carry-tens"]), sample=sample, flaw_rate=0.0)
        problem = text.split("Problem:")[1].strip()
        category, operands = parse_problem(problem)
        assert category.name == "add3" and {"three-operands", "carry-tens"} <= set(category.concepts(operands))
        assert split_of(category.expression(operands)) == "train"
    impossible = sws_roles.write_problem(_writer_prompt("sub", ["subtraction", "carry-hundreds"]))
    assert "Problem:" not in impossible


def test_tiny_raters_catch_the_writers_flaws():
    rate = lambda problem, strict: sws_roles.rate_problem(load_template("rating").safe_substitute(problem=problem, category="sub"), strict)  # noqa: E731
    assert rate("Compute 74-38.", True).endswith("Rating: perfect")
    assert rate("Compute 74-38 or 51-12, whichever is larger.", True).endswith("Rating: bad")
    assert rate("Compute 74-38 or 51-12, whichever is larger.", False).endswith("Rating: acceptable")
    assert rate("Compute the sum of the digits you like best.", False).endswith("Rating: bad")


class Counting:
    """A real backend that also counts the prompts it was asked (to see what a rerun redoes)."""

    def __init__(self, backend: str, **fields):
        self.inner, self.asked = build_generator(GeneratorConfig(backend=backend, **fields)), 0

    def generate(self, prompts, **sampling):
        self.asked += len(prompts)
        return self.inner.generate(prompts, **sampling)


def _backends() -> Backends:
    return Backends(
        concepts=Counting("tiny_concepts"), writer=Counting("tiny_writer"),
        raters=[Counting("tiny_rater_strict"), Counting("tiny_rater_lenient")],
        solver=Counting("tiny_teacher", slip_rate=0.05),
        policy=Counting("tiny_teacher", slip_rate=0.15),  # a weak "policy": about half right on a borrow
    )


def _asked(backends: Backends) -> int:
    return sum(b.asked for b in (backends.concepts, backends.writer, *backends.raters, backends.solver, backends.policy))


@pytest.fixture
def world(tmp_path: Path):
    rows = arithmetic_samples("train", 120, mix={"add2": 1.0, "sub": 1.0})
    # the run got worse on subtraction and stayed below 0.5 there; it learned addition
    histories = {r["id"]: ([0.375, 0.125] if r["category"] == "sub" else [0.5, 0.875]) for r in rows}
    config = SynthConfig(budget=60, combination_size=2, decontaminate_dir=None, chunk_size=16)
    return rows, histories, config, tmp_path / "synth"


def test_pipeline_targets_the_weak_category_and_labels_by_majority(world):
    rows, histories, config, out = world
    result = run_pipeline(rows, histories, _backends(), config, out, seed=3)
    subs = sum(r["category"] == "sub" for r in rows)
    assert result.failure_rates == {"add2": 0.0, "sub": 1.0}
    assert result.budgets == {"add2": 0, "sub": 60}
    funnel = result.funnel
    assert funnel["original"] == 120 and funnel["weaknesses"] == subs and funnel["combinations"] == 60
    steps = ["combinations", "problems", "dedup", "quality", "answers", "difficulty"]
    assert all(funnel[a] >= funnel[b] for a, b in itertools.pairwise(steps))
    assert result.rows and len(result.rows) == funnel["difficulty"]
    assert all(r["category"] == "sub" and r["source"] == "sws" for r in result.rows)
    right = [r["answer"] == str(CATEGORIES["sub"].answer(parse_problem(r["problem"])[1])) for r in result.rows]
    assert sum(right) >= 0.95 * len(right)  # 8 teacher samples at ~19% error each: a wrong majority is rare
    saved = [json.loads(line) for line in (out / "synthetic.jsonl").read_text().splitlines()]
    assert saved == result.rows
    assert json.loads((out / "funnel.json").read_text())["funnel"] == funnel


def test_pipeline_resumes_without_asking_again(world):
    rows, histories, config, out = world
    first = run_pipeline(rows, histories, _backends(), config, out, seed=3)
    again = _backends()
    assert run_pipeline(rows, histories, again, config, out, seed=3).rows == first.rows
    assert _asked(again) == 0
    log = out / "steps" / "answers.jsonl"  # cut the answers step after its first chunk, mid-line
    lines = log.read_text().splitlines(keepends=True)
    log.write_text(lines[0] + lines[1][:20])
    resumed = _backends()
    assert run_pipeline(rows, histories, resumed, config, out, seed=3).rows == first.rows
    assert resumed.solver.asked == first.funnel["quality"] - 16 and resumed.writer.asked == 0


def test_empty_weakness_set_is_a_message_and_no_new_rows(world):
    rows, _, config, out = world
    rising = {r["id"]: [0.125, 0.25] for r in rows}
    backends = _backends()
    result = run_pipeline(rows, rising, backends, config, out)
    assert result.rows == [] and result.funnel["weaknesses"] == 0
    assert "no weaknesses" in result.message and "original data passes through" in result.message
    assert _asked(backends) == 0


def test_decontamination_drops_a_benchmark_problem(world, tmp_path):
    rows, histories, config, out = world
    clean = run_pipeline(rows, histories, _backends(), config, tmp_path / "clean", seed=3)
    bench = tmp_path / "bench"
    bench.mkdir()
    leaked = clean.rows[0]["problem"]
    (bench / "leaky.jsonl").write_text(json.dumps({"problem": leaked, "answer": "1"}) + "\n")
    config = config.model_copy(update={"decontaminate_dir": str(bench)})
    result = run_pipeline(rows, histories, _backends(), config, out, seed=3)
    assert result.counts["dedup"].get("benchmark:leaky", 0) >= 1
    assert leaked not in {r["problem"] for r in result.rows}
