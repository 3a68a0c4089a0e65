"""README.md and docs/ stay true to the code: the two commands are the Makefile's (and CI runs the README's test
command), every `genbench ...` command shown uses subcommands and flags the CLI has, every relative link and every
repository path named resolves, and the README's screenshot is the current output for the committed reports/quick."""

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from genbench.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]


def _text(p: Path) -> str:
    return p.read_text(encoding="utf-8")


def _fences(text: str) -> list[str]:
    return re.findall(r"```[a-z]*\n(.*?)```", text, re.S)


def _subparsers(parser: argparse.ArgumentParser) -> dict:
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            return dict(a.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set:
    return {s for a in parser._actions for s in a.option_strings}


def _make_dry_run(target: str) -> list[str]:
    out = subprocess.run(["make", "-n", "-C", str(ROOT), target], capture_output=True, text=True, check=True).stdout
    return [ln.strip() for ln in out.splitlines() if ln.strip() and not ln.startswith("make")]


# --- the two commands --------------------------------------------------------------------------------------------

def test_readme_leads_with_the_two_commands_and_ci_runs_its_test_command():
    text = _text(README)
    first_block = _fences(text)[0]
    commands = [ln.split("#")[0].strip() for ln in first_block.splitlines() if ln.strip()]
    assert commands == ["make run", "make test"], first_block
    ci = [ln.strip() for ln in _text(ROOT / ".ci" / "run").splitlines()
          if ln.strip() and not ln.lstrip().startswith("#") and not ln.startswith(("set ", "cd "))]
    assert ci == ["make test"], ci


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("target", ["run", "test"])
def test_readme_quotes_what_the_makefile_runs(target):
    """The README says what each command runs; that must be the Makefile's recipe (after the set-up)."""
    recipe = _make_dry_run(target)
    assert recipe[0] == "bash scripts/setup.sh", recipe
    assert f"`{recipe[-1]}`" in re.sub(r"\s+", " ", _text(README)), recipe[-1]


# --- commands and flags ------------------------------------------------------------------------------------------

def _invocations(text: str) -> list[str]:
    """`genbench ...` command lines: lines of code blocks, inline code spans, and CLI-table rows."""
    out = []
    for block in _fences(text):
        for ln in block.splitlines():
            ln = ln.split(" # ")[0].strip()
            m = re.match(r"(?:\.venv/bin/)?genbench (.*)", ln)
            if m:
                out.append(m.group(1))
    flat = re.sub(r"```.*?```", "", text, flags=re.S)
    for row in re.findall(r"^\|(.*)\|$", flat, re.M):  # a table row naming a command owns the flags it lists
        spans = re.findall(r"`([^`]+)`", row)
        if spans and spans[0].startswith("genbench "):
            out.append(spans[0][len("genbench "):] + " " + " ".join(s for s in spans[1:] if s.startswith("--")))
    for span in re.findall(r"`([^`]+)`", re.sub(r"\s+", " ", flat)):
        if span.startswith("genbench "):
            out.append(span[len("genbench "):])
    return out


def _check_invocation(args: str, commands: dict) -> list[str]:
    tokens = [t.strip("[](),;") for t in args.replace("\\|", "|").split()]
    if not tokens or not tokens[0] or tokens[0].isupper() or tokens[0].startswith("-"):
        return []  # `genbench COMMAND --help`, `genbench --version`
    problems = []
    for name in tokens[0].split("|"):
        if name not in commands:
            return [f"unknown command {name!r} in `genbench {args}`"]
    parser = commands[tokens[0].split("|")[0]]
    allowed = _options(parser)
    actions = _subparsers(parser)
    if actions:
        named = [a for a in (tokens[1].split("|") if len(tokens) > 1 else []) if a in actions]
        if len(tokens) > 1 and not named and not tokens[1].isupper() and not tokens[1].startswith("-"):
            problems.append(f"unknown action {tokens[1]!r} of `genbench {tokens[0]}` in `genbench {args}`")
        for a in named or list(actions):
            allowed |= _options(actions[a])
    for t in tokens[1:]:
        if t.startswith("--"):
            flag = t.split("=")[0]
            if flag not in allowed:
                problems.append(f"`genbench {tokens[0]}` has no option {flag} (in `genbench {args}`)")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_genbench_command_shown_uses_real_commands_and_flags(page):
    commands = _subparsers(build_parser())
    found = _invocations(_text(page))
    problems = [p for inv in found for p in _check_invocation(inv, commands)]
    assert not problems, "\n".join(problems)
    if page == README:  # the README shows every job
        shown = {inv.split()[0] for inv in found if inv.split()}
        assert {"run", "recommend", "compare", "check", "eval", "report"} <= shown, shown


def test_the_flag_check_can_fail():
    commands = _subparsers(build_parser())
    assert _check_invocation("compare a b --no-such-flag", commands)
    assert _check_invocation("frobnicate --out x", commands)
    assert _check_invocation("assets fecth x", commands)
    assert not _check_invocation("assets fetch --all --keep-going", commands)


# --- links and paths ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page):
    text = re.sub(r"```.*?```", "", _text(page), flags=re.S)
    missing = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        if not (page.parent / target.split("#")[0]).exists():
            missing.append(target)
    assert not missing, f"{page.name}: links to missing files: {missing}"


REPO_PATH = re.compile(r"(?<![\w./$<-])((?:genbench|reference_models|tests|benchmarks|scripts|docs|reports/quick|"
                       r"reports/benchmarks)/[\w./*<>-]*)")


def _exists(path: str) -> bool:
    if "<" in path:  # a pattern such as genbench/suites/<name>.toml
        return True
    return any(ROOT.glob(path)) if "*" in path else (ROOT / path).exists()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_repository_paths_named_exist(page):
    """A file or folder named in code (`genbench/suite.py`, `tests/test_eval.py`) exists: a move must update the
    docs that name it."""
    text = re.sub(r"\s+", " ", _text(page))
    named = {p.rstrip(".,:;") for span in re.findall(r"`([^`]+)`", text) for p in REPO_PATH.findall(span)}
    missing = sorted(p for p in named if not _exists(p))
    assert not missing, f"{page.name} names paths that do not exist: {missing}"


# --- the screenshot ----------------------------------------------------------------------------------------------

def test_readme_screenshot_is_the_current_output_for_the_committed_results():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import readme_screenshot as shot
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    text = shot.capture()
    assert "Leaderboard" in text and "\nVerdict: no regression" in text
    fix = "run: .venv/bin/python scripts/readme_screenshot.py (after regenerating reports/quick)"
    assert shot.current_readme_block() == shot.readme_block(text), f"README's capture is stale; {fix}"
    assert shot.TEXT.read_text(encoding="utf-8") == text, f"{shot.TEXT} is stale; {fix}"
    assert shot.PNG.exists() and shot.PNG.stat().st_mtime_ns > 0 and shot.PNG.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "docs/img/make-run.png" in _text(README)
