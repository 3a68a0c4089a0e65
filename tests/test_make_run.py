"""`make run` does the main job visibly: its command (read from the Makefile with `make -n`), run on the smoke
suite into a temporary directory, prints each dataset's ranked models and the reference points, then the
regression check (here against the run itself: one line per dataset and the verdict "no regression")."""

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from genbench.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]


def make_run_command(out: Path, reference: Path) -> list:
    """`make run`'s genbench command for the smoke suite, with this interpreter instead of .venv/bin/genbench."""
    dry = subprocess.run(["make", "-n", "-C", str(ROOT), "run", "SUITE=smoke", f"RUN_OUT={out}",
                          f"REFERENCE={reference}"], capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in dry.splitlines() if "genbench run" in ln)
    argv = shlex.split(line)
    assert argv[0].endswith("genbench") and argv[1] == "run"
    return [sys.executable, "-m", "genbench.cli"] + argv[1:]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_prints_ranked_models_and_the_regression_verdict(tmp_path):
    out = tmp_path / "runs" / "smoke"
    cmd = make_run_command(out, out)
    assert "--leaderboard" in cmd and cmd[cmd.index("--against") + 1] == str(out)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    text = r.stdout
    board = text.split("Leaderboard (full tables", 1)[1].split("Regression check against", 1)[0]
    suite = load_suite("smoke")
    for ds in suite.datasets:
        name = ds.name
        section = board.split(f"\n{name} (", 1)[1].split("\n\n", 1)[0]
        assert "models ranked on" in section.splitlines()[0]
        ranked = [ln.split()[1] for ln in section.splitlines()[1:] if ln.strip()[:1].isdigit()]
        assert ranked, section
        assert "reference points (bounds, not ranked):" in section
        assert "<- memorisation ceiling" in section and "<- classical floor" in section
        assert "train-copy" not in ranked and "gmm" not in ranked and "ngram" not in ranked
    check = text.split("Regression check against", 1)[1]
    for ds in suite.datasets:
        assert f"\n  {ds.name}: no regression" in check
    assert "\nVerdict: no regression" in check
    assert (out / "results.db").exists() and (out / "leaderboard.md").exists()
