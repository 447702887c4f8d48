"""rlkit/progress.py, off a terminal: what a log gets from stages, generate and synth (eval: test_eval_usability.py)."""

from __future__ import annotations

from rlkit.progress import ProgressBar, clock


def test_a_stage_writes_a_line_every_n_steps_and_at_the_end(capsys):
    bar = ProgressBar("rl", 25, start=3, unit="steps", every=10, live=False)
    for step in range(4, 26):
        bar.update(step, {"reward": 0.5, "n": 2})
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == ["[rl] 13/25 steps", "[rl] 23/25 steps", "[rl] 25/25 steps"]
    assert " s/step, ETA " in lines[0] and lines[-1].endswith("ETA 0s  reward 0.500  n 2")


def test_counted_samples_give_the_rate_and_disabled_shows_nothing(capsys):
    bar = ProgressBar("generate", 4, every=1, live=False)
    bar.advance(2, samples=16)
    bar.advance(2, samples=0)  # a chunk whose requests all failed: no samples
    assert bar.samples == 16 and bar.done == 4
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("[generate] 2/4 problems, ") and "samples/s, ETA" in lines[0]
    quiet = ProgressBar("generate", 4, every=1, enabled=False)
    quiet.advance(4, samples=8)
    assert capsys.readouterr().err == ""


def test_clock():
    assert (clock(5.9), clock(62.5), clock(float("nan"))) == ("5s", "1m02s", "?")
