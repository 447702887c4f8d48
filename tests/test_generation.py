"""Generation backends (tiny teacher, local engine, OpenAI-compatible client), `rlkit generate` and data.where.

The OpenAI-compatible backend against a real vLLM server is in tests/test_generation_vllm.py (vllm marker).
"""

import json
import re
import socket
import time

import pytest

from rlkit.cli import main as cli_main
from rlkit.config import DataConfig, GeneratorConfig, dump_config, load_config
from rlkit.data import load_samples
from rlkit.errors import ConfigError, DataError
from rlkit.generation import build_generator
from rlkit.generation.local import LocalEngineGenerator
from rlkit.rollout.hf import HFEngine
from rlkit.world.model import build_tiny_model
from rlkit.world.tokenizer import build_tiny_tokenizer


def test_tiny_teacher_backend_samples_n_per_prompt_reproducibly():
    generator = build_generator(GeneratorConfig(backend="tiny_teacher", slip_rate=0.3))
    prompts = ["Compute 74+77+83.", [{"role": "user", "content": "Compute 47*8."}], "Name a colour."]
    first = generator.generate(prompts, n=6, seed=1)
    assert [len(g.texts) for g in first] == [6, 6, 0]
    assert first[2].failed and "no tiny-world expression" in first[2].error
    assert generator.generate(prompts, n=6, seed=1)[0].texts == first[0].texts
    assert len(set(first[0].texts)) > 1
    greedy = generator.generate(prompts[:1], n=4, temperature=0.0, seed=1)[0].texts
    assert len(set(greedy)) == 1
    cut = generator.generate(prompts[:1], n=2, stop=["</think>"], seed=1)[0]
    assert all(t.startswith("<think>") and "</think>" not in t for t in cut.texts) and cut.finish_reasons == ["stop"] * 2


def test_local_engine_backend_batches_text_and_chat_prompts():
    tokenizer = build_tiny_tokenizer()
    generator = LocalEngineGenerator(HFEngine(build_tiny_model(seed=0).eval(), tokenizer), tokenizer, batch_size=2)
    prompts = ["Compute 1+2.", [{"role": "user", "content": "Compute 3+4."}], "Compute 5+6."]
    results = generator.generate(prompts, n=3, max_tokens=5, seed=0)
    assert [len(r.texts) for r in results] == [3, 3, 3]
    assert all(reason in ("stop", "length") for r in results for reason in r.finish_reasons)
    assert "length" in {reason for r in results for reason in r.finish_reasons}  # the untrained model rarely ends by itself
    built = build_generator(GeneratorConfig(backend="local", model="tiny"))
    assert len(built.generate(["Compute 1+2."], n=2, max_tokens=3)[0].texts) == 2


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket closes


def test_openai_backend_retries_with_backoff_then_records_the_failure():
    config = GeneratorConfig(backend="openai", base_url=f"http://127.0.0.1:{_closed_port()}/v1", model="m", retries=2, backoff=0.2, concurrency=2)
    generator = build_generator(config)
    started = time.perf_counter()
    results = generator.generate(["a", "b", "c"], n=2)
    elapsed = time.perf_counter() - started
    assert all(r.failed and "ConnectError" in r.error and "after 3 attempts" in r.error for r in results)
    assert 0.6 <= elapsed < 5  # waits 0.2 then 0.4 s per prompt, two prompts at a time
    completions = build_generator(config.model_copy(update={"api": "completions"}))
    assert "takes text prompts" in completions.generate([[{"role": "user", "content": "hi"}]])[0].error


def test_openai_backend_reads_the_key_from_the_named_variable_and_never_stores_it(monkeypatch):
    config = GeneratorConfig(backend="openai", base_url="http://127.0.0.1:1/v1", model="m", api_key_env="RLKIT_TEST_KEY")
    with pytest.raises(ConfigError, match="environment variable RLKIT_TEST_KEY is not set"):
        build_generator(config)
    monkeypatch.setenv("RLKIT_TEST_KEY", "sk-secret-123")
    generator = build_generator(config)
    assert generator.client.headers["authorization"] == "Bearer sk-secret-123"
    assert "sk-secret" not in json.dumps(config.model_dump())
    with pytest.raises(ConfigError, match="unknown backend 'nope'"):
        build_generator(GeneratorConfig(backend="nope"))


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _generate(out, *extra):
    return cli_main(["generate", "--backend", "tiny_teacher", "--slip-rate", "0.15", "--input", "tiny:arithmetic",
                     "--size", "40", "--mix", "add2=1,sub=1", "--n", "4", "-o", str(out), "--chunk", "8", *extra])


def test_generate_writes_scored_rows_and_resumes_a_cut_run_without_duplicates(tmp_path, capsys):
    whole = tmp_path / "whole.jsonl"
    assert _generate(whole) == 0
    printed = capsys.readouterr().out
    rows = _rows(whole)
    assert len(rows) == 160 and len({(r["id"], r["sample_index"]) for r in rows}) == 160
    for row in rows:
        mates = [r for r in rows if r["id"] == row["id"]]
        assert row["pass_rate"] == sum(r["correct"] for r in mates) / 4
        assert row["correct"] == (row["rewards"]["math"] == 1.0) and row["category"] in ("add2", "sub")
    correct = sum(r["correct"] for r in rows)
    assert re.search(rf"correct samples\s+│\s+{correct} ", printed)
    assert 0 < correct < 160  # the fallible teacher errs

    cut = tmp_path / "cut.jsonl"
    lines = whole.read_text().splitlines(keepends=True)
    cut.write_text("".join(lines[:42]) + lines[42][:30])  # 10 problems, 2 rows of the 11th, a torn line
    assert _generate(cut) == 0
    assert re.search(r"already done \(resumed\)\s+│\s+10 ", capsys.readouterr().out)
    assert sorted(map(json.dumps, _rows(cut))) == sorted(map(json.dumps, rows))  # the same rows, none twice
    assert _generate(cut) == 0  # a finished job: nothing to do
    assert len(_rows(cut)) == 160


def test_data_where_selects_rows_before_limit_and_names_unknown_fields(tmp_path):
    out = tmp_path / "t.jsonl"
    assert _generate(out) == 0
    rows = _rows(out)
    hard = load_samples(DataConfig(source=str(out), where=["category == sub", "pass_rate <= 0.5"]))
    expected = [r for r in rows if r["category"] == "sub" and r["pass_rate"] <= 0.5]
    assert expected and [s["completion"] for s in hard] == [r["completion"] for r in expected]
    assert len(load_samples(DataConfig(source=str(out), where=["category == sub"], limit=3, repeat=2))) == 6
    from rlkit.stages.sft import response_text

    assert all(response_text(s) == s["completion"] != s["solution"] for s in load_samples(DataConfig(source=str(out), where=["correct == false"])))
    tiny = load_samples(DataConfig(size=300, mix={"add2": 1, "add3": 1}, where=["concepts contains carry-hundreds", "difficulty in [4]"]))
    assert tiny and all(s["category"] == "add3" and "carry-hundreds" in s["concepts"] for s in tiny)
    with pytest.raises(DataError, match=rf"{out}: data.where field 'level' .* is in no row"):
        load_samples(DataConfig(source=str(out), where=["level >= 3"]))
    with pytest.raises(DataError, match="cannot compare category='add2' with 3"):
        load_samples(DataConfig(source=str(out), where=["category < 3"]))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  - type: sft\n    data: {where: ['pass_rate is low']}\n")
    with pytest.raises(ConfigError, match=r"key 'sft.data.where': bad condition 'pass_rate is low'"):
        load_config(recipe)
    recipe.write_text(f"stages:\n  - type: sft\n    data: {{source: {out}, where: 'pass_rate < 1'}}\n")
    assert load_config(recipe).stages[0].data.where == ["pass_rate < 1"]
    assert "where:\n    - pass_rate < 1" in dump_config(load_config(recipe))


def test_generate_flags_are_checked_with_one_line_errors(tmp_path, capsys):
    assert cli_main(["generate", "--input", "tiny:arithmetic", "-o", str(tmp_path / "o.jsonl"), "--slip-rate", "2"]) == 2
    assert "--slip-rate: Input should be less than or equal to 1" in capsys.readouterr().err
    assert cli_main(["generate", "--input", str(tmp_path / "absent.jsonl"), "-o", str(tmp_path / "o.jsonl")]) == 2
    assert "--input: file not found" in capsys.readouterr().err
    assert cli_main(["generate", "--input", "tiny:arithmetic", "--mix", "div=1", "-o", str(tmp_path / "o.jsonl")]) == 2
    assert "unknown tiny-world categories ['div']" in capsys.readouterr().err
