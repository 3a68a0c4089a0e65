"""The README's screenshot: what `make run` prints at its end (the leaderboard and the regression check), captured
from the committed reference results, as text (docs/img/make-run.txt and the README's code block) and as a PNG
(docs/img/make-run.png, rendered with matplotlib in a monospace font).

No training: the run directory is a copy of the committed reports/quick, placed at runs/quick in a temporary folder,
and the capture is the output of the same function `genbench run --leaderboard --against reports/quick` ends with.
A rerun on the same kind of CPU gives the same quality numbers, so this is what `make run` prints there after its
progress lines (its timings differ run to run).

    .venv/bin/python scripts/readme_screenshot.py           # rewrite the text, the PNG and the README block
    .venv/bin/python scripts/readme_screenshot.py --check   # exit 1 if the README or the text file is stale

Run it after regenerating reports/quick (tests/test_docs.py fails until then).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "reports" / "quick"
TEXT = ROOT / "docs" / "img" / "make-run.txt"
PNG = ROOT / "docs" / "img" / "make-run.png"
README = ROOT / "README.md"
START, END = "<!-- make-run-capture:start -->", "<!-- make-run-capture:end -->"
STORE_FILES = ("results.db", "results.csv", "results.json")


def capture(reference: Path = REFERENCE) -> str:
    """The end of `make run`'s output for a run equal to `reference` (its leaderboard and the check against it)."""
    sys.path.insert(0, str(ROOT))
    from genbench.report.terminal import finish_run

    with tempfile.TemporaryDirectory() as tmp:
        run, ref = Path(tmp) / "runs" / "quick", Path(tmp) / "reports" / "quick"
        for d in (run, ref):
            d.mkdir(parents=True)
            for name in STORE_FILES:
                if (reference / name).exists():
                    shutil.copy2(reference / name, d / name)
        buf, cwd = io.StringIO(), os.getcwd()
        os.chdir(tmp)  # so the paths printed are the ones `make run` prints: runs/quick, reports/quick
        try:
            with contextlib.redirect_stdout(buf):
                finish_run(Path("runs/quick"), True, "reports/quick")
        finally:
            os.chdir(cwd)
    return buf.getvalue().strip("\n") + "\n"


def readme_block(text: str) -> str:
    return f"{START}\n```text\n{text}```\n{END}"


def current_readme_block() -> str:
    readme = README.read_text(encoding="utf-8")
    if START not in readme or END not in readme:
        raise SystemExit(f"{README}: the markers {START} / {END} are missing; put them where the capture goes")
    a, b = readme.index(START), readme.index(END) + len(END)
    return readme[a:b]


def render_png(text: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = text.rstrip("\n").split("\n")
    cols = max(len(ln) for ln in lines)
    size, char_w, line_h, pad = 10.0, 0.6, 1.35, 0.25  # font points; DejaVu Sans Mono advance 0.6 em
    width = cols * char_w * size / 72 + 2 * pad
    height = (len(lines) + 1.5) * line_h * size / 72 + 2 * pad
    fig = plt.figure(figsize=(width, height), dpi=110)
    fig.patch.set_facecolor("#1e1e1e")
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_axis_off()
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.text(pad, pad, "$ make run   (end of its output)", family="DejaVu Sans Mono", size=size, color="#9cdcfe",
            va="top")
    y = pad + 1.5 * line_h * size / 72
    for ln in lines:
        color = "#d4d4d4"
        if ln.startswith("Verdict:"):
            color = "#6a9955" if "no regression" in ln else "#f44747"
        elif ln and not ln.startswith(" "):
            color = "#ffffff"
        elif "<-" in ln:
            color = "#a0a0a0"
        ax.text(pad, y, ln, family="DejaVu Sans Mono", size=size, color=color, va="top")
        y += line_h * size / 72
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, facecolor=fig.get_facecolor())
    plt.close(fig)
    os.replace(tmp, path)


def main(argv=None) -> int:
    from genbench.fileio import atomic_write_text

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only check that the README and the text file are current")
    args = ap.parse_args(argv)
    text = capture()
    block = current_readme_block()
    if args.check:
        stale = [str(p) for p, ok in ((README, block == readme_block(text)),
                                      (TEXT, TEXT.exists() and TEXT.read_text(encoding="utf-8") == text)) if not ok]
        if stale:
            print(f"stale: {', '.join(stale)}; run: .venv/bin/python scripts/readme_screenshot.py", file=sys.stderr)
            return 1
        return 0
    TEXT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(TEXT, text)
    render_png(text, PNG)
    atomic_write_text(README, README.read_text(encoding="utf-8").replace(block, readme_block(text)))
    print(f"wrote {TEXT.relative_to(ROOT)}, {PNG.relative_to(ROOT)} and the README block")
    return 0


if __name__ == "__main__":
    sys.exit(main())
