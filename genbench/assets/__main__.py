"""`python -m genbench.assets list|fetch|verify ...`: the `genbench assets` command without importing the
rest of the CLI (used by scripts/setup.sh, where it must be quick when everything is already cached)."""

import argparse
import sys

from genbench.commands.assets import add_parser
from genbench.errors import GenbenchError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genbench")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["assets", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except GenbenchError as e:
        print(f"genbench: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
