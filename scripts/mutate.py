"""Mutation testing of genbench's core modules, each against its own test files (`make mutate`).

For every module in MODULES this generates first-order mutants with `ast` (one small behaviour change each:
arithmetic, comparison and boolean operators swapped, numeric and boolean constants changed, min/max, any/all and
mean/median swapped, `not` and unary minus dropped, a call statement deleted), then runs the module's own test
files once per mutant. A mutant is *killed* when the tests fail (or error, or time out) and *survives* when
they pass; a survivor is either a missing test or an equivalent mutant (same behaviour), which a person has
to tell apart (reports/benchmarks/mutation.md).

Speed (scripts/mutate_select.py; measured in reports/benchmarks/mutation.md):
- *Test selection.* The unmutated run records which tests execute each line of the module (a trace function,
  with broad fixtures counted for every test that requests them). A mutant then runs only the tests that execute
  its lines: the others run exactly as on the unmutated module and cannot kill it. A mutant in code no test
  executes survives without a run (reported as "no test runs it"). Code that ran at import or collection time
  runs the whole list. `--no-select` runs the whole list for every mutant.
- *Warm processes.* The heavy third-party imports (torch, numpy, pandas, scipy, sklearn, pytest) happen once in
  this process. Per module, a forked server imports the test files once (pytest's collection); a mutant inside
  function bodies runs in a child of that server, which swaps the changed functions' code in place (wherever
  they are referenced) and runs its tests. A mutant in module- or class-level code, or one that cannot be
  swapped, runs in a child of this process whose import system serves the mutated module (imported fresh).
  `--no-swap` imports every mutant fresh.
- `--jobs N` runs N mutants at once (one core each); meant to run under `nice -n 19`. `--changed-since REV`
  keeps the modules that differ from REV (`make mutate-changed SINCE=main`).

Not mutated: docstrings and other string constants (messages, SQL, names), f-strings, annotations, `raise`
statements (error paths are checked by their condition, which is mutated), and lines marked
`# pragma: no mutate`.

Usage:
    python scripts/mutate.py                       # every module in MODULES
    python scripts/mutate.py genbench/results/store.py     # one module (repeatable)
    python scripts/mutate.py genbench/results/store.py --list
    python scripts/mutate.py genbench/results/store.py --only 3,17   # rerun some mutants
    python scripts/mutate.py --changed-since main --jobs 2            # the modules a branch changed
Results: one JSON per module under --out (default reports/benchmarks/mutation_runs/), survivors printed.
"""

from __future__ import annotations

import argparse
import ast
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mutate_select import ALL, Coverage, Recorder, swap_in
from mutate_session import WarmSession, silenced

ROOT = Path(__file__).resolve().parents[1]

# module -> the pytest arguments of its own tests (files, node ids, -k filters)
_REG = ["tests/test_metrics_registry.py"]
_GATE = ["tests/test_compare.py", "tests/test_gate.py", "tests/test_gate_details.py", "tests/test_gate_timing.py",
         "tests/test_gate_pins.py"]
MODULES: dict[str, list[str]] = {
    "genbench/metrics/_util.py": ["tests/test_metrics_fd.py", "tests/test_metrics_kid.py", *_REG],
    "genbench/metrics/base.py": [*_REG, "tests/test_store.py"],
    "genbench/metrics/bootstrap.py": _REG,
    "genbench/metrics/builtin.py": [*_REG, "tests/test_metrics_declarations.py"],
    "genbench/metrics/context.py": [*_REG, "tests/test_metrics_declarations.py"],
    "genbench/metrics/diversity.py": ["tests/test_metrics_diversity.py"],
    "genbench/metrics/frechet.py": ["tests/test_metrics_fd.py", "tests/test_metrics_fd_features.py"],
    "genbench/metrics/kid.py": ["tests/test_metrics_kid.py", *_REG],
    "genbench/metrics/likelihood.py": ["tests/test_metrics_likelihood.py"],
    "genbench/metrics/manifold.py": ["tests/test_metrics_manifold.py", "tests/test_metrics_prdc.py"],
    "genbench/metrics/modes.py": ["tests/test_metrics_modes.py"],
    "genbench/metrics/registry.py": [*_REG, "tests/test_metrics_declarations.py"],
    # ShardStats (the merge of sharded feature passes): test_shards.py's unit tests, not its runs on workers
    "genbench/metrics/stats.py": ["tests/test_metrics_fd.py", "tests/test_shards.py", "-k",
                                  "not test_shards or merged_fd_equals or shard_items or different_shifts or "
                                  "merged_sums or shard_stats"],
    # the CLIP extractor tests in that file do not use cmmd.py (and load transformers): left out
    "genbench/metrics/cmmd.py": ["tests/test_metrics_cmmd.py", "-k",
                                 "not equal_the_reference_pipeline and not clip_absent"],
    "genbench/metrics/inception_score.py": ["tests/test_metrics_inception_score.py"],
    "genbench/metrics/mauve.py": ["tests/test_metrics_mauve.py"],
    "genbench/metrics/fd_infinity.py": ["tests/test_metrics_fd_infinity.py"],
    # the text models' tests train networks (slow): only the likelihood-protocol ones that use metrics/text.py
    "genbench/metrics/text.py": ["tests/test_text_metrics.py", "tests/test_text_models.py", "-k",
                                 "not test_text_models or exact_context or perplexity_matches"],
    # of test_refstats.py only the k-NN radii tests use knn.py (the others test the cache; one runs subprocesses)
    "genbench/metrics/knn.py": ["tests/test_metrics_knn.py", "tests/test_metrics_prdc.py", "tests/test_refstats.py",
                                "-k", "not test_refstats or radii"],
    "genbench/metrics/prdc_bootstrap.py": ["tests/test_metrics_prdc.py", *_REG],
    # the fast per-function tests first (-x stops at the first failure); left out: the 20 s oracle pipeline run
    # (its intra-class FD / recall / coverage are the unit-tested functions') and the guidance sweep / figure / suite
    # tests, which only check that the scores are recorded and drawn
    "genbench/metrics/conditional.py": ["tests/test_conditional_diversity.py", "tests/test_conditional.py",
                                        "tests/test_conditional_folders.py", "-k",
                                        "not intra_fd_near_real_vs_real and not guidance"],
    # left out: the dataset recipe, CycleGAN and suite-parsing tests (they do not use translation.py) and the two
    # runner jobs (15 s; their scores are the unit-tested functions')
    "genbench/metrics/translation.py": ["tests/test_translation.py", "-k",
                                        "not recipe_is_deterministic and not cyclegan and not bad_input and not "
                                        "identity_and_oracle and not wrong_shape"],
    # the translation data (both pairs' recipes are pinned by their hashes); left out: the metric, CycleGAN and
    # runner tests, whose data is the recipe-tested one
    "genbench/data/translation.py": ["tests/test_translation.py", "-k",
                                     "recipe_is_deterministic or edge_map or bad_input or describe_what"],
    "genbench/metrics/text_prefix.py": ["tests/test_metrics_text_prefix.py", "tests/test_text_prefix.py"],
    "genbench/metrics/text_speed.py": ["tests/test_metrics_text_speed.py",
                                       "tests/test_text_metrics.py::test_speed_metrics_run"],
    "genbench/results/paired_ties.py": ["tests/test_paired_ties.py"],
    "genbench/report/column_ties.py": ["tests/test_paired_ties.py"],
    "genbench/results/compare.py": [*_GATE, "tests/test_paired.py"],
    # split out of compare.py: the same gate tests guard them (the paired test's wiring: test_paired.py)
    "genbench/results/judge.py": [*_GATE, "tests/test_paired.py", "tests/test_paired_math.py"],
    "genbench/results/result_files.py": _GATE,
    "genbench/results/tolerance.py": _GATE,
    "genbench/results/paired.py": ["tests/test_paired.py", "tests/test_paired_math.py"],
    "genbench/results/stored_features.py": ["tests/test_paired.py", "tests/test_stored_features.py"],
    "genbench/results/noise.py": ["tests/test_gate.py", "tests/test_gate_details.py", "tests/test_compare.py",
                                  "tests/test_paired.py", "tests/test_paired_math.py"],
    "genbench/results/recommend.py": ["tests/test_recommend.py", "tests/test_paired_ties.py"],
    "genbench/results/recommendation.py": ["tests/test_recommend.py", "tests/test_paired_ties.py"],
    "genbench/results/store.py": ["tests/test_store.py"],
    "genbench/results/store_rows.py": ["tests/test_store.py"],
    "genbench/results/store_files.py": ["tests/test_store.py"],
}

_BINOP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div,
          ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult, ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd,
          ast.LShift: ast.RShift, ast.RShift: ast.LShift}
_CMPOP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
          ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn, ast.NotIn: ast.In}
_NAMESWAP = {"min": "max", "max": "min", "any": "all", "all": "any"}
_ATTRSWAP = {"mean": "median", "median": "mean", "min": "max", "max": "min", "argmin": "argmax", "argmax": "argmin",
             "amin": "amax", "amax": "amin"}


def _short(node: ast.AST, n: int = 90) -> str:
    s = ast.unparse(node).replace("\n", " ")
    return s if len(s) <= n else s[: n - 3] + "..."


class Mutator(ast.NodeTransformer):
    """Numbers the mutation sites of a module in source order; with `target` set, applies that one only."""

    def __init__(self, lines: list[str], target: int | None = None):
        self.lines, self.target = lines, target
        self.count = 0
        self.sites: list[dict] = []
        self.applied: dict | None = None

    # ---- what may be mutated ------------------------------------------------------------------------------
    def _pragma(self, node: ast.AST) -> bool:
        ln = getattr(node, "lineno", None)
        return ln is not None and "pragma: no mutate" in self.lines[ln - 1]

    def _mutations(self, node: ast.AST) -> list[tuple[str, callable]]:
        out = []
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOP:
            out.append(("binop", lambda: ast.BinOp(node.left, _BINOP[type(node.op)](), node.right)))
        elif isinstance(node, ast.AugAssign) and type(node.op) in _BINOP:
            out.append(("augassign", lambda: ast.AugAssign(node.target, _BINOP[type(node.op)](), node.value)))
        elif isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                if type(op) in _CMPOP:
                    def make(i=i):
                        ops = list(node.ops)
                        ops[i] = _CMPOP[type(ops[i])]()
                        return ast.Compare(node.left, ops, node.comparators)
                    out.append(("compare", make))
        elif isinstance(node, ast.BoolOp):
            out.append(("boolop", lambda: ast.BoolOp(ast.Or() if isinstance(node.op, ast.And) else ast.And(), node.values)))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
            if not (isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant)):
                out.append(("unary", lambda: node.operand))
        elif isinstance(node, ast.Constant) and not isinstance(node.value, (str, bytes)) and node.value is not None:
            v = node.value
            if isinstance(v, bool):
                out.append(("constant", lambda: ast.Constant(not v)))
            elif isinstance(v, int):
                out.append(("constant", lambda: ast.Constant(v + 1)))
            elif isinstance(v, float):
                out.append(("constant", lambda: ast.Constant(v + 1.0)))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _NAMESWAP:
            out.append(("call", lambda: ast.Call(ast.Name(_NAMESWAP[node.func.id], ast.Load()), node.args, node.keywords)))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _ATTRSWAP:
            out.append(("call", lambda: ast.Call(ast.Attribute(node.func.value, _ATTRSWAP[node.func.attr], ast.Load()),
                                                 node.args, node.keywords)))
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            out.append(("delete", lambda: ast.Pass()))
        return out

    # ---- traversal (source order; skips docstrings, annotations, f-strings, raise) ------------------------
    def visit(self, node):
        if isinstance(node, (ast.JoinedStr, ast.Raise)) or self._pragma(node):
            return node
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return node  # docstring / bare string
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return node
        for kind, make in self._mutations(node):
            idx = self.count
            self.count += 1
            if self.target is None:
                new = make()
                self.sites.append({"id": idx, "line": node.lineno, "end_line": node.end_lineno or node.lineno,
                                   "kind": kind, "original": _short(node),
                                   "mutated": _short(new) if not isinstance(new, ast.Pass) else "pass"})
            elif idx == self.target:
                new = make()
                self.applied = {"id": idx, "line": node.lineno, "kind": kind, "original": _short(node)}
                return ast.copy_location(new, node)
        return self._children(node)

    def _children(self, node):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.decorator_list = [self.visit(d) for d in node.decorator_list]
            node.args.defaults = [self.visit(d) for d in node.args.defaults]
            node.args.kw_defaults = [None if d is None else self.visit(d) for d in node.args.kw_defaults]
            node.body = self._body(node.body)
            return node
        if isinstance(node, ast.AnnAssign):
            if node.value is not None:
                node.value = self.visit(node.value)
            return node
        return self.generic_visit(node)

    def _body(self, stmts):
        out = []
        for s in stmts:
            r = self.visit(s)
            out.extend(r if isinstance(r, list) else [r])
        return out


def list_mutants(path: Path) -> list[dict]:
    src = path.read_text()
    m = Mutator(src.splitlines())
    m.visit(ast.parse(src))
    return m.sites


def mutant_source(path: Path, target: int | None) -> ast.Module:
    """The module's syntax tree with mutant `target` applied (None: unmutated). It is compiled as it is, not
    unparsed, so its line numbers are the file's: tracebacks and the recorded coverage point at the real lines."""
    src = path.read_text()
    tree = ast.parse(src)
    if target is not None:
        m = Mutator(src.splitlines(), target)
        tree = m.visit(tree)
        if m.applied is None:
            raise ValueError(f"no mutant {target} in {path}")
    return ast.fix_missing_locations(tree)


# ---- running ------------------------------------------------------------------------------------------------
class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self, modname: str, path: str, source: str):
        self.modname, self.path, self.source = modname, path, source

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.modname:
            return None
        return importlib.util.spec_from_file_location(fullname, self.path, loader=_Loader(fullname, self.path, self.source))


class _Loader(importlib.machinery.SourceFileLoader):
    def __init__(self, fullname, path, source):
        super().__init__(fullname, path)
        self.source = source

    def get_code(self, fullname):
        return compile(self.source, self.path, "exec", dont_inherit=True)


_WARM: "WarmSession | None" = None  # the server's collected session (scripts/mutate_session.py)


def _start(module: str, source: ast.Module, pytest_args: list[str], coverage_out: str | None = None,
           swap_original=None, unmutated: bool = False) -> int:
    """Fork a child that runs the tests with `source` served as `module`; its pid. With `coverage_out`, the child
    records which tests execute which lines of the module there (scripts/mutate_select.py). With `swap_original`
    (the unmutated module's code; only in a process that imported the module already), the child swaps the
    changed functions' code in place instead of importing the module (exit 98 when it cannot), and runs its tests
    in the server's collected session when there is one."""
    import pytest

    modname = module[:-3].replace("/", ".")
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.setpgid(0, 0)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            if swap_original is not None:
                mutant = compile(source, str(ROOT / module), "exec", dont_inherit=True)
                if not unmutated and not swap_in(str(ROOT / module), swap_original, mutant):
                    os._exit(98)
                if _WARM is not None:
                    os._exit(_WARM.run(None if pytest_args is MODULES[module] else pytest_args))
            else:
                sys.meta_path.insert(0, _Finder(modname, str(ROOT / module), source))
            plugins = []
            if coverage_out:
                rec = Recorder(str(ROOT / module))
                plugins.append(rec)
                rec.start()
            rc = pytest.main(["-x", "-q", "-p", "no:cacheprovider", *pytest_args], plugins=plugins)
            if coverage_out:
                rec.save(coverage_out)
            os._exit(int(rc))
        except BaseException:
            os._exit(99)
    return pid


def _outcome(module: str, rc: int, pytest_args: list[str]) -> str:
    if rc == 0:
        return "survived"
    if rc == 1:
        return "killed"
    if rc in (4, 5):  # usage error / nothing collected: a wrong test list, not the mutant
        return "no tests"
    if rc == 98:
        return "not swappable"
    return "error"  # collection/import error or crash caused by the mutant: killed too


def run_many(module: str, jobs: list[tuple], workers: int, coverage_out: str | None = None, swap_original=None,
             unmutated: bool = False):
    """Run (key, source, pytest args, timeout) jobs, `workers` at a time; yields (key, outcome, seconds) as they
    finish. outcome: 'survived' | 'killed' | 'error' | 'timeout' | 'no tests'."""
    pending = list(jobs)
    running: dict[int, tuple[object, float, list, float]] = {}
    while pending or running:
        while pending and len(running) < workers:
            key, src, args, timeout = pending.pop(0)
            running[_start(module, src, args, coverage_out, swap_original, unmutated)] = (
                key, time.perf_counter(), args, timeout)
        time.sleep(0.02)
        for pid, (key, t0, args, timeout) in list(running.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            dt = time.perf_counter() - t0
            if done:
                del running[pid]
                yield key, _outcome(module, os.waitstatus_to_exitcode(status), args), dt
            elif dt > timeout:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                os.waitpid(pid, 0)
                del running[pid]
                yield key, "timeout", dt


def _serve(module: str, args: list[str], jobs: list[tuple], workers: int) -> list[tuple]:
    """Run `jobs` from a forked server that configured pytest and collected the module's tests once
    (scripts/mutate_session.py): each mutant's child then only swaps the changed functions' code and runs its
    selected tests, with no import, configuration or collection cost. Its (key, outcome, seconds) list; outcome
    'not swappable' for the mutants that need a fresh import."""
    global _WARM

    if not jobs:
        return []
    fd, res_file = tempfile.mkstemp(prefix="mutate-results-", suffix=".json")
    os.close(fd)
    pid = os.fork()
    if pid == 0:  # the server
        code = 99
        try:
            _WARM = WarmSession.open(args)
            original = compile(mutant_source(ROOT / module, None), str(ROOT / module), "exec", dont_inherit=True)
            if _WARM is not None:  # the unmutated module must pass through the warm session, or it is not used
                [(_, check, _)] = list(run_many(module, [(None, mutant_source(ROOT / module, None), args, 1800)], 1,
                                                swap_original=original, unmutated=True))
                if check != "survived":
                    print(f"{module}: the tests do not pass in a collected session ({check}); using pytest.main",
                          flush=True)
                    _WARM = None
            if _WARM is None:  # import the test files at least: pytest.main then finds them imported
                import pytest

                with silenced():
                    pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", *args])
            done = list(run_many(module, jobs, workers, swap_original=original))
            with open(res_file, "w") as f:
                json.dump(done, f)
            code = 0
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    try:
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{module}: the mutant server failed (exit {os.waitstatus_to_exitcode(status)}); "
                             f"rerun with --no-swap")
        with open(res_file) as f:
            return [tuple(r) for r in json.load(f)]
    finally:
        os.unlink(res_file)


def _baseline(module: str, args: list[str], select: bool) -> tuple[float, "Coverage | None"]:
    """The unmutated module's test run (recording coverage when `select`): its seconds and the coverage."""
    path = ROOT / module
    cov_file = None
    if select:
        fd, cov_file = tempfile.mkstemp(prefix="mutate-coverage-", suffix=".json")
        os.close(fd)
    try:
        [(_, outcome, secs)] = list(run_many(module, [(None, mutant_source(path, None), args, 1800)], 1, cov_file))
        if outcome != "survived":
            raise SystemExit(f"{module}: the tests fail on the unmutated module ({outcome}); fix that first")
        return secs, (Coverage.load(cov_file) if select else None)
    finally:
        if cov_file:
            os.unlink(cov_file)


def run_module(module: str, out_dir: Path, only: set[int] | None, timeout_factor: float, workers: int,
               select: bool = True, swap: bool = True) -> dict:
    path = ROOT / module
    args = MODULES[module]
    sites = list_mutants(path)
    base_s, cov = _baseline(module, args, select)
    how = "only the tests that execute each mutant's lines" if select else "all of them for every mutant"
    print(f"{module}: {len(sites)} mutants, tests {' '.join(args)} ({base_s:.1f} s unmutated; {how})", flush=True)
    res_path = out_dir / (module.replace("/", "__")[:-3] + ".json")
    old = {m["id"]: m for m in json.loads(res_path.read_text())["mutants"]} if (only and res_path.exists()) else {}
    results = {}
    swapped, fresh = [], []  # run by swapping code in the warm server / by importing the mutant fresh
    by_id = {s["id"]: s for s in sites}
    for s in sites:
        if only is not None and s["id"] not in only:
            if s["id"] in old and old[s["id"]]["original"] == s["original"]:
                results[s["id"]] = old[s["id"]]
            continue
        chosen = ALL if cov is None else cov.select(s["line"], s["end_line"])
        if chosen == []:  # no test executes this code: the mutant cannot change any test's run
            results[s["id"]] = {**s, "outcome": "survived", "uncovered": True, "tests_run": 0, "seconds": 0.0}
            print(f"  SURVIVED #{s['id']} line {s['line']} [{s['kind']}] (no test runs it): {s['original']}  ->  "
                  f"{s['mutated']}", flush=True)
            continue
        run_args = args if chosen is ALL else chosen
        est = base_s if chosen is ALL else cov.estimate_s(chosen)
        job = (s["id"], mutant_source(path, s["id"]), run_args, timeout_factor * est + 10)
        # code that ran at import or collection time cannot be swapped afterwards: import that mutant fresh
        warm = swap and cov is not None and not cov.at_import(s["line"], s["end_line"])
        (swapped if warm else fresh).append(job)
    jobs = {j[0]: j for j in swapped + fresh}
    n_run = {key: (len(cov.tests) if cov else None) if a is args else len(a) for key, (_, _, a, _) in jobs.items()}
    retry = []

    def take(i, outcome, dt, how):
        if outcome == "not swappable":
            fresh.append(jobs[i])
        elif outcome == "no tests":  # a node id pytest could not take back: run the whole list instead
            retry.append((i, jobs[i][1], args, timeout_factor * base_s + 10))
            n_run[i] = len(cov.tests) if cov else None
        else:
            _record(results, by_id[i], outcome, dt, n_run[i], how)

    for i, outcome, dt in _serve(module, args, swapped, workers):
        take(i, outcome, dt, "swap")
    for i, outcome, dt in run_many(module, fresh, workers):
        take(i, outcome, dt, "import")
    for i, outcome, dt in run_many(module, retry, workers):
        if outcome == "no tests":
            raise SystemExit(f"{module}: no tests collected with {args}")
        _record(results, by_id[i], outcome, dt, n_run[i], "import")
    results = [results[k] for k in sorted(results)]
    killed = sum(r["outcome"] != "survived" for r in results)
    summary = {"module": module, "tests": args, "selection": select, "baseline_s": round(base_s, 2),
               "n_mutants": len(results), "killed": killed, "survived": len(results) - killed,
               "uncovered": sum(bool(r.get("uncovered")) for r in results),
               "mutant_s": round(sum(r["seconds"] for r in results), 1),
               "score": round(killed / len(results), 4) if results else None, "mutants": results}
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(res_path, json.dumps(summary, indent=1) + "\n")
    print(f"{module}: killed {killed} of {len(results)} ({100 * killed / max(1, len(results)):.1f}%)", flush=True)
    return summary


def _record(results: dict, s: dict, outcome: str, dt: float, n_tests, how: str) -> None:
    results[s["id"]] = {**s, "outcome": outcome, "tests_run": n_tests, "run": how, "seconds": round(dt, 2)}
    if outcome == "survived":
        print(f"  SURVIVED #{s['id']} line {s['line']} [{s['kind']}]: {s['original']}  ->  {s['mutated']}", flush=True)


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def changed_modules(rev: str) -> list[str]:
    """The modules of MODULES that differ between `rev` and the working tree (committed or not)."""
    out = subprocess.run(["git", "diff", "--name-only", rev, "--", "genbench"], cwd=ROOT, capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise SystemExit(f"--changed-since {rev}: git diff failed: {out.stderr.strip()}")
    changed = set(out.stdout.split())
    return [m for m in MODULES if m in changed]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("modules", nargs="*", help=f"modules to mutate (default: all of {len(MODULES)})")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--only", help="comma-separated mutant ids to (re)run; others keep their stored result")
    ap.add_argument("--out", default=str(ROOT / "reports/benchmarks/mutation_runs"))
    ap.add_argument("--timeout-factor", type=float, default=5.0)
    ap.add_argument("--jobs", type=int, default=1, help="mutants tested at once (one CPU core each)")
    ap.add_argument("--no-select", action="store_true",
                    help="run each module's whole test list for every mutant (default: only the tests that execute "
                         "the mutated lines, recorded in the unmutated run; scripts/mutate_select.py)")
    ap.add_argument("--no-swap", action="store_true",
                    help="import every mutant fresh in its own process (default: a mutant inside function bodies "
                         "runs in a process that imported the tests once, with the changed functions' code "
                         "swapped in place)")
    ap.add_argument("--changed-since", metavar="REV",
                    help="only the modules of MODULES that differ between REV and the working tree")
    a = ap.parse_args(argv)
    if a.jobs < 1:
        ap.error(f"--jobs must be at least 1, got {a.jobs}")
    mods = a.modules or list(MODULES)
    if a.changed_since:
        changed = changed_modules(a.changed_since)
        mods = [m for m in mods if m in changed]
        print(f"changed since {a.changed_since}: {', '.join(mods) or 'no module of MODULES'}", flush=True)
    for m in mods:
        if m not in MODULES:
            ap.error(f"{m} has no test mapping in scripts/mutate.py MODULES")
    if a.list:
        for m in mods:
            for s in list_mutants(ROOT / m):
                print(f"{m}#{s['id']} line {s['line']} [{s['kind']}]: {s['original']}  ->  {s['mutated']}")
        return 0
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))  # this checkout's genbench, before any installed copy
    for heavy in ("torch", "numpy", "scipy", "pandas", "sklearn", "pytest"):
        try:
            __import__(heavy)
        except ImportError:
            pass
    assert not any(k == "genbench" or k.startswith("genbench.") for k in sys.modules), "genbench imported too early"
    only = {int(x) for x in a.only.split(",")} if a.only else None
    t0 = time.time()
    out = [run_module(m, Path(a.out), only, a.timeout_factor, a.jobs, not a.no_select, not a.no_swap) for m in mods]
    print(f"\n{'module':40s} {'mutants':>8s} {'killed':>7s} {'score':>7s} {'no test runs it':>16s}")
    for s in out:
        print(f"{s['module']:40s} {s['n_mutants']:8d} {s['killed']:7d} {100 * (s['score'] or 0):6.1f}% "
              f"{s['uncovered']:16d}")
    print(f"{len(out)} modules, {sum(s['n_mutants'] for s in out)} mutants in {time.time() - t0:.0f} s wall "
          f"({a.jobs} at once)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
