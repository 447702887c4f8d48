"""`rlkit` command line. Each subcommand lives in rlkit/commands/<name>.py with `add_parser` and `main`.

User errors (bad recipe, missing file, bad override) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys

from rlkit.errors import RlkitError

COMMANDS = ["run", "reward", "eval", "plot", "bench", "generate", "select"]
# What `rlkit --help` shows for each, so that listing the commands imports none of them (start-up stays
# well under a second; a command's own module, and whatever heavy library it needs, loads only when run).
SUMMARIES = {
    "run": "run a recipe",
    "reward": "check reward functions",
    "eval": "evaluate a model on math benchmarks",
    "plot": "plot a run's training curves",
    "bench": "time one GRPO step for rlkit and TRL on a workload preset",
    "generate": "sample n completions per problem from a backend, score and keep them",
    "select": "rank a run's problems by their training accuracy history (the ledger)",
}


# Errors of the file system a user can act on (a full disk, a read-only or unwritable place, a file where a
# directory belongs): one line naming the path and the cause, exit 2. Others keep their traceback.
FILE_SYSTEM_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR,
                      errno.EEXIST, errno.ENAMETOOLONG, errno.EFBIG}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as for every user error
        print(f"rlkit: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Every subcommand by name and summary; only `only` is imported and gets its full arguments, so
    `rlkit reward ...` need not import what `rlkit bench` needs."""
    parser = _Parser(prog="rlkit", description="RL post-training for reasoning models")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        if name != only:
            sub.add_parser(name, help=SUMMARIES.get(name), add_help=False)
            continue
        try:
            module = importlib.import_module(f"rlkit.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"rlkit.commands.{name}":
                continue  # subcommand not part of this build
            raise
        module.add_parser(sub)
    parser.commands = sub.choices  # type: ignore[attr-defined] - main() reports a command's errors with its own usage
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    args, extra = parser.parse_known_args(argv)
    if extra:  # `rlkit run RECIPE --dry-run key=value`: an override after a flag
        if getattr(args, "extra_overrides", False) and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except RlkitError as err:
        print(f"rlkit: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in FILE_SYSTEM_ERRORS:
            raise
        from rlkit.files import describe_os_error

        print(f"rlkit: error: {describe_os_error(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
