"""`genbench run [SUITE | path/to/suite.toml]`: train or load every model of a suite, sample, score, record."""

from __future__ import annotations

import sys
from pathlib import Path

from genbench.errors import InvalidInputError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "run", help="run a benchmark suite (default: quick)",
        description="Train (or load cached checkpoints of) every model of a suite, sample, compute the suite's "
        "metrics plus speed and cost, and record everything in DIR/results.db, results.csv and results.json. "
        "Rerunning the same command resumes: finished jobs are skipped.")
    p.add_argument("suite", nargs="?", default="quick",
                   help="built-in suite name (genbench list suites) or path to a suite .toml (default: quick)")
    p.add_argument("--out", metavar="DIR", help="output directory (default: reports/<suite name>, the name reduced to letters, digits "
                   "and -_.); one process at a time: a second run on DIR fails at once, naming the first")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"],
                   help="auto picks cuda when available (default: the suite's device; quick runs on cpu)")
    p.add_argument("--models", metavar="A,B", help="only these models of the suite")
    p.add_argument("--datasets", metavar="X,Y", help="only these datasets of the suite")
    p.add_argument("--seeds", metavar="0,1,2", help="seeds to run (replaces the suite's)")
    p.add_argument("--budget", choices=["smoke", "quick", "standard"], help="training budget (replaces the suite's)")
    p.add_argument("--fresh", action="store_true",
                   help="start over: delete DIR's results, artifacts, checkpoints and caches first (only in a "
                   "directory a genbench run made; refused elsewhere)")
    p.add_argument("--quiet", action="store_true", help="no progress bars: one line per job")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch CPU threads per job (default: the suite's `threads`, 1 in quick; else torch's own "
                        "choice; 1 is much faster on a machine shared with other busy processes; recorded in every "
                        "timing protocol). The thread count changes quality numbers slightly (float summation "
                        "order), so it is part of each job's settings: resuming with another count redoes the jobs")
    p.add_argument("--workers", type=int, metavar="N",
                   help="run N jobs at once, each in its own worker process (default: the suite's `workers`, 1 if "
                        "unset; quick uses 2). Keep N x threads <= CPU cores, or speed figures measure contention")
    p.add_argument("--executor", choices=["local", "process", "ray"], default=None,
                   help="where jobs run: local (in this process), process (--workers worker processes; the default "
                   "when workers > 1) or ray (each job a Ray task with the suite's [resources]; optional extra "
                   "genbench[ray]; docs/cluster.md). The driver alone writes the results, so resume is the same")
    p.add_argument("--feature-shards", type=int, default=None, metavar="N",
                   help="split every job's feature passes (its samples, and a reference not cached yet) into N "
                   "batch-aligned shards across the executor's workers; the numbers do not change. With --executor "
                   "ray the shards are Ray tasks on the same cluster; with --executor local they run on --workers "
                   "processes (docs/cluster.md)")
    p.add_argument("--address", metavar="auto|HOST:PORT", default=None,
                   help="with --executor ray: the Ray cluster to join (auto: the one `ray start` runs here); default: "
                   "start a Ray instance inside this run with --workers CPUs (default: all)")
    p.add_argument("--no-report", action="store_true",
                   help="do not write the leaderboard/report files at the end (genbench report DIR does it later)")
    p.add_argument("--leaderboard", action="store_true",
                   help="end by printing a compact leaderboard per dataset (models ranked on the headline metric, "
                   "then the reference points)")
    p.add_argument("--against", metavar="DIR",
                   help="end with the regression check against this reference run (e.g. the committed "
                   "reports/quick): one line per dataset and the verdict. It is reported, not an exit status: the "
                   "exit status stays 1 only for failed jobs (`genbench compare DIR OUT` is the gate)")
    p.set_defaults(func=run)


def _names(s):
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


def _seeds(s):
    if s is None:
        return None
    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise InvalidInputError(f"--seeds expects comma-separated integers such as 0,1,2; got {s!r}") from None


def _argv(args, out) -> list:
    """The command line that reproduces this run (recorded with the run)."""
    a = ["genbench", "run", str(args.suite), "--out", str(out)]
    for opt in ("device", "models", "datasets", "seeds", "budget", "threads", "workers", "executor", "address",
                "feature_shards"):
        v = getattr(args, opt, None)
        if v is not None:
            a += [f"--{opt.replace('_', '-')}", str(v)]
    return a + (["--fresh"] if args.fresh else []) + (["--quiet"] if args.quiet else [])


def run(args) -> int:
    from genbench.device import resolve_device
    from genbench.rundir import default_out_dir
    from genbench.pipeline.driver import Runner
    from genbench.suite import apply_overrides, load_suite

    if args.threads is not None and args.threads < 1:
        raise InvalidInputError(f"--threads must be >= 1, got {args.threads}: pass e.g. --threads 1, or leave it out "
                                "for the suite's setting")
    if args.workers is not None and args.workers < 1:
        raise InvalidInputError(f"--workers must be >= 1, got {args.workers}: pass e.g. --workers 1, or leave it out "
                                "for the suite's setting")
    suite = load_suite(args.suite)
    threads = args.threads if args.threads is not None else suite.threads
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    suite = apply_overrides(suite, models=_names(args.models), datasets=_names(args.datasets),
                            seeds=_seeds(args.seeds), budget=args.budget, device=args.device)
    device = str(resolve_device(suite.device, flag="--device"))
    out = Path(args.out) if args.out else default_out_dir(suite.name)  # reports/<slug of the name>
    workers = args.workers if args.workers is not None else suite.workers
    sharding = _feature_sharding(args, suite, device, workers, threads)
    executor = _executor(args, suite, device, workers, threads)
    if sharding is not None and sharding.executor == "ray":
        # a job waits on its shards: keep one shard's resources free of jobs, so a shard can always start (Ray
        # frees a waiting task's CPUs but not its GPUs; jobs filling every GPU would wait on shards forever)
        executor.reserve_cpus, executor.reserve_gpus = sharding.num_cpus, sharding.num_gpus
    try:
        summary = Runner(suite, out, device=device, fresh=args.fresh, quiet=args.quiet, argv=_argv(args, out),
                         workers=workers, threads=threads, executor=executor, feature_shards=sharding).run()
    finally:
        if executor is not None:
            executor.close()
    print(f"genbench run: {len(summary.done)} jobs run, {len(summary.skipped)} already done, "
          f"{len(summary.failed)} failed in {summary.seconds:.1f}s")
    for job_id, err in summary.failed:
        print(f"  failed: {job_id}: {err.splitlines()[0]}")
    print("results: " + ", ".join(str(p) for p in summary.files))
    if not args.no_report:
        _report(out)
    if args.leaderboard or args.against:
        from genbench.report.terminal import finish_run

        finish_run(out, args.leaderboard, args.against)
    return 1 if summary.failed else 0


def _feature_sharding(args, suite, device: str, workers: int, threads):
    """The FeatureSharding --feature-shards asks for (None without it), across the executor's workers."""
    n = getattr(args, "feature_shards", None)
    if n is None:
        return None
    if n < 1:
        raise InvalidInputError(f"--feature-shards {n}: give 1 or more (1: no sharding)")
    from genbench.pipeline.shards import FeatureSharding

    import torch

    threads = threads if threads is not None else torch.get_num_threads()  # the jobs' count: the same features
    kind = args.executor or ("process" if workers > 1 else "local")
    if kind == "process":
        raise InvalidInputError(f"--feature-shards {n} with the process executor (--workers {workers}): its worker "
                                "processes are busy running jobs, so a job's shards have no workers to go to. Use "
                                "--executor ray (the shards become Ray tasks on the cluster running the jobs) or "
                                "--executor local --workers W (jobs one at a time, each feature pass over W "
                                "processes)")
    if kind == "ray":
        res = suite.job_resources(device)  # each shard asks for what a job asks for
        return FeatureSharding(n, "ray", address=None, num_cpus=float(res["num_cpus"]),
                               num_gpus=float(res["num_gpus"]), threads=threads)
    return FeatureSharding(n, "process", workers=max(1, workers), threads=threads)


def _executor(args, suite, device: str, workers: int, threads):
    """The executor --executor names (None: the Runner's default from --workers)."""
    if args.address is not None and args.executor != "ray":
        raise InvalidInputError("--address is for --executor ray (the Ray cluster to join)")
    if args.executor in (None, "local"):
        from genbench.executors import LocalExecutor

        return LocalExecutor() if args.executor == "local" else None
    if args.executor == "process":
        from genbench.executors import ProcessExecutor

        return ProcessExecutor(max(1, workers), threads)
    from genbench.executors import RayExecutor

    res = suite.job_resources(device)
    return RayExecutor(args.address, res["num_cpus"], res["num_gpus"], threads=threads,
                       local_cpus=args.workers)


def _report(out: Path) -> None:
    """End the run with its report (leaderboard.md, report.html); the results are already safe on disk, so a
    report failure is only a warning."""
    try:
        from genbench.report import write_report
    except ImportError:
        return
    try:
        paths = write_report(out)
    except Exception as e:  # noqa: BLE001 - the run's results are recorded; the report can be rebuilt
        print(f"genbench run: warning: the report could not be written ({type(e).__name__}: {e}); "
              f"rebuild it with `genbench report {out}`", file=sys.stderr)
        return
    main = [p for p in paths if p.suffix in (".md", ".html")]
    if main:
        print("report: " + ", ".join(str(p) for p in main))
