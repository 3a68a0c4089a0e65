"""`genbench run`: the resumable driver.

Jobs are (dataset, model, seed) triples of a suite (genbench/pipeline/jobs.py); an executor runs them on workers
(genbench/pipeline/worker.py). The driver commits each finished job (metrics + artifacts + status) to the results
store and rewrites DIR/results.csv and DIR/results.json, so a run killed at any moment resumes where it stopped:
finished jobs are skipped, jobs left 'running' or 'failed' are redone. A failing job (exception, diverged
training, NaN/inf samples, wrong shape) is recorded as failed with its error and the run goes on.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from genbench.errors import DiskFullError, GenbenchError, disk_full_message, is_disk_full
from genbench.executors import Executor, LocalExecutor
from genbench.pipeline.jobs import JobFailure, JobResult, JobSpec, job_code_version, job_dict, make_jobs
from genbench.pipeline.worker import Worker
from genbench.results.store import CSV_NAME, DB_NAME, JSON_NAME, ResultsStore
from genbench.suite import Suite


STALE_TEMP_S = 60.0  # a .tmp file this old in a locked run directory is a killed writer's leftover


@dataclass
class RunSummary:
    out_dir: Path
    done: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failed: list = field(default_factory=list)  # (job_id, error)
    seconds: float = 0.0

    @property
    def files(self) -> list[Path]:
        return [self.out_dir / DB_NAME, self.out_dir / CSV_NAME, self.out_dir / JSON_NAME]


class Runner:
    def __init__(self, suite: Suite, out_dir: str | os.PathLike, device: str = "cpu", fresh: bool = False,
                 quiet: bool = False, executor: Optional[Executor] = None, argv: Optional[list] = None,
                 log=None, workers: Optional[int] = None, threads: Optional[int] = None, feature_shards=None):
        """`workers` (default: the suite's) > 1 runs that many jobs at once in worker processes with `threads`
        torch threads each (default: the suite's); an explicit `executor` replaces both. `feature_shards`: a
        FeatureSharding (genbench/pipeline/shards.py) every job's feature passes use (the numbers do not change)."""
        self.suite = suite
        self.out_dir = Path(out_dir)
        self.device = device
        self.fresh = fresh
        self.quiet = quiet
        self.workers = int(workers if workers is not None else getattr(suite, "workers", 1) or 1)
        if executor is None:
            from genbench.executors import ProcessExecutor

            t = threads if threads is not None else suite.threads
            executor = ProcessExecutor(self.workers, t) if self.workers > 1 else LocalExecutor()
        t = threads if threads is not None else getattr(suite, "threads", None)
        self.threads = int(t) if t is not None else torch.get_num_threads()  # what the jobs run with
        self.executor = executor
        self.feature_shards = feature_shards
        self.argv = list(argv) if argv is not None else list(sys.argv)
        self.log = log or (lambda msg: print(msg, flush=True))

    _WIPED_FILES = (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm", CSV_NAME, JSON_NAME)
    _WIPED_DIRS = ("artifacts", "checkpoints", "cache")

    def _wipe(self) -> None:
        """`--fresh`: delete the run's results, artifacts, checkpoints and caches; refused (InvalidInputError) in a
        directory that is not a genbench run directory."""
        from genbench.rundir import check_fresh_allowed

        check_fresh_allowed(self.out_dir, self._WIPED_FILES + self._WIPED_DIRS)
        for name in self._WIPED_FILES:
            p = self.out_dir / name
            if p.exists():
                p.unlink()
        for sub in self._WIPED_DIRS:
            shutil.rmtree(self.out_dir / sub, ignore_errors=True)

    def run(self) -> RunSummary:
        """Run the suite's jobs holding DIR's run lock (a second process on DIR fails at once, naming this one)."""
        from genbench.rundir import run_dir_lock

        self.suite.install_user_models()  # the suite's [models.X] model = "pkg.mod:factory" entries
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with run_dir_lock(self.out_dir):
            return self._run_locked()

    def _run_locked(self) -> RunSummary:
        from genbench.env_info import environment
        from genbench.fileio import remove_stale_temps
        from genbench.rundir import write_marker

        t0 = time.perf_counter()
        if self.fresh:
            self._wipe()
        remove_stale_temps(self.out_dir, older_than_s=STALE_TEMP_S)  # left by a killed run; we hold the lock
        store = ResultsStore(self.out_dir, create=True)
        write_marker(self.out_dir)
        summary = RunSummary(self.out_dir)
        run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
        env = environment(self.device)
        store.begin_run(run_id, suite_name=self.suite.name, suite_hash=self.suite.hash,
                        suite_toml=self.suite.toml_text or json.dumps(self.suite.to_dict()), argv=self.argv, **env)
        jobs = make_jobs(self.suite, self.out_dir, self.device, self.quiet, self.threads)
        if self.feature_shards is not None:
            import dataclasses

            jobs = [dataclasses.replace(j, feature_shards=self.feature_shards) for j in jobs]
        todo = []
        codes = {m: job_code_version(m) for m in {j.model.name for j in jobs}}  # source digests, once per model
        for j in jobs:
            code = codes[j.model.name]
            row = store.job_row(j.job_id)
            prev = json.loads(row["config_json"] or "{}") if row is not None else {}
            if row is not None and row["status"] == "done" and prev.get("spec_hash") == j.spec_hash \
                    and prev.get("code") == code:
                summary.skipped.append(j.job_id)
                continue
            if row is not None and row["status"] == "done":
                why = ("its suite settings changed" if prev.get("spec_hash") != j.spec_hash else
                       "the code that computes its numbers (the model's, or genbench's data/features/metrics/pipeline) "
                       "changed")
                self.log(f"[redo] {j.job_id}: {why} since it was recorded")
            store.add_job(j.job_id, run_id=run_id, dataset=j.dataset.name, model=j.model.name,
                          family=_family(j.model.name), seed=j.seed, budget=j.budget,
                          config={"spec_hash": j.spec_hash, "code": code, "job": job_dict(j)})
            todo.append(j)
        self.log(f"genbench run: suite {self.suite.name!r} ({self.suite.source}), {len(jobs)} jobs "
                 f"({len(summary.skipped)} already done, {len(todo)} to run) on {self.device} -> {self.out_dir}")
        store.export()

        def submitted():
            for k, j in enumerate(todo):
                store.start_job(j.job_id, run_id, config={"spec_hash": j.spec_hash, "code": codes[j.model.name],
                                                          "job": job_dict(j)})
                if not self.quiet:
                    self.log(f"[{k + 1}/{len(todo)}] {j.job_id} ...")
                yield j

        worker = Worker()
        try:
            for job, result, error in self.executor.map_unordered(worker, submitted()):
                if error is None:
                    store.record_job(job.job_id, result.metrics, result.artifacts, result.train_seconds,
                                     result.checkpoint_path)
                    store.update_job(job.job_id, family=result.family, cache_key=result.cache_key,
                                     config={"spec_hash": job.spec_hash, "code": codes[job.model.name],
                                             "job": job_dict(job), "model_config": result.config})
                    summary.done.append(job.job_id)
                    self.log(_done_line(job, result))
                elif is_disk_full(error):  # every later job would fail the same way: stop the run instead
                    raise DiskFullError(disk_full_message(error, f"the results of job {job.job_id} in {self.out_dir}"))
                else:
                    msg = f"{type(error).__name__}: {error}"
                    if not isinstance(error, (JobFailure, GenbenchError)):
                        tb = "".join(traceback.format_exception(type(error), error, error.__traceback__)[-6:])
                        msg += "\n" + tb
                    store.fail_job(job.job_id, msg)
                    summary.failed.append((job.job_id, f"{type(error).__name__}: {error}"))
                    self.log(f"FAILED {job.job_id}: {type(error).__name__}: {error}")
                store.export()
        except DiskFullError:
            store.close()
            raise
        except KeyboardInterrupt:
            store.export()
            print(f"genbench run: interrupted; finished jobs are saved in {self.out_dir}: run the same command again "
                  "to resume", file=sys.stderr, flush=True)
            store.close()
            raise
        store.finish_run(run_id)
        store.export()
        store.close()
        summary.seconds = time.perf_counter() - t0
        return summary


def _family(model: str) -> str:
    from genbench.models import get_model_class

    return get_model_class(model).family


def _done_line(job: JobSpec, r: JobResult) -> str:
    vals = {m["name"]: m["value"] for m in r.metrics if m["variant"] == ""}
    from genbench.metrics.registry import outputs

    shown = [o.name for o in sorted(outputs().values(), key=lambda o: o.order) if o.headline]  # leaderboard columns
    parts = [f"{k}={vals[k]:.4g}" for k in shown if k in vals]
    src = "cached checkpoint" if r.cached else f"trained {r.train_seconds:.1f}s"
    return f"done {job.job_id} ({r.family}, {src}, {r.seconds:.1f}s): " + " ".join(parts)
