"""`rlkit eval` end to end with the tiny model, scoring through a scripted engine, and periodic
benchmark eval inside an rl stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlkit.cli import main as cli
from rlkit.config import RewardSpec
from rlkit.data import load_benchmark
from rlkit.eval.benchmarks import KNOWN, resolve_benchmark
from rlkit.eval.evaluate import evaluate_benchmark
from rlkit.eval.report import write_benchmark, write_summary
from rlkit.rollout.base import Completion, SamplingParams
from rlkit.scoring.pool import RewardPool
from tests.conftest import SHARED_DATA

SHARED_MATH = SHARED_DATA / "math"


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny-world model saved like a run's final/ (accuracy ~0; the plumbing is what is tested)."""
    from rlkit.world.model import build_tiny_model
    from rlkit.world.tokenizer import build_tiny_tokenizer

    path = tmp_path_factory.mktemp("model") / "final"
    build_tiny_model().save_pretrained(path)
    build_tiny_tokenizer().save_pretrained(path)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_eval(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli(["eval", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.shared_data
def test_all_seven_benchmarks_write_results(tiny_model_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    code, stdout, _ = run_eval(
        capsys, "--model", str(tiny_model_dir), "--benchmarks", ",".join(KNOWN), "--data-dir", str(SHARED_MATH),
        "--limit", "1", "--max-new-tokens", "2", "--output", str(out),
    )
    assert code == 0
    combined = json.loads((out / "results.json").read_text())
    assert list(combined["benchmarks"]) == list(KNOWN)
    for name, (title, n, temperature) in KNOWN.items():
        result = json.loads((out / name / "results.json").read_text())
        assert result == combined["benchmarks"][name]
        assert (result["problems"], result["samples"]) == (1, n)
        assert result["sampling"]["n"] == n and result["sampling"]["temperature"] == temperature
        assert {"accuracy", f"avg@{n}", f"pass@{n}", f"maj@{n}", "mean_response_length"} <= set(result)
        assert 0 < result["mean_response_length"] <= 2
        (problem,) = [json.loads(line) for line in (out / name / "samples.jsonl").read_text().splitlines()]
        assert problem["gold"] and len(problem["responses"]) == n
        assert title in stdout
    table = (out / "results.md").read_text()
    assert table.splitlines()[0].startswith("| Model | MATH500 | AIME24 (avg@8) |") and table in stdout


@pytest.mark.slow
@pytest.mark.shared_data
def test_done_when_command_limit_5(tiny_model_dir: Path, tmp_path: Path, capsys):
    """The issue's acceptance command (with a short response limit: the model is untrained and rarely stops)."""
    code, _, _ = run_eval(
        capsys, "--model", str(tiny_model_dir), "--benchmarks", ",".join(KNOWN), "--data-dir", str(SHARED_MATH),
        "--limit", "5", "--max-new-tokens", "16", "--output", str(tmp_path / "out"),
    )
    assert code == 0
    for name, (_, n, _) in KNOWN.items():
        result = json.loads((tmp_path / "out" / name / "results.json").read_text())
        assert (result["problems"], result["samples"]) == (5, 5 * n)


def test_flags_override_per_benchmark_defaults(tiny_model_dir: Path, tmp_path: Path, capsys):
    data = write_jsonl(tmp_path / "aime24.jsonl", [{"problem": "1+1", "answer": "2"}, {"problem": "2+3", "answer": "5"}])
    code, _, _ = run_eval(
        capsys, "--model", str(tiny_model_dir), "--benchmarks", f"{data},tiny:arithmetic", "--limit", "2", "--n", "2",
        "--temperature", "0.7", "--max-new-tokens", "3", "--template", "tiny", "--output", str(tmp_path / "out"),
    )
    assert code == 0
    for name in ("aime24", "tiny_arithmetic"):
        result = json.loads((tmp_path / "out" / name / "results.json").read_text())
        assert result["sampling"] == {"n": 2, "temperature": 0.7, "top_p": 1.0, "max_new_tokens": 3, "seed": 0}
        assert (result["problems"], result["samples"]) == (2, 4)
    problems = [json.loads(x) for x in (tmp_path / "out" / "aime24" / "samples.jsonl").read_text().splitlines()]
    assert [p["gold"] for p in problems] == ["2", "5"]


def test_unknown_benchmark_is_a_one_line_error(capsys):
    code, _, err = run_eval(capsys, "--model", "tiny", "--benchmarks", "math500,aime2024")
    assert code == 2
    assert "unknown benchmark 'aime2024'" in err and all(name in err for name in KNOWN)


def test_missing_data_dir(tmp_path: Path, capsys, monkeypatch):
    code, _, err = run_eval(capsys, "--model", "tiny", "--benchmarks", "gsm8k", "--data-dir", str(tmp_path / "nope"))
    assert code == 2 and f"data directory not found: {tmp_path / 'nope'}" in err
    monkeypatch.setattr("rlkit.eval.benchmarks.default_data_dir", lambda *_: None)  # no env var, no shared folder
    code, _, err = run_eval(capsys, "--model", "tiny", "--benchmarks", "gsm8k")
    assert code == 2 and "pass --data-dir DIR" in err and "RLKIT_SHARED_DATA" in err


def test_several_greedy_samples_need_a_temperature(tmp_path: Path, capsys):
    data = write_jsonl(tmp_path / "math500.jsonl", [{"problem": "1+1", "answer": "2"}])
    code, _, err = run_eval(capsys, "--model", "tiny", "--benchmarks", str(data), "--n", "4")
    assert code == 2 and "--n 4 with greedy decoding on math500" in err and "--temperature" in err


class ScriptedEngine:
    """A RolloutEngine that answers each prompt with fixed texts, to check scoring and aggregation exactly."""

    def __init__(self, scripts: list[list[str]]):
        self.scripts, self.served = scripts, 0

    def generate(self, prompts: list[list[int]], sampling: SamplingParams) -> list[Completion]:
        out = []
        for index, prompt in enumerate(prompts):
            texts = self.scripts[self.served + index]
            assert len(texts) == sampling.n
            out += [Completion(index, prompt, [1] * (len(t) // 4 + 1), [], t, "stop") for t in texts]
        self.served += len(prompts)
        return out


def test_scores_of_known_responses(tmp_path: Path):
    from rlkit.world.tokenizer import build_tiny_tokenizer

    path = write_jsonl(tmp_path / "aime24.jsonl", [{"problem": "p1", "answer": "2"}, {"problem": "p2", "answer": "1/2"}])
    bench = resolve_benchmark(str(path), None)
    engine = ScriptedEngine([
        ["so \\boxed{2}", "\\boxed{3}", "\\boxed{2.0}", "no answer"],  # 2 of 4 right; '2' and '2.0' vote together
        ["\\boxed{3}", "\\boxed{0.5}", "\\boxed{\\frac{1}{2}}", "<think>\\boxed{3}</think> \\boxed{1/2}"],  # 3 of 4
    ])
    sampling = SamplingParams(n=4, temperature=0.6, max_new_tokens=8)
    pool = RewardPool([RewardSpec(name="math")])
    result = evaluate_benchmark(engine, build_tiny_tokenizer(), bench, load_benchmark(bench), pool, sampling, batch_size=1)
    m = result.metrics
    assert m["accuracy"] == pytest.approx((2 / 4 + 3 / 4) / 2) == m["avg@4"] == m["pass@1"]
    assert m["pass@2"] == pytest.approx((1 - 1 / 6 + 1.0) / 2)  # 1 - C(2,2)/C(4,2) and 1 (only one wrong)
    assert m["pass@4"] == 1.0
    assert m["maj@4"] == 1.0  # '2' beats '3' two to one; 1/2 in three spellings beats '3'
    assert (m["problems"], m["samples"], m["correct_samples"], m["no_answer"], m["truncated"]) == (2, 8, 5, 1, 0)
    assert [r["answer"] for r in result.problems[1]["responses"]] == ["3", "0.5", "\\frac{1}{2}", "1/2"]

    write_benchmark(result, tmp_path / "out")
    markdown = write_summary("scripted", [result], tmp_path / "out")
    assert json.loads((tmp_path / "out" / "aime24" / "results.json").read_text())["maj@4"] == 1.0
    assert "| scripted | 62.5 | 62.5 |" in markdown  # avg@4 in %, then the average over benchmarks
    assert "| AIME24 | 2 | 4 | 0.6 | 62.5 | 100.0 | 100.0 |" in markdown


def test_periodic_benchmark_eval_is_logged(tmp_path: Path):
    from rlkit.config import load_config
    from rlkit.runner import run_recipe

    bench = write_jsonl(tmp_path / "mini.jsonl", [{"problem": "1+1", "answer": "2"}, {"problem": "2+2", "answer": "4"}])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "threads: 1\nrollout: {n: 2, max_new_tokens: 4}\n"
        f"eval: {{every: 1, limit: 2, benchmarks: ['{bench}', 'tiny:arithmetic']}}\n"
        "stages: [{type: rl, steps: 2, batch_size: 2}]\n"
    )
    summary = run_recipe(load_config(recipe), tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    for key in ("eval/accuracy", "eval/mini/accuracy", "eval/tiny_arithmetic/accuracy", "eval/mini/mean_response_length"):
        assert 0 <= records[0][key] <= (1 if "accuracy" in key else 4)
    assert "eval/mini/accuracy" not in records[1]  # the last step is evaluated by the stage's final eval
    assert {"mini/accuracy", "tiny_arithmetic/accuracy"} <= set(summary["initial_eval"]) & set(summary["final_eval"])


def test_default_response_limit_is_capped_by_the_model_context(tiny_model_dir: Path, tmp_path: Path, capsys):
    from transformers import Qwen2Config

    from rlkit.commands.eval import DEFAULT_MAX_NEW_TOKENS, _default_max_new_tokens

    assert _default_max_new_tokens(str(tiny_model_dir)) == 512 == _default_max_new_tokens("tiny")
    assert "defaults to 512, the model's context length" in capsys.readouterr().out
    Qwen2Config(max_position_embeddings=8192).save_pretrained(tmp_path / "long")
    assert _default_max_new_tokens(str(tmp_path / "long")) == DEFAULT_MAX_NEW_TOKENS == 3072
    code, _, err = run_eval(capsys, "--model", str(tmp_path / "absent"), "--benchmarks", "tiny:arithmetic")
    assert code == 2 and f"--model: directory not found: {tmp_path / 'absent'}" in err


@pytest.mark.vllm
def test_vllm_engine_gives_the_hf_engine_greedy_responses(tiny_model_dir: Path, tmp_path: Path, capsys):
    """`--engine vllm` (the CPU build, in .venv-vllm: bash scripts/ci_step_eval_vllm.sh) decodes greedily
    what transformers does, and the results files are the same apart from timing."""
    data = write_jsonl(tmp_path / "mini.jsonl", [{"problem": "1+1", "answer": "2"}, {"problem": "12+7", "answer": "19"}])
    outputs = {}
    for engine in ("hf", "vllm"):
        code, _, _ = run_eval(
            capsys, "--model", str(tiny_model_dir), "--engine", engine, "--benchmarks", str(data),
            "--template", "tiny", "--max-new-tokens", "8", "--output", str(tmp_path / engine),
        )
        assert code == 0
        outputs[engine] = [json.loads(x) for x in (tmp_path / engine / "mini" / "samples.jsonl").read_text().splitlines()]
    texts = {engine: [r["text"] for p in problems for r in p["responses"]] for engine, problems in outputs.items()}
    assert texts["vllm"] == texts["hf"] and all(texts["hf"])
