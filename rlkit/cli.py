"""`rlkit` command line. Each subcommand lives in rlkit/commands/<name>.py with `add_parser` and `main`.

User errors (bad recipe, missing file, bad override) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from rlkit.errors import RlkitError

COMMANDS = ["run", "reward", "eval", "plot", "bench", "generate", "select"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, as for every user error
        print(f"rlkit: error: {message} (see rlkit {self.prog.split()[-1]} --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """All subcommands, or only `only`: `rlkit reward ...` need not import what `rlkit bench` needs."""
    parser = _Parser(prog="rlkit", description="RL post-training for reasoning models")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        if only is not None and name != only:
            continue
        try:
            module = importlib.import_module(f"rlkit.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"rlkit.commands.{name}":
                continue  # subcommand not part of this build
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv[0] if argv and argv[0] in COMMANDS else None).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RlkitError as err:
        print(f"rlkit: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
