"""Where benchmark jobs run. The runner hands an Executor a picklable job function and a list of job specs and
records each result in the results store as it comes back; only the driver process writes the store.

`LocalExecutor` (the default) runs jobs one after another in this process, sharing in-process caches (loaded
datasets, real-data features) between jobs.

`ProcessExecutor(workers, threads)` runs up to `workers` jobs at once in spawned worker processes on this machine
(suite key `workers`, or `genbench run --workers N`), each with `threads` torch CPU threads. Every job seeds itself,
so its numbers do not depend on which worker ran it or in what order (a test checks workers=2 against workers=1).
Workers build their own caches; the real-feature cache on disk (DIR/cache) is shared. Models must be importable by
name in a fresh process (built-in, or registered through an entry point). If the driver dies, its workers notice
and exit within a second. If a worker dies (killed, out of memory), the job it was running -- each worker writes
its PID for the job it starts -- is failed, and the jobs running beside it are resubmitted to a fresh pool.

A cluster executor plugs in by implementing `map_unordered`. With Ray, for example (not a dependency):

    class RayExecutor(Executor):
        def __init__(self, **ray_init_kwargs):
            import ray
            ray.init(**ray_init_kwargs)
            self.ray = ray

        def map_unordered(self, fn, items):
            remote = self.ray.remote(num_gpus=1)(fn)      # one GPU per job, if jobs use cuda
            pending = {remote.remote(item): item for item in items}
            while pending:
                done, _ = self.ray.wait(list(pending), num_returns=1)
                item = pending.pop(done[0])
                try:
                    yield item, self.ray.get(done[0]), None
                except Exception as e:                   # a job failure is a result, not a crash
                    yield item, None, e

Each worker then builds its own caches (the real-feature cache also lives on disk under DIR/cache, so a shared
filesystem lets workers reuse it) and writes checkpoints/artifacts under DIR; results flow back to the driver,
which commits each job in one SQLite transaction -- so resume works the same way.
"""

from __future__ import annotations

import itertools
import shutil
import signal
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional


class Executor(ABC):
    @abstractmethod
    def map_unordered(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[tuple[Any, Any, Optional[BaseException]]]:
        """Run fn(item) for every item; yield (item, result, None) or (item, None, exception) as each finishes.
        KeyboardInterrupt / SystemExit propagate (they stop the run)."""

    def close(self) -> None:
        pass


class LocalExecutor(Executor):
    """Sequential, in-process (the default)."""

    def map_unordered(self, fn, items):
        for item in items:
            try:
                result = fn(item)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as e:  # recorded as a failed job by the runner
                yield item, None, e
            else:
                yield item, result, None


_PROCESS_FN: dict = {}


def _init_worker(threads: Optional[int], parent_pid: int) -> None:
    import os
    import threading
    import time

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
        try:  # numpy/scipy/sklearn BLAS pools as well (EM, PCA)
            from threadpoolctl import threadpool_limits

            threadpool_limits(threads)
        except ImportError:
            pass

    def watch_parent():  # a killed driver (SIGKILL included) must not leave workers training on
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=watch_parent, daemon=True).start()


def _call_in_worker(fn, item, pid_file: Optional[str] = None):
    """Run one job in a worker process. First, when given `pid_file`, say which process runs it (the driver reads
    it to blame the right job when a worker dies)."""
    import os

    if pid_file is not None:
        with open(pid_file, "w") as f:
            f.write(str(os.getpid()))
    # keep the first job function this process received, so its in-process caches live across jobs
    fn = _PROCESS_FN.setdefault(type(fn), fn)
    return fn(item)


class ProcessExecutor(Executor):
    """Up to `workers` jobs at once, each in a spawned worker process with `threads` torch CPU threads."""

    def __init__(self, workers: int = 2, threads: Optional[int] = None):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers, self.threads = int(workers), threads
        self._started: dict = {}  # pid file -> item, of the jobs submitted to the current pool

    def worker_pids(self) -> list:
        """(item, PID of the worker process running it) for every job that has started in a worker and not
        yet come back (read from the PID each worker writes as it starts a job)."""
        out = []
        for pid_file, item in list(self._started.items()):
            pid = _read_pid(pid_file)
            if pid is not None:
                out.append((item, pid))
        return out

    def _pool(self):
        import multiprocessing
        import os
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(self.threads, os.getpid()))

    def map_unordered(self, fn, items):
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        it = iter(items)
        pending: dict = {}  # future -> (item, pid file)
        procs: dict = {}  # pid -> multiprocessing.Process, of every pool this call used
        pid_dir = Path(tempfile.mkdtemp(prefix="genbench-workers-"))
        pool = self._pool()
        count = itertools.count()

        def submit(item) -> None:
            pid_file = str(pid_dir / f"job{next(count)}.pid")
            pending[pool.submit(_call_in_worker, fn, item, pid_file)] = (item, pid_file)
            self._started[pid_file] = item
            procs.update(getattr(pool, "_processes", None) or {})

        def submit_next() -> None:
            for item in it:  # takes one item (the generator marks it started as it is taken)
                submit(item)
                return

        try:
            for _ in range(self.workers):
                submit_next()
            while pending:
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                if any(isinstance(f.exception(), BrokenProcessPool) for f in done):
                    # a worker died (killed, out of memory): fail the job(s) it was running and put the others
                    # back into a fresh pool
                    pool.shutdown(wait=True, cancel_futures=True)  # the pool reaps (and stops) all its workers
                    for fut in [f for f in pending if not _broken(f)]:  # finished before the pool broke
                        item, pid_file = pending.pop(fut)
                        self._started.pop(pid_file, None)
                        yield (item, fut.result(), None) if fut.exception() is None else (item, None, fut.exception())
                    failed, retry = _blame_dead_workers(list(pending.values()), procs)
                    pending.clear()
                    self._started.clear()
                    pool = self._pool()
                    for other in retry:
                        submit(other)
                    for item in failed:
                        yield item, None, RuntimeError("the worker process running this job died (killed, or out of "
                                                       "memory); run again to retry it")
                    while len(pending) < self.workers and _more(submit_next, pending):
                        pass
                    continue
                for fut in done:
                    item, pid_file = pending.pop(fut)
                    self._started.pop(pid_file, None)
                    err = fut.exception()
                    if err is None:
                        yield item, fut.result(), None
                    elif isinstance(err, (KeyboardInterrupt, SystemExit)):
                        raise err
                    else:
                        yield item, None, err
                    submit_next()
        finally:
            if pending:  # interrupted: jobs still running are abandoned (the next run resumes them)
                procs = list((getattr(pool, "_processes", None) or {}).values())
                for p in procs:
                    if p.is_alive():
                        p.terminate()
                for p in procs:
                    p.join(timeout=5)
                pool.shutdown(wait=True, cancel_futures=True)
            else:
                pool.shutdown(wait=True)
            self._started.clear()
            shutil.rmtree(pid_dir, ignore_errors=True)


def _read_pid(pid_file: str) -> Optional[int]:
    try:
        return int(Path(pid_file).read_text().strip())
    except (OSError, ValueError):
        return None


def _broken(fut) -> bool:
    from concurrent.futures.process import BrokenProcessPool

    return fut.cancelled() or isinstance(fut.exception(), BrokenProcessPool)


def _more(submit_next, pending: dict) -> bool:
    """Submit the next item; False when there was none."""
    n = len(pending)
    submit_next()
    return len(pending) > n


def _blame_dead_workers(running: list, procs: dict) -> tuple[list, list]:
    """Split the (item, pid file) pairs a broken pool was running into (jobs whose own worker died, jobs to
    resubmit). A broken pool stops its surviving workers with SIGTERM, so a worker that exited any other way
    (SIGKILL, the OOM killer, a crash) is the one that died; its pid file names its job. A job that never
    started (no pid file) is resubmitted. When no worker can be singled out (all ended by SIGTERM), every job
    that had started is failed: retrying them could repeat the death forever."""
    dead = {pid for pid, p in procs.items() if p.exitcode is not None and p.exitcode != -signal.SIGTERM}
    started = [(item, _read_pid(f)) for item, f in running]
    failed = [item for item, pid in started if pid is not None and pid in dead]
    if not failed:
        failed = [item for item, pid in started if pid is not None]
    retry = [item for item, _ in started if not any(item is f for f in failed)]
    return failed, retry


EXECUTORS = {"local": LocalExecutor, "process": ProcessExecutor}


def get_executor(name: str = "local") -> Executor:
    from genbench.registry import unknown_name_message
    from genbench.errors import UnknownNameError

    if name not in EXECUTORS:
        raise UnknownNameError(unknown_name_message("executor", name, EXECUTORS))
    return EXECUTORS[name]()


__all__ = ["Executor", "LocalExecutor", "ProcessExecutor", "get_executor", "EXECUTORS"]
