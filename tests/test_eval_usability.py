"""`rlkit eval` for everyday use: a mistyped model path, prompts longer than the model's context, progress."""

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

from rlkit.cli import main as cli

REPO = Path(__file__).resolve().parents[1]


def test_a_mistyped_relative_model_path_is_directory_not_found(tmp_path, monkeypatch, capsys):
    (tmp_path / "runs" / "qs" / "final").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert cli(["eval", "--model", "runs/qs/finall", "--benchmarks", "tiny:arithmetic"]) == 2
    assert capsys.readouterr().err == "rlkit: error: --model: directory not found: runs/qs/finall (runs/qs holds: final)\n"


def test_prompts_longer_than_the_context_are_counted_and_explained(tmp_path, capsys):
    rows = [{"id": "short", "problem": "1+1", "answer": "2"}, {"id": "long", "problem": "1+" * 400 + "1", "answer": "401"}]
    data = tmp_path / "long.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = cli(["eval", "--model", "tiny", "--benchmarks", str(data), "--template", "tiny", "--max-new-tokens", "2",
                "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 0
    assert "long: 1 of 2 prompts are longer than the model's context of 512 tokens (the longest, long, has " in err
    assert "generated anyway" in err
    assert json.loads((tmp_path / "out" / "long" / "results.json").read_text())["prompts_over_context"] == 1


def test_progress_lines_when_not_on_a_terminal(tmp_path, capsys):
    from rlkit.progress import ProgressBar

    progress = ProgressBar("math500", 6, tag="eval", samples_per_unit=2, every_s=0.0, live=False)
    progress.advance(3)
    progress.advance(3)
    progress.close()
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == ["[eval] math500: 3/6 problems", "[eval] math500: 6/6 problems"]
    assert all("samples/s, ETA " in line for line in lines) and lines[-1].endswith("ETA 0s")

    assert cli(["eval", "--model", "tiny", "--benchmarks", "tiny:arithmetic", "--limit", "4", "--batch-size", "2",
                "--max-new-tokens", "2", "--output", str(tmp_path / "out")]) == 0
    assert "[eval] tiny_arithmetic: 4/4 problems, " in capsys.readouterr().err  # the command reports through it


def test_a_terminal_gets_a_progress_bar(tmp_path):
    """A real pseudo-terminal: rich draws the bar with the rate and the ETA."""
    main, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "rlkit.cli", "eval", "--model", "tiny", "--benchmarks", "tiny:arithmetic",
                             "--limit", "4", "--batch-size", "2", "--max-new-tokens", "2", "--output", str(tmp_path / "out")],
                            cwd=REPO, stdin=child, stdout=child, stderr=child, env={**os.environ, "COLUMNS": "160"})
    os.close(child)
    seen = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(timeout=120) == 0, seen.decode(errors="replace")[-2000:]
    text = seen.decode(errors="replace")
    assert "tiny_arithmetic" in text and "samples/s" in text and "ETA" in text and "━" in text
