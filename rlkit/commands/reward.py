"""`rlkit reward score SPEC --input FILE.jsonl [--output OUT.jsonl] [--timeout S] [--workers N] [--arg K=V ...]`
and `rlkit reward list`.

Debug a reward before a run: each input line is a JSON object with the `completion` to score plus the
sample's fields (e.g. `answer`); the reward runs exactly as in a run (same pool, timeouts and workers).
With --output every row is written back with `reward` and `info`; without it the first rows are shown.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from rlkit.config import RewardConfig
from rlkit.data import iter_jsonl
from rlkit.errors import ConfigError, DataError

CHUNK = 1024  # rows scored per pool call (and written) at a time
PREVIEW = 5  # rows shown when there is no --output


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reward", help="check reward functions", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = p.add_subparsers(dest="reward_command", required=True, parser_class=type(p))
    score = actions.add_parser("score", help="score completions in a .jsonl file with one reward")
    score.add_argument("spec", help="a built-in name (math, format, length, ...), 'pkg.module:fn' or 'path/file.py:fn'")
    score.add_argument("--input", "-i", type=Path, required=True, help="jsonl: one object per line with 'completion' and the sample's fields")
    score.add_argument("--output", "-o", type=Path, help="write each row back with 'reward' and 'info' here")
    defaults = RewardConfig()
    score.add_argument("--timeout", type=float, default=defaults.timeout, help=f"seconds per call (default {defaults.timeout:g}, as reward.timeout)")
    score.add_argument("--workers", type=int, default=defaults.workers, help=f"worker processes; 0 = in this process (default {defaults.workers}, as reward.workers)")
    score.add_argument("--arg", action="append", default=[], metavar="K=V", help="keyword argument for the reward, e.g. --arg max_len=4096 (repeatable)")
    score.set_defaults(func=main_score)
    listing = actions.add_parser("list", help="list the built-in rewards")
    listing.set_defaults(func=main_list)


def parse_args_list(items: list[str]) -> dict[str, Any]:
    """['max_len=4096', 'tokenizer=tiny'] -> {'max_len': 4096, 'tokenizer': 'tiny'} (values read as YAML scalars)."""
    args: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            raise ConfigError(f"bad --arg '{item}': expected NAME=VALUE, e.g. --arg max_len=4096")
        try:
            args[key] = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            args[key] = raw
    return args


def read_scoring_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) for each non-blank line; a line that is not a JSON object with a string
    'completion' is a DataError naming the file and the line."""
    if not path.is_file():
        raise DataError(f"input file not found: {path}")
    for line_no, row in iter_jsonl(path):
        if not isinstance(row.get("completion"), str):
            got = "no 'completion' field" if "completion" not in row else f"'completion' is {type(row['completion']).__name__}"
            raise DataError(f"{path} line {line_no}: expected a 'completion' string (the text to score), {got}")
        yield line_no, row


def _chunks(rows: Iterator[tuple[int, dict[str, Any]]], size: int) -> Iterator[list[tuple[int, dict[str, Any]]]]:
    chunk: list[tuple[int, dict[str, Any]]] = []
    for item in rows:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _check_fields(path: Path, spec: str, chunk: list[tuple[int, dict[str, Any]]], infos: list[dict[str, Any]]) -> None:
    """A reward that failed for want of a field is a user error about the data, not a reward bug."""
    for (line_no, row), info in zip(chunk, infos):
        missing = info.get("missing")
        if missing:
            fields = ", ".join(sorted(row)) or "none"
            raise DataError(f"{path} line {line_no}: reward '{spec}' needs {missing}, which the row does not have (its fields: {fields})")


def main_score(args: argparse.Namespace) -> int:
    from rlkit.config import RewardSpec
    from rlkit.scoring.pool import RewardPool

    if args.workers < 0 or args.timeout <= 0:
        raise ConfigError("--workers must be >= 0 and --timeout > 0")
    spec = RewardSpec(name=args.spec, args=parse_args_list(args.arg))
    rows = read_scoring_rows(args.input)
    out = args.output.open("w", encoding="utf-8") if args.output else None
    count, total, errors, timeouts, shown = 0, 0.0, 0, 0, 0
    started = time.perf_counter()
    try:
        with RewardPool([spec], workers=args.workers, timeout=args.timeout) as pool:
            startup, started = time.perf_counter() - started, time.perf_counter()  # importing the reward, starting workers
            label = pool.names[0]
            for chunk in _chunks(rows, CHUNK):
                samples = [{"id": f"line-{n}", **{k: v for k, v in row.items() if k != "completion"}} for n, row in chunk]
                batch = pool.score([row["completion"] for _, row in chunk], samples)
                infos = [info[label] for info in batch.infos]
                _check_fields(args.input, args.spec, chunk, infos)
                count, total = count + len(chunk), total + sum(batch.total)
                errors, timeouts = errors + batch.errors, timeouts + batch.timeouts
                for (line_no, row), reward, info in zip(chunk, batch.total, infos):
                    if out is not None:
                        out.write(json.dumps({**row, "reward": reward, "info": info}, default=str) + "\n")
                    elif shown < PREVIEW:
                        shown += 1
                        print(f"line {line_no}: reward {reward:g}  info {json.dumps(info, default=str)[:300]}")
        if out is not None:
            out.close()
    except BaseException as err:
        if out is not None:  # no partial file: a full disk or an error mid-way leaves nothing half-written
            try:
                out.close()
            except OSError:
                pass
            args.output.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename is None and out is not None:
            raise OSError(err.errno, err.strerror, str(args.output)) from err  # a write names no file; say which
        raise
    elapsed = time.perf_counter() - started
    if count == 0:
        raise DataError(f"{args.input}: no rows to score")
    print(
        f"scored {count} rows with '{args.spec}': mean reward {total / count:.4f}, errors {errors}, timeouts {timeouts}, "
        f"{elapsed:.2f} s ({count / max(elapsed, 1e-9):.0f} rows/s) after {startup:.2f} s loading the reward"
    )
    if args.output:
        print(f"rows with 'reward' and 'info' written to {args.output}")
    sys.stdout.flush()
    return 0


def main_list(args: argparse.Namespace) -> int:
    from rlkit.scoring.registry import BUILTIN

    for name, target in sorted(BUILTIN.items()):
        print(f"{name:<14} {target}")
    return 0
