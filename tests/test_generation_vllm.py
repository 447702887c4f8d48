"""The OpenAI-compatible backend against a real vLLM server of the tiny model (CPU build, .venv-vllm;
run: bash scripts/ci_step_vllm.sh). One server start takes ~80 s on 2 cores; the fault test restarts it.

The fault test runs `rlkit generate` as a user would, kills the server (SIGKILL) once the first problems
are written, and checks that the job goes on and reports the failed requests; after a restart the same
command completes the file without redoing or duplicating any (problem id, sample index).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from rlkit.config import GeneratorConfig
from rlkit.generation import build_generator
from rlkit.world.model import build_tiny_model
from rlkit.world.tokenizer import build_tiny_tokenizer

pytestmark = pytest.mark.vllm

START_TIMEOUT = 400  # seconds; ~80 s measured on an idle 2-core machine, more under load
SERVED = "tiny"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m vllm.entrypoints.openai.api_server` in its own process group, so a kill takes all of it."""

    def __init__(self, model_dir: Path, port: int, log: Path):
        self.model_dir, self.port, self.log = model_dir, port, log
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
        command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model_dir),
                   "--served-model-name", SERVED, "--port", str(self.port), "--dtype", "float32",
                   "--gpu-memory-utilization", "0.3", "--max-model-len", "512", "--seed", "0",
                   "--enforce-eager", "--optimization-level", "0"]  # no compilation: start-up in seconds on a CPU
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.time() + START_TIMEOUT
        while time.time() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"vLLM server exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/models", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(1)
        self.kill()
        pytest.fail(f"vLLM server not ready in {START_TIMEOUT} s:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("tiny-model")
    build_tiny_model(seed=0).save_pretrained(model_dir)
    build_tiny_tokenizer().save_pretrained(model_dir)
    srv = Server(model_dir, _free_port(), tmp_path_factory.mktemp("logs") / "vllm.log")
    srv.start()
    yield srv
    srv.kill()


def test_chat_and_completions_return_n_texts_per_prompt(server):
    chat = build_generator(GeneratorConfig(backend="openai", base_url=server.url, model=SERVED, concurrency=3))
    prompts = ["Compute 12+30.", [{"role": "user", "content": "Compute 47*8."}], "Compute 74-38."]
    results = chat.generate(prompts, n=3, temperature=1.0, max_tokens=12, seed=1)
    assert [r.error for r in results] == [None] * 3
    assert [len(r.texts) for r in results] == [3, 3, 3]
    assert all(reason in ("stop", "length") for r in results for reason in r.finish_reasons)
    assert chat.generate(prompts[:1], n=3, max_tokens=12, seed=1)[0].texts == results[0].texts  # the seed is honoured
    completions = build_generator(GeneratorConfig(backend="openai", base_url=server.url, model=SERVED, api="completions"))
    text = completions.generate(["<|im_start|>user\nCompute 1+2.<|im_end|>\n<|im_start|>assistant\n"], n=2, max_tokens=8)
    assert text[0].error is None and len(text[0].texts) == 2
    wrong = build_generator(GeneratorConfig(backend="openai", base_url=server.url, model="no-such-model", retries=3))
    failed = wrong.generate(["Compute 1+2."], n=1)[0]
    assert failed.failed and failed.error.startswith("HTTP 404") and "after 1 attempt)" in failed.error  # not retried


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_killed_server_fails_requests_then_a_rerun_completes_without_duplicates(server, tmp_path):
    out = tmp_path / "samples.jsonl"
    command = [sys.executable, "-m", "rlkit.cli", "generate", "--backend", "openai", "--base-url", server.url,
               "--model", SERVED, "--retries", "1", "--backoff", "0.2", "--timeout", "20", "--concurrency", "2",
               "--input", "tiny:arithmetic", "--size", "40", "--n", "2", "--max-tokens", "48", "--chunk", "4", "-o", str(out)]
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while job.poll() is None and (not out.exists() or len(_rows(out)) < 8):  # the first 4 problems are written
        time.sleep(0.05)
    server.kill()
    printed, _ = job.communicate(timeout=300)
    assert job.returncode == 0, printed  # the job goes on past the dead server
    written = _rows(out)
    failures = _rows(out.with_name(out.name + ".failures.jsonl"))
    assert 8 <= len(written) < 80 and failures, printed
    assert all("ConnectError" in f["error"] or "RemoteProtocolError" in f["error"] or "ReadError" in f["error"] for f in failures)
    assert f"{len(failures)} failed requests listed in" in printed.replace("\n", " ")
    assert len(written) // 2 + len(failures) == 40  # every problem is either written whole or reported

    server.start()
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    rows = _rows(out)
    assert len(rows) == 80 and len({(r["id"], r["sample_index"]) for r in rows}) == 80
    assert rows[: len(written)] == written  # finished work was kept, not redone
    assert _rows(out.with_name(out.name + ".failures.jsonl")) == []
