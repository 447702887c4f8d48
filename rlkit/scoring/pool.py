"""RewardPool: score completions with the recipe's weighted rewards, safely.

    pool = RewardPool(config.rewards, workers=config.reward.workers, timeout=config.reward.timeout)
    batch = pool.score(texts, samples)   # batch.total, batch.per_reward["math"], batch.errors, ...
    pool.close()

workers=0 calls the rewards in this process (fast to start; the default for the tiny world). A reward
that raises scores 0; math-verify's own time limits apply when called from the main thread, but a
reward that hangs or kills the process cannot be stopped here.

workers=N runs them in N worker processes (forkserver, else spawn; each imports the rewards itself
from their specs). A call that runs past `timeout` seconds has its worker killed and scores 0 as a
timeout; a worker that dies (os._exit, a segfault, the OOM killer) scores its call 0 as an error.
Either way the worker is replaced and the batch goes on. Each kind of failure is logged once per reward,
with the sample's id; all are counted in the batch (`reward/errors`, `reward/timeouts` in the metrics).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import sys
import time
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from multiprocessing.reduction import ForkingPickler
from typing import Any

from rlkit.config import RewardSpec
from rlkit.errors import ConfigError
from rlkit.rewards.base import RewardResult
from rlkit.scoring.registry import portable_target, resolve_reward, reward_labels
from rlkit.scoring.worker import CallOutcome, as_result, call_reward, worker_main

log = logging.getLogger("rlkit.rewards")

__all__ = ["RewardBatch", "RewardPool", "RewardResult", "as_result"]

START_TIMEOUT = 120.0  # seconds a new worker may take to import its rewards
MAX_CHUNK = 32  # jobs sent to a worker in one message


@dataclass
class RewardBatch:
    total: list[float]  # weighted sum per completion
    per_reward: dict[str, list[float]]
    infos: list[dict[str, Any]]  # per completion: {reward label: that reward's info}
    errors: int = 0
    timeouts: int = 0
    error_samples: list[str] = field(default_factory=list)  # ids of samples whose reward failed or timed out


@dataclass
class _Job:
    key: tuple[int, int]  # (reward index, completion index)
    completion: str
    sample: dict[str, Any]


@dataclass
class _Worker:
    process: Any  # multiprocessing Process
    conn: Any  # our end of its pipe
    started: float  # when its start-up, or the job at the head of its queue, began
    ready: bool = False
    queue: deque = field(default_factory=deque)  # jobs sent to it, answered in order; the head is running


@contextmanager
def _main_not_reimported() -> Iterator[None]:
    """Start a worker without re-running the user's __main__ script in it (what spawn and forkserver
    do by default): a worker imports its rewards by name and needs nothing from __main__, and a script
    without an `if __name__ == "__main__":` guard would otherwise start workers from inside workers."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    spec, file = getattr(main, "__spec__", None), main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__spec__ = spec
        if file is not None:
            main.__file__ = file


def _kill(process: Any) -> None:
    """Kill a worker and its process group (it leads one: see worker_main), so that programs its
    reward started (a sandboxed test run, a solver) do not outlive it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):  # not yet its own group, or already gone
        pass
    if process.is_alive():
        process.kill()
    process.join(timeout=5)


def _drop_unsendable(jobs: list[_Job], results: dict[tuple[int, int], CallOutcome]) -> list[_Job]:
    """Score 0 (as errors) the jobs whose sample cannot be pickled to a worker; return the others."""
    sendable = []
    for job in jobs:
        try:
            ForkingPickler.dumps((job.key[0], job.completion, job.sample))
        except Exception as err:  # noqa: BLE001
            results[job.key] = CallOutcome("error", 0.0, {"error": f"sample cannot be sent to a reward worker: {type(err).__name__}: {err}"})
        else:
            sendable.append(job)
    return sendable


class WorkerGroup:
    """N reward worker processes with a per-call timeout; a dead or stopped worker is replaced.

    Jobs go out in chunks (one message, not one wake-up of each process per call) and results come
    back one by one, so each call still has its own deadline: `timeout` after the previous result.
    A call that times out or kills its worker scores 0; the rest of its chunk goes to the next worker.
    """

    def __init__(self, targets: list[tuple[str, dict[str, Any]]], size: int, timeout: float):
        self.targets, self.timeout = targets, timeout
        methods = mp.get_all_start_methods()
        self.context = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
        if self.context.get_start_method() == "forkserver":
            # Import the reward modules once in the fork server, so each (re)started worker has them.
            modules = ["rlkit.scoring.worker"] + [t.split(":")[0] for t, _ in targets if not t.split(":")[0].endswith(".py")]
            self.context.set_forkserver_preload(modules)
        self.workers = [self._start() for _ in range(size)]
        self.pending: deque[_Job] = deque()

    def _start(self) -> _Worker:
        ours, theirs = self.context.Pipe()
        process = self.context.Process(target=worker_main, args=(theirs, self.targets), daemon=True, name="rlkit-reward-worker")
        with _main_not_reimported():
            process.start()
        theirs.close()
        return _Worker(process, ours, time.monotonic())

    def _replace(self, worker: _Worker, results: dict[tuple[int, int], CallOutcome], status: str, why: str) -> None:
        """Score the running job 0 (`status`: error or timeout), send the unstarted rest of the chunk
        back to the queue, and put a fresh worker in this one's place."""
        if worker.queue:
            results[worker.queue.popleft().key] = CallOutcome(status, 0.0, {status: why})
            self.pending.extendleft(reversed(worker.queue))
            worker.queue.clear()
        _kill(worker.process)
        worker.conn.close()
        self.workers[self.workers.index(worker)] = self._start()

    def _died(self, worker: _Worker, results: dict[tuple[int, int], CallOutcome]) -> None:
        worker.process.join(timeout=5)
        code = worker.process.exitcode
        if not worker.ready:
            self.close()
            raise ConfigError(f"a reward worker exited with code {code} while importing the rewards {[t for t, _ in self.targets]}")
        self._replace(worker, results, "error", f"reward worker died (exit code {code}) during the call")

    def _receive(self, worker: _Worker, results: dict[tuple[int, int], CallOutcome]) -> None:
        try:
            while worker.conn.poll():
                message = worker.conn.recv()
                if isinstance(message, CallOutcome) and worker.queue:
                    results[worker.queue.popleft().key] = message
                    worker.started = time.monotonic()  # the next job in its chunk starts now
                elif isinstance(message, tuple) and message[0] == "ready":
                    worker.ready, worker.started = True, time.monotonic()
                elif isinstance(message, tuple) and message[0] == "failed":
                    self.close()
                    raise ConfigError(f"a reward worker could not load the rewards: {message[1]}")
        except (EOFError, OSError):
            self._died(worker, results)
            return
        if not worker.process.is_alive():
            self._died(worker, results)

    def _enforce_deadlines(self, results: dict[tuple[int, int], CallOutcome]) -> None:
        now = time.monotonic()
        for worker in list(self.workers):
            if worker.queue and now - worker.started >= self.timeout:
                self._replace(worker, results, "timeout", f"no result within {self.timeout:g} s; the worker was stopped")
            elif not worker.ready and now - worker.started >= START_TIMEOUT:
                self.close()
                raise RuntimeError(f"a reward worker did not import its rewards within {START_TIMEOUT:g} s")

    def _dispatch(self, results: dict[tuple[int, int], CallOutcome]) -> None:
        for worker in list(self.workers):
            if not (worker.ready and not worker.queue and self.pending):
                continue
            # Big chunks while there is much to do, smaller ones at the end so workers finish together.
            size = max(1, min(MAX_CHUNK, len(self.pending) // (2 * len(self.workers))))
            chunk = [self.pending.popleft() for _ in range(min(size, len(self.pending)))]
            try:
                worker.conn.send([(job.key[0], job.completion, job.sample) for job in chunk])
            except (BrokenPipeError, OSError):  # it died while idle: its replacement takes the chunk
                self.pending.extendleft(reversed(chunk))
                self._died(worker, results)
                continue
            except Exception:  # noqa: BLE001 - a sample that does not pickle (nothing was written yet)
                self.pending.extendleft(reversed(_drop_unsendable(chunk, results)))
                continue
            worker.queue.extend(chunk)
            worker.started = time.monotonic()

    def run(self, jobs: list[_Job]) -> dict[tuple[int, int], CallOutcome]:
        self.pending, results = deque(jobs), {}
        while self.pending or any(w.queue for w in self.workers):
            self._dispatch(results)
            waiting = [w for w in self.workers if w.queue or not w.ready]
            limits = [w.started + (self.timeout if w.ready else START_TIMEOUT) for w in waiting]
            handles = [h for w in waiting for h in (w.conn, w.process.sentinel)]
            ready = set(wait(handles, timeout=max(0.0, min(limits) - time.monotonic()))) if handles else set()
            for worker in list(self.workers):
                if worker.conn in ready or worker.process.sentinel in ready:
                    self._receive(worker, results)
            self._enforce_deadlines(results)
        return results

    def close(self) -> None:
        for worker in self.workers:
            try:
                worker.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for worker in self.workers:
            worker.process.join(timeout=2)
            if worker.process.is_alive():
                _kill(worker.process)
            worker.conn.close()
        self.workers = []


class RewardPool:
    def __init__(self, specs: Sequence[RewardSpec], workers: int = 0, timeout: float = 10.0):
        self.specs = list(specs)
        self.names = reward_labels([spec.name for spec in self.specs])
        # Resolved here too in worker mode: a bad spec or broken module is a ConfigError before any step.
        self.fns = [resolve_reward(spec.name, spec.args) for spec in self.specs]
        self.timeout = timeout
        self._logged: set[tuple[str, str]] = set()
        self._group: WorkerGroup | None = None
        if workers > 0:
            targets = [(portable_target(spec.name), dict(spec.args)) for spec in self.specs]
            self._group = WorkerGroup(targets, workers, timeout)
            self._finalizer = weakref.finalize(self, self._group.close)

    def _call_all(self, completions: list[str], samples: list[dict[str, Any]]) -> dict[tuple[int, int], CallOutcome]:
        if self._group is not None:
            jobs = [_Job((k, i), text, sample) for k in range(len(self.fns)) for i, (text, sample) in enumerate(zip(completions, samples))]
            return self._group.run(jobs)
        return {
            (k, i): call_reward(fn, text, sample)
            for k, fn in enumerate(self.fns)
            for i, (text, sample) in enumerate(zip(completions, samples))
        }

    def score(self, completions: list[str], samples: list[dict[str, Any]]) -> RewardBatch:
        if len(completions) != len(samples):
            raise ValueError(f"{len(completions)} completions but {len(samples)} samples")
        outcomes = self._call_all(completions, samples)
        batch = RewardBatch(total=[0.0] * len(completions), per_reward={n: [] for n in self.names}, infos=[{} for _ in completions])
        for k, (name, spec) in enumerate(zip(self.names, self.specs)):
            for i, sample in enumerate(samples):
                outcome = outcomes[(k, i)]
                if outcome.status != "ok":
                    self._count_failure(batch, name, outcome, sample)
                batch.per_reward[name].append(outcome.score)
                batch.total[i] += spec.weight * outcome.score
                batch.infos[i][name] = outcome.info
        return batch

    def _count_failure(self, batch: RewardBatch, name: str, outcome: CallOutcome, sample: dict[str, Any]) -> None:
        sample_id = str(sample.get("id"))
        batch.error_samples.append(sample_id)
        if outcome.status == "timeout":
            batch.timeouts += 1
        else:
            batch.errors += 1
        if (name, outcome.status) not in self._logged:
            self._logged.add((name, outcome.status))
            what = "timed out" if outcome.status == "timeout" else "failed"
            reason = outcome.info.get(outcome.status if outcome.status == "timeout" else "error")
            log.warning(
                "reward %s %s on sample %s: %s (scored 0; later ones are only counted in reward/%ss)",
                name, what, sample_id, reason, outcome.status,
            )

    def close(self) -> None:
        if self._group is not None:
            self._finalizer.detach()
            self._group.close()
            self._group = None

    def __enter__(self) -> RewardPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
