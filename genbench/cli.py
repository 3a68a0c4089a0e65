"""`genbench` command line. Each subcommand lives in `genbench/commands/<name>.py` and exposes
`add_parser(subparsers)`; the parser's `func(args) -> int` runs it."""

from __future__ import annotations

import argparse
import importlib
import sqlite3
import sys

from genbench import __version__
from genbench.errors import GenbenchError, disk_full_message, is_disk_full

# Subcommand modules, in the order `--help` lists them.
COMMAND_MODULES = [
    "genbench.commands.run",
    "genbench.commands.list",
    "genbench.commands.assets",
    "genbench.commands.data",
    "genbench.commands.stats",
    "genbench.commands.compare",
    "genbench.commands.recommend",
    "genbench.commands.eval",
    "genbench.commands.check",
    "genbench.commands.calibrate",
    "genbench.commands.report",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genbench",
        description="Train or load reference generative models, score quality, diversity and speed under a "
        "named protocol, and write leaderboards.",
    )
    parser.add_argument("--version", action="version", version=f"genbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in COMMAND_MODULES:
        importlib.import_module(mod).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except GenbenchError as e:
        print(f"genbench: error: {e}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.Error, RuntimeError) as e:  # a full disk is not a failed job: exit 2, one line
        if not is_disk_full(e):
            raise
        print(f"genbench: error: {disk_full_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
