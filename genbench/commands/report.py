"""`genbench report DIR [--format md|latex|html|csv] [--out FILE]`: rebuild a run's leaderboards and report."""

from __future__ import annotations

import sys
from pathlib import Path

_SUFFIX_FORMAT = {".md": "md", ".markdown": "md", ".tex": "latex", ".html": "html", ".htm": "html", ".csv": "csv"}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report",
        help="rebuild leaderboards, figures and report.html from a run directory's results store",
        description="Rebuild the report of a `genbench run` output directory from its results store alone. "
        "Without --format/--out: write DIR/leaderboard.md, DIR/report.html (self-contained, figures embedded) "
        "and DIR/figures/*.png. With --format: print that format (or write it to --out). Older stores "
        "(earlier schema versions, or only results.csv/json) are read as far as they go; the report says what "
        "is missing. On the FD / KID / precision / recall / density / coverage columns, a model whose difference "
        "from the column's best is not significant by a paired bootstrap over the same reference rows (95% "
        "interval of the difference contains 0; needs the jobs' stored features) is marked ≈, with the "
        "differences under the table.",
    )
    p.add_argument("dir", help="run output directory (holding results.db, or results.json / results.csv)")
    p.add_argument("--format", choices=["md", "latex", "html", "csv"],
                   help="one output format: md (GitHub Markdown), latex, html (the full self-contained report), "
                   "csv (the numbers behind the tables)")
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output (format from --format, "
                   "else from the suffix .md/.tex/.html/.csv)")
    p.add_argument("--paired-boot", type=_boot, default=100, metavar="N",
                   help="replicates of the paired bootstrap behind the tie marks (default 100; 0: no tie call)")
    p.set_defaults(func=run)


def _boot(s: str) -> int:
    from genbench.commands.recommend import _boot as boot

    return boot(s)


def run(args) -> int:
    from genbench.errors import InvalidInputError
    from genbench.fileio import atomic_write_text
    from genbench.report import render, write_report

    fmt = args.format
    if args.out and not fmt:
        fmt = _SUFFIX_FORMAT.get(Path(args.out).suffix.lower())
        if fmt is None:
            raise InvalidInputError(f"cannot tell the format of {args.out} from its suffix: add --format "
                                    "md|latex|html|csv")
    if fmt is None:
        for path in write_report(args.dir, paired_boot=args.paired_boot):
            print(path)
        return 0
    text = render(args.dir, fmt, paired_boot=args.paired_boot)
    if args.out:
        print(atomic_write_text(Path(args.out), text))
    else:
        sys.stdout.write(text)
    return 0
