"""Leaderboards and reports from a run directory's results store.

    from genbench.report import write_report
    write_report(run_dir)                 # leaderboard.md + report.html + figures/*.png, returns the paths
    write_report(run_dir, formats=("md", "html", "csv", "latex"))

`render(run_dir, fmt)` returns one format as text ("md", "latex", "html", "csv") without writing anything but
the figures the HTML embeds. `paired_boot` (default 100; 0: none) is the replicate count of the paired bootstrap
that calls ties on the leaderboards' FD / KID / P/R/D/C columns (genbench.results.paired_ties), where the run stored
its jobs' features. Everything is rebuilt from the store alone (results.db, or its results.json /
results.csv exports for an older or partial run), so `genbench report DIR` works long after the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from genbench.errors import InvalidInputError
from genbench.fileio import atomic_write_text
from genbench.report import figures as _figures
from genbench.report import html as _html
from genbench.report import summary as _summary
from genbench.report import table_formats as _formats
from genbench.report import tables as _tables
from genbench.results.paired import DEFAULT_PAIRED_BOOT
from genbench.report.data import RunData, load_run

FORMATS = ("md", "html", "latex", "csv")
DEFAULT_FORMATS = ("md", "html")
FILE_NAMES = {"md": "leaderboard.md", "html": "report.html", "latex": "leaderboard.tex", "csv": "leaderboard.csv"}


def _check(formats: Iterable[str]) -> list[str]:
    fs = list(dict.fromkeys(formats))
    bad = [f for f in fs if f not in FORMATS]
    if bad:
        raise InvalidInputError(f"unknown report format(s) {bad}: choose from {', '.join(FORMATS)}")
    return fs


def _markdown(data: RunData, boards, summaries) -> str:
    text = _formats.to_markdown(boards, data.notes)
    return text.rstrip("\n") + "\n\n" + _summary.to_markdown(summaries).rstrip("\n") + "\n"


def _ties(data: RunData, paired_boot: int):
    from genbench.results.paired_ties import PairedTies

    return PairedTies(data.dir, paired_boot)


def _build(data: RunData, fmt: str, fig_dir: Path | None = None, boards=None,
           paired_boot: int = DEFAULT_PAIRED_BOOT) -> tuple[str, list[Path]]:
    if boards is None:
        boards = _tables.build_leaderboards(data, _ties(data, paired_boot))
    if fmt == "md":
        return _markdown(data, boards, _summary.summarise(data, boards)), []
    if fmt == "latex":
        return _formats.to_latex(boards, data.notes), []
    if fmt == "csv":
        return _formats.to_csv(boards), []
    figs, fig_notes = _figures.make_figures(data, fig_dir)
    page = _html.render_html(data, boards, _summary.summarise(data, boards), figs, data.notes + fig_notes)
    return page, [f.path for f in figs]


def render(run_dir: str | Path, fmt: str = "md", paired_boot: int = DEFAULT_PAIRED_BOOT) -> str:
    """One format as text. "html" also (re)writes the figure PNGs under DIR/figures, which it embeds."""
    (fmt,) = _check([fmt])
    return _build(load_run(run_dir), fmt, paired_boot=paired_boot)[0]


def write_report(run_dir: str | Path, formats: Iterable[str] = DEFAULT_FORMATS,
                 paired_boot: int = DEFAULT_PAIRED_BOOT) -> list[Path]:
    """Write the report files into the run directory; returns every path written (figures included)."""
    fs = _check(formats)
    data = load_run(run_dir)
    boards = _tables.build_leaderboards(data, _ties(data, paired_boot))  # once: the tie calls cost seconds
    written: list[Path] = []
    for fmt in fs:
        text, extra = _build(data, fmt, boards=boards)
        written += extra
        written.append(atomic_write_text(data.dir / FILE_NAMES[fmt], text))
    return written


__all__ = ["write_report", "render", "load_run", "FORMATS", "FILE_NAMES"]
