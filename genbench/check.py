"""`run_check` (`genbench check`): rerun the baseline's suite (the suite TOML stored in its runs table, restricted
to the datasets, models, seeds and budget its jobs used) with the current code into a fresh directory, then
`genbench.results.compare` the two; exit codes as compare's (0 ok, 1 regression, 2 not comparable). A job that was
done in the baseline and fails now counts as a regression. A baseline is data from whoever produced it: when
its stored suite names users' models by `model = "package.module:factory"`, rerunning it would import and run
that code, so it is refused unless the caller trusts the baseline (`trust_baseline`, `--trust-baseline`) or
gives its own suite (docs/security.md).
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import pandas as pd

from genbench.errors import InvalidInputError

from genbench.eval_protocol import _latest_suite_text, stored_suite_data
from genbench.evaluate import CHECK_MARKER, USER_PREFIX


DEFAULT_CONFIRM_SEEDS = 2  # `genbench check`: more seeds for a flagged job before it counts as a regression

@dataclass
class CheckResult:
    comparison: Any  # genbench.results.compare.Comparison
    out_dir: Path
    suite: Any
    failed: list
    markdown: str

    @property
    def exit_code(self) -> int:
        return self.comparison.exit_code


def _baseline_tables(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    """(runs, jobs, results file) of a baseline run directory or results.db/.json/.csv."""
    p = path
    if p.is_dir():
        for nm in ("results.db", "results.json", "results.csv"):
            if (p / nm).exists():
                p = p / nm
                break
        else:
            raise InvalidInputError(f"baseline {path} holds no results.db, results.json or results.csv")
    if not p.exists():
        raise InvalidInputError(f"baseline {p} does not exist")
    if p.suffix == ".db":
        from genbench.results.store import ResultsStore

        with ResultsStore(p) as s:
            return s.runs_frame(), s.jobs_frame(), p
    if p.suffix == ".json":
        blob = json.loads(p.read_text())
        if not isinstance(blob, dict):
            return pd.DataFrame(), pd.DataFrame(), p
        return pd.DataFrame(blob.get("runs", [])), pd.DataFrame(blob.get("jobs", [])), p
    if p.suffix == ".csv":
        f = pd.read_csv(p)
        cols = [c for c in ("dataset", "model", "seed", "budget") if c in f.columns]
        jobs = f[cols].drop_duplicates().copy()
        jobs["status"] = "done"
        return pd.DataFrame(), jobs, p
    raise InvalidInputError(f"baseline {p}: expected a run directory or a results .db/.json/.csv file")


def stored_factories(data: dict) -> dict[str, str]:
    """{model name: "package.module:factory"} of the users' models a stored suite (TOML-shaped dict) names."""
    models = data.get("models")
    if not isinstance(models, dict):
        return {}
    return {str(name): str(t["model"]) for name, t in models.items() if isinstance(t, dict) and "model" in t}


def _refuse_untrusted_factories(data: dict, path: Path) -> None:
    """InvalidInputError when the baseline's stored suite would import users' code (see module docstring)."""
    factories = stored_factories(data)
    if factories:
        named = ", ".join(f"{n} = {f!r}" for n, f in sorted(factories.items()))
        raise InvalidInputError(
            f"baseline {path}: its stored suite names users' models by Python factory ({named}); rerunning it would "
            "import and run that code. A baseline is data that anyone can have written: pass --trust-baseline if "
            "you trust whoever produced it and the code those names import here, or give your own suite with "
            "--suite NAME_OR_PATH")


def baseline_suite(baseline: str | Path, suite: Optional[str] = None, trust_baseline: bool = False):
    """The suite the baseline ran (stored TOML, or `suite` given by name/path), restricted to the datasets,
    models, seeds and budget of its finished jobs (users' `user:` evaluations are not rerun). A stored suite
    that names users' models by factory is refused unless `trust_baseline` (the user's own `suite` is trusted)."""
    from genbench.suite import apply_overrides, load_suite, parse_suite

    runs, jobs, path = _baseline_tables(Path(baseline))
    if suite is not None:
        s = load_suite(suite)
    else:
        text, sname = _latest_suite_text(runs)
        if not text:
            raise InvalidInputError(f"baseline {path} stores no suite (a results.csv has none): name it with "
                                    "--suite NAME_OR_PATH")
        data = stored_suite_data(text, str(path))
        if not trust_baseline:
            _refuse_untrusted_factories(data, path)
        s = parse_suite(data, source=f"{path} (suite {sname!r} stored in the baseline)")
        s.toml_text = text
    if not jobs.empty and "status" in jobs.columns:
        done = jobs[(jobs["status"].fillna("done") == "done") & ~jobs["model"].astype(str).str.startswith(USER_PREFIX)]
        if done.empty:
            raise InvalidInputError(f"baseline {path} has no finished job to compare with")
        models = [m.name for m in s.models if m.name in set(done["model"])]
        datasets = [d.name for d in s.datasets if d.name in set(done["dataset"])]
        seeds = sorted({int(x) for x in done["seed"]}) if "seed" in done.columns else None
        budgets = sorted(set(done["budget"].dropna().astype(str))) if "budget" in done.columns else []
        missing = sorted(set(done["model"]) - {m.name for m in s.models})
        if missing:
            raise InvalidInputError(f"baseline {path}: models {missing} are not in suite {s.name!r}; give the suite "
                                    "that produced it with --suite")
        s = apply_overrides(s, models=models, datasets=datasets, seeds=seeds,
                            budget=budgets[0] if len(budgets) == 1 else None)
    return s


def run_check(baseline: str | Path, *, tolerances: Optional[str | Path] = None, junit: Optional[str | Path] = None,
              out: Optional[str | Path] = None, suite: Optional[str] = None, device: Optional[str] = None,
              quiet: bool = True, log: Optional[Callable[[str], None]] = None, timing: bool = True,
              alpha: float = 0.05, calibration_files: Optional[list] = None,
              trust_baseline: bool = False, confirm_seeds: int = DEFAULT_CONFIRM_SEEDS,
              paired_boot: Optional[int] = None) -> CheckResult:
    """Rerun the baseline's suite into a fresh directory and compare (see `genbench check --help`). When the
    comparison flags a regression and `confirm_seeds` > 0, the flagged (dataset, model) jobs are rerun with that
    many more seeds (the seeds after the suite's) and the comparison is made again on every seed: a regression
    reproduces, a rare training outcome of one seed does not (docs/gate.md, *Confirmation seeds*). Feature
    scores are judged with a paired bootstrap of `paired_boot` replicates (default 100; 0: none) where the
    baseline stored its features (docs/gate.md, *Paired bootstrap*)."""
    from genbench.results.compare import (Row, compare_frames, environment_of, load_results, load_tolerances,
                                  paired_inputs, to_junit, to_markdown)
    from genbench.results.paired import DEFAULT_PAIRED_BOOT
    from genbench.results.noise import load_calibration
    from genbench.device import resolve_device
    from genbench.fileio import atomic_write_text
    from genbench.rundir import check_fresh_allowed, run_dir_lock
    from genbench.pipeline.driver import Runner
    from genbench.suite import apply_overrides

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    base_path = Path(baseline)
    tol = load_tolerances(tolerances)  # a bad tolerance file fails before any work
    paired_boot = DEFAULT_PAIRED_BOOT if paired_boot is None else paired_boot
    paired_inputs(base_path, base_path, paired_boot)  # so does a bad --paired-boot
    load_calibration(calibration_files)  # so does a bad calibration file
    s = baseline_suite(base_path, suite, trust_baseline=trust_baseline)
    out_dir = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="genbench-check-"))
    base_dir = (base_path if base_path.is_dir() else base_path.parent).resolve()
    if out_dir.resolve() == base_dir:
        raise InvalidInputError(f"--out {out_dir} is the baseline's directory; give a new directory")
    if (out_dir / "results.db").exists() and not (out_dir / CHECK_MARKER).exists():
        raise InvalidInputError(f"--out {out_dir} holds the results of another run; give a new (or empty) directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    with run_dir_lock(out_dir):  # held for the whole check
        check_fresh_allowed(out_dir, ("results.db", "artifacts", "checkpoints", "cache"))
        atomic_write_text(out_dir / CHECK_MARKER, f"genbench check output; baseline {base_path.resolve()}\n")
        dev = str(resolve_device(device or s.device, flag="--device"))
        log(f"genbench check: rerunning suite {s.name!r} ({len(s.pairs()) * len(s.seeds)} jobs) on {dev} into {out_dir}")
        summary = Runner(s, out_dir, device=dev, fresh=True, quiet=quiet, argv=["genbench", "check", *sys.argv[1:]],
                         log=(lambda m: None) if quiet else log).run()

        base = load_results(base_path)
        base = base[~base["model"].astype(str).str.startswith(USER_PREFIX)]
        calibration = load_calibration(calibration_files)

        def judge():
            new = load_results(out_dir)
            env = {"baseline": environment_of(base_path, base), "new": environment_of(out_dir, new)}
            env["differs"] = env["baseline"] != env["new"]
            return compare_frames(base, new, tol, timing=timing, alpha=alpha, calibration=calibration, env=env,
                                  paired=paired_inputs(base_path, out_dir, paired_boot))

        cmp = judge()
        failed = list(summary.failed)
        confirmed = ""
        flagged = sorted({(r.dataset, r.model) for r in cmp.regressions})
        if confirm_seeds > 0 and flagged and not cmp.problems:
            extra = list(range(max(s.seeds) + 1, max(s.seeds) + 1 + confirm_seeds))
            log(f"genbench check: {len(flagged)} job(s) flagged; confirming with seeds {extra}: "
                + ", ".join(f"{d}/{m}" for d, m in flagged))
            for ds in sorted({d for d, _ in flagged}):
                s2 = apply_overrides(s, datasets=[ds], models=sorted({m for d, m in flagged if d == ds}), seeds=extra)
                more = Runner(s2, out_dir, device=dev, fresh=False, quiet=quiet,
                              argv=["genbench", "check", *sys.argv[1:]], log=(lambda m: None) if quiet else log).run()
                failed += list(more.failed)
            before = {(r.dataset, r.model, r.metric, r.variant) for r in cmp.regressions}
            cmp = judge()
            still = {(r.dataset, r.model, r.metric, r.variant) for r in cmp.regressions}
            confirmed = (f"Confirmation: {len(flagged)} flagged job(s) ({', '.join(f'{d}/{m}' for d, m in flagged)}) "
                         f"were rerun with {confirm_seeds} more seed(s) {extra} and judged again on all their seeds: "
                         f"{len(before & still)} of {len(before)} flagged score(s) still regress"
                         + (f", {len(still - before)} more now do" if still - before else "") + ".\n\n")
        for job_id, err in failed:
            ds, model = job_id.split("/")[:2]
            cmp.rows.append(Row(ds, model, "job", "", None, None, None, 0.0, "", "regressed", True, "",
                                detail=f"job {job_id} failed: {err.splitlines()[0]}"))
        md = (f"# genbench check\n\nbaseline: {base_path}\nnew: {out_dir} (suite {s.name!r}, device {dev})\n\n"
              + confirmed + to_markdown(cmp))
        if failed:
            md += "\nFailed jobs (counted as regressions):\n" + "".join(f"- {j}: {e.splitlines()[0]}\n" for j, e in failed)
        atomic_write_text(out_dir / "check.md", md)
        if junit:
            atomic_write_text(Path(junit), to_junit(cmp, "genbench.check"))
    return CheckResult(cmp, out_dir, s, failed, md)


__all__ = ["CheckResult", "run_check", "baseline_suite", "stored_factories"]
