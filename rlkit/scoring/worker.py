"""One reward call, made safe (`call_reward`), and the reward worker process's main loop (`worker_main`).

Both the in-process pool and the worker processes go through `call_reward`, so a reward behaves the
same wherever it runs: whatever it raises becomes a scored-0 outcome with the reason in its info.
"""

from __future__ import annotations

import math
import numbers
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from rlkit.rewards.base import RewardResult, RewardTimeout


@dataclass
class CallOutcome:
    status: str  # "ok", "error" or "timeout"
    score: float
    info: dict[str, Any] = field(default_factory=dict)


def as_result(value: Any) -> RewardResult:
    """A reward's return value as a RewardResult: a finite real number (bools count as 0/1) or a RewardResult."""
    result = value if isinstance(value, RewardResult) else None
    if result is None:
        if not isinstance(value, numbers.Real):
            raise TypeError(f"a reward must return a float or RewardResult, got {type(value).__name__}")
        result = RewardResult(float(value))
    if not isinstance(result.score, numbers.Real) or not math.isfinite(result.score):
        raise ValueError(f"a reward's score must be a finite number, got {result.score!r}")
    result.score = float(result.score)
    return result


def _missing_field(err: KeyError, sample: dict[str, Any]) -> str | None:
    """What a KeyError says the sample lacks, for an error message: a reward's own description
    (its `needs` attribute) or the key it looked up, when the sample has no such key."""
    needs = getattr(err, "needs", None)
    if isinstance(needs, str):
        return needs
    if len(err.args) == 1 and isinstance(err.args[0], str) and err.args[0] not in sample:
        return f"field '{err.args[0]}'"
    return None


def call_reward(fn: Callable[[str, dict], Any], completion: str, sample: dict[str, Any]) -> CallOutcome:
    """Call one reward; a reward that raises (or exits) scores 0 with the reason in the info."""
    try:
        result = as_result(fn(completion, sample))
    except RewardTimeout as err:
        return CallOutcome("timeout", 0.0, {"timeout": str(err)})
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # noqa: BLE001 - SystemExit too: a reward must not end the run
        if type(err).__name__ == "TimeoutException":  # math-verify's own, raised through a user's reward
            return CallOutcome("timeout", 0.0, {"timeout": f"{type(err).__name__}: {err}"})
        info: dict[str, Any] = {"error": f"{type(err).__name__}: {err}"}
        if isinstance(err, KeyError) and (missing := _missing_field(err, sample)):
            info["missing"] = missing
        return CallOutcome("error", 0.0, info)
    return CallOutcome("ok", result.score, result.info)


def _plain(info: dict[str, Any]) -> dict[str, Any]:
    """An info dict that survives pickling: values that do not are sent as text."""
    out = {}
    for key, value in info.items():
        try:
            out[str(key)] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        except Exception:  # noqa: BLE001 - a broken __repr__
            out[str(key)] = f"<unprintable {type(value).__name__}>"
    return out


def worker_main(conn: Connection, targets: list[tuple[str, dict[str, Any]]]) -> None:
    """Resolve the rewards by name (a user's file or module is imported here), then answer each chunk
    of calls `[(reward_index, completion, sample), ...]` with one CallOutcome per call, in order, sent
    as soon as it is ready; until sent None or the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which stops us cleanly
    try:
        os.setsid()  # our own process group: a stopped worker takes the processes its reward started with it
    except OSError:
        pass
    from rlkit.scoring.registry import resolve_reward

    try:
        fns = [resolve_reward(target, args) for target, args in targets]
    except BaseException as err:  # noqa: BLE001 - report, do not die silently
        conn.send(("failed", f"{type(err).__name__}: {err}"))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        for index, completion, sample in task:
            outcome = call_reward(fns[index], completion, sample)
            try:
                conn.send(outcome)
            except Exception:  # noqa: BLE001 - an info value that does not pickle
                conn.send(CallOutcome(outcome.status, outcome.score, _plain(outcome.info)))
