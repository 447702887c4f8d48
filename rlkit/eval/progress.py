"""Progress of one benchmark's evaluation: a rich bar on a terminal (problems, samples/s, ETA), a plain line
every `every_s` seconds elsewhere (CI logs, `nohup`, a file), so a long evaluation never looks hung."""

from __future__ import annotations

import sys
import time


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class EvalProgress:
    def __init__(self, name: str, problems: int, samples_per_problem: int, every_s: float = 30.0, live: bool | None = None):
        from rich.console import Console

        self.name, self.problems, self.n, self.every_s = name, problems, samples_per_problem, every_s
        self.console = Console(stderr=True)
        self.live = self.console.is_terminal if live is None else live
        self.started = self.last_line = time.perf_counter()
        self.done = 0
        self.bar = None
        if self.live:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("problems  {task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                TimeRemainingColumn(), console=self.console, transient=True)
            self.task = self.bar.add_task(name, total=problems, rate="")
            self.bar.start()

    def line(self) -> str:
        elapsed = time.perf_counter() - self.started
        rate = self.done * self.n / max(elapsed, 1e-9)
        eta = (self.problems - self.done) * self.n / rate if rate > 0 else float("nan")
        return (f"[eval] {self.name}: {self.done}/{self.problems} problems, {rate:.1f} samples/s, "
                f"ETA {_clock(eta) if eta == eta else '?'}")

    def advance(self, problems: int) -> None:
        self.done += problems
        if self.bar is not None:
            rate = self.done * self.n / max(time.perf_counter() - self.started, 1e-9)
            self.bar.update(self.task, completed=self.done, rate=f"{rate:.1f} samples/s")
        elif time.perf_counter() - self.last_line >= self.every_s or self.done == self.problems:
            self.last_line = time.perf_counter()
            print(self.line(), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
