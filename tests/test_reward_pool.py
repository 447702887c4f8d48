"""RewardPool: weighted rewards, and rewards that raise, hang or kill their worker (scored 0, counted,
logged once, the worker replaced, the pool going on)."""

import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rlkit.config import RewardSpec
from rlkit.errors import ConfigError
from rlkit.scoring.pool import RewardPool

BAD_REWARDS = '''
import os, time

def raises(completion, sample):
    raise ValueError("boom in " + str(sample["id"]))

def sleeps_forever(completion, sample):
    if "hang" in completion:
        time.sleep(10**6)
    return 1.0

def exits(completion, sample):
    if "die" in completion:
        os._exit(3)
    return 0.5

def pid(completion, sample):
    return float(os.getpid())

def returns_text(completion, sample):
    return "1.0"

def returns_nan(completion, sample):
    return float("nan")

def returns_bool(completion, sample):
    return completion == "yes"

def halves(completion, sample, factor=0.5):
    return factor * len(completion)
'''


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("rewards") / "bad_rewards.py"
    path.write_text(BAD_REWARDS)
    return str(path)


def specs(bad: str, *names: str, **weights: float) -> list[RewardSpec]:
    return [RewardSpec(name=f"{bad}:{n}", weight=weights.get(n, 1.0)) for n in names]


def samples(n: int) -> list[dict]:
    return [{"id": f"s{i}", "answer": "4"} for i in range(n)]


# ----------------------------------------------------------------------------- in-process (workers=0)
def test_weighted_rewards_combine_and_each_is_logged(bad: str) -> None:
    pool = RewardPool([RewardSpec(name="math"), RewardSpec(name=f"{bad}:halves", weight=0.1, args={"factor": 2.0})])
    batch = pool.score(["\\boxed{4}", "\\boxed{5}"], samples(2))
    assert batch.per_reward == {"math": [1.0, 0.0], "halves": [18.0, 18.0]}
    assert batch.total == pytest.approx([1.0 + 1.8, 0.0 + 1.8])
    assert batch.infos[0]["math"] == {"pred": "4", "gold": "4"}
    assert (batch.errors, batch.timeouts) == (0, 0)


def test_repeated_reward_names_get_their_own_columns(bad: str) -> None:
    pool = RewardPool([RewardSpec(name="length", args={"max_len": 10, "cache_len": 5}), RewardSpec(name="length", args={"max_len": 100, "cache_len": 5})])
    batch = pool.score(["x" * 8], samples(1))
    assert batch.per_reward == {"length": [-0.6], "length#2": [0.0]}


def test_a_raising_reward_scores_zero_is_counted_and_logged_once(bad: str, caplog: pytest.LogCaptureFixture) -> None:
    pool = RewardPool(specs(bad, "raises", "halves", halves=1.0))
    with caplog.at_level(logging.WARNING, logger="rlkit.rewards"):
        batch = pool.score(["ab", "cd", "ef"], samples(3))
        pool.score(["gh"], samples(1))
    assert batch.per_reward["raises"] == [0.0, 0.0, 0.0] and batch.total == [1.0, 1.0, 1.0]
    assert batch.errors == 3 and batch.error_samples == ["s0", "s1", "s2"]
    assert batch.infos[1]["raises"] == {"error": "ValueError: boom in s1"}
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "reward raises failed on sample s0: ValueError: boom in s0" in messages[0]


def test_return_values_are_checked(bad: str) -> None:
    batch = RewardPool(specs(bad, "returns_text", "returns_nan", "returns_bool")).score(["yes", "no"], samples(2))
    assert batch.per_reward["returns_text"] == [0.0, 0.0] and "must return a float" in batch.infos[0]["returns_text"]["error"]
    assert batch.per_reward["returns_nan"] == [0.0, 0.0] and "finite" in batch.infos[0]["returns_nan"]["error"]
    assert batch.per_reward["returns_bool"] == [1.0, 0.0]
    assert batch.errors == 4


def test_pathological_math_in_process_is_a_timeout(bad: str) -> None:
    pool = RewardPool([RewardSpec(name="math", args={"timeout": 1})])
    started = time.perf_counter()
    batch = pool.score(["\\boxed{(x+1)^{100000}}", "\\boxed{4}"], samples(2))
    assert time.perf_counter() - started < 6
    assert batch.per_reward["math"] == [0.0, 1.0] and batch.timeouts == 1 and batch.errors == 0
    assert batch.error_samples == ["s0"]


@pytest.mark.parametrize(
    "spec, args, message",
    [
        ("nope", {}, "unknown reward 'nope'"),
        ("missing/file.py:fn", {}, "reward file not found"),
        ("rlkit.rewards.math:no_such_fn", {}, "has no function 'no_such_fn'"),
        ("length", {"max_length": 5}, "unexpected keyword argument 'max_length'"),
        ("length", {"max_len": 5, "cache_len": 10}, "0 < cache_len <= max_len"),
    ],
)
def test_bad_specs_fail_before_scoring(spec: str, args: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RewardPool([RewardSpec(name=spec, args=args)], workers=1)


# ----------------------------------------------------------------------------- worker processes
@pytest.fixture(scope="module")
def worker_pool(bad: str):
    pool = RewardPool(specs(bad, "sleeps_forever", "exits", "raises", "pid") + [RewardSpec(name="math")], workers=2, timeout=1.5)
    yield pool
    pool.close()


def test_hanging_crashing_and_raising_rewards_in_workers(worker_pool: RewardPool) -> None:
    texts = ["\\boxed{4}", "hang \\boxed{4}", "die \\boxed{4}", "\\boxed{(x+1)^{100000}}"]  # the last would run for minutes
    started = time.perf_counter()
    batch = worker_pool.score(texts, samples(4))
    assert time.perf_counter() - started < 20  # two timeouts of 1.5 s, plus replacing workers
    assert batch.per_reward["sleeps_forever"] == [1.0, 0.0, 1.0, 1.0]
    assert batch.per_reward["exits"] == [0.5, 0.5, 0.0, 0.5]
    assert batch.per_reward["raises"] == [0.0] * 4
    assert batch.per_reward["math"] == [1.0, 1.0, 1.0, 0.0]
    assert batch.timeouts == 2 and batch.errors == 5  # 4 raises + 1 dead worker
    assert "timeout" in batch.infos[1]["sleeps_forever"] and "timeout" in batch.infos[3]["math"]
    assert "exit code 3" in batch.infos[2]["exits"]["error"]
    assert all(pid != os.getpid() for pid in batch.per_reward["pid"])  # scored in worker processes

    again = worker_pool.score(["\\boxed{4}"] * 6, samples(6))  # the pool lives on, with fresh workers
    assert again.per_reward["math"] == [1.0] * 6 and (again.errors, again.timeouts) == (6, 0)
    assert len({int(p) for p in again.per_reward["pid"]}) <= 2
    assert all(w.process.is_alive() for w in worker_pool._group.workers)


def test_close_stops_the_workers(bad: str) -> None:
    pool = RewardPool(specs(bad, "pid"), workers=2, timeout=10)
    assert pool.score(["a", "b"], samples(2)).errors == 0
    processes = [w.process for w in pool._group.workers]
    pool.close()
    assert not any(p.is_alive() for p in processes)


def test_workers_import_user_modules_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_team_rewards.py").write_text("import os\ndef from_module(completion, sample):\n    return float(os.getpid())\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with RewardPool([RewardSpec(name="my_team_rewards:from_module")], workers=1, timeout=10) as pool:
        batch = pool.score(["x"], samples(1))
    assert batch.errors == 0 and batch.per_reward["from_module"][0] not in (0.0, float(os.getpid()))


def test_a_script_without_a_main_guard_can_use_workers(bad: str, tmp_path: Path) -> None:
    script = tmp_path / "score.py"
    script.write_text(textwrap.dedent(f"""
        from rlkit.config import RewardSpec
        from rlkit.scoring.pool import RewardPool
        print("script body ran")
        pool = RewardPool([RewardSpec(name={bad + ':halves'!r})], workers=1, timeout=10)
        print("total", pool.score(["abcd"], [{{"id": 1}}]).total)
        pool.close()
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["script body ran", "total [2.0]"]  # the body ran once, not again in the worker


def test_odd_samples_and_texts_in_workers(bad: str) -> None:
    """A sample that cannot be pickled is that sample's error, not the batch's; lone surrogates and
    200,000-character completions travel to workers and back."""
    import threading

    with RewardPool(specs(bad, "halves") + [RewardSpec(name="math")], workers=1, timeout=10) as pool:
        odd = {"id": "lock", "answer": "4", "handle": threading.Lock()}
        batch = pool.score(["\ud800 \\boxed{4}", "x" * 200_000 + "\\boxed{4}", "\\boxed{4}"], [*samples(2), odd])
    assert batch.per_reward["math"] == [1.0, 1.0, 0.0]
    assert batch.per_reward["halves"] == [0.5 * 11, 0.5 * 200_009, 0.0]
    assert batch.errors == 2 and batch.error_samples == ["lock", "lock"]
    assert "cannot be sent to a reward worker" in batch.infos[2]["math"]["error"]


def test_samples_are_checked_for_what_the_rewards_read(bad: str) -> None:
    """Before an RL stage: a data row without a gold answer is a DataError naming the file and row."""
    from rlkit.errors import DataError
    from rlkit.scoring.registry import check_samples

    rewards = [RewardSpec(name=f"{bad}:halves"), RewardSpec(name="math", weight=0.5, args={"timeout": 2})]
    check_samples(rewards, [{"id": "1", "answer": "3"}, {"id": "2", "final_answer": ["$4$"]}], "data/ok.jsonl")
    with pytest.raises(DataError, match=r"data/x\.jsonl row 2: reward 'math' needs a gold answer.*its fields: id, question\)"):
        check_samples(rewards, [{"id": "1", "answer": "3"}, {"id": "2", "question": "q", "prompt": []}], "data/x.jsonl")


def test_a_stopped_worker_takes_the_programs_its_reward_started(tmp_path: Path) -> None:
    (tmp_path / "spawner.py").write_text(
        "import subprocess\n"
        "def waits_on_a_child(completion, sample):\n"
        f"    child = subprocess.Popen(['sleep', '1000'])\n"
        f"    open({str(tmp_path / 'child.pid')!r}, 'w').write(str(child.pid))\n"
        "    child.wait()\n"
        "    return 1.0\n"
    )
    with RewardPool([RewardSpec(name=f"{tmp_path / 'spawner.py'}:waits_on_a_child")], workers=1, timeout=1.5) as pool:
        assert pool.score(["x"], samples(1)).timeouts == 1
        child = int((tmp_path / "child.pid").read_text())
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _running(child):
            time.sleep(0.05)
        assert not _running(child)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; only its parent has not reaped it
