"""Where benchmark jobs run. The runner hands an Executor a picklable job function and a list of job specs and
records each result in the results store as it comes back; only the driver process writes the store.

`LocalExecutor` (the default) runs jobs one after another in this process, sharing in-process caches (loaded
datasets, real-data features) between jobs.

`ProcessExecutor(workers, threads)` runs up to `workers` jobs at once in spawned worker processes on this machine
(suite key `workers`, or `genbench run --workers N`), each with `threads` torch CPU threads. Every job seeds itself,
so its numbers do not depend on which worker ran it or in what order (a test checks workers=2 against workers=1).
Workers build their own caches; the real-feature cache on disk (DIR/cache) is shared. Models must be importable by
name in a fresh process (built-in, or registered through an entry point). If the driver dies, its workers notice
and exit within a second.

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

from abc import ABC, abstractmethod
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


def _call_in_worker(fn, item):
    # keep the first job function this process received, so its in-process caches live across jobs
    fn = _PROCESS_FN.setdefault(type(fn), fn)
    return fn(item)


class ProcessExecutor(Executor):
    """Up to `workers` jobs at once, each in a spawned worker process with `threads` torch CPU threads."""

    def __init__(self, workers: int = 2, threads: Optional[int] = None):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers, self.threads = int(workers), threads

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
        pending: dict = {}
        pool = self._pool()

        def submit_next() -> None:
            for item in it:  # takes one item (the generator marks it started as it is taken)
                pending[pool.submit(_call_in_worker, fn, item)] = item
                return

        try:
            for _ in range(self.workers):
                submit_next()
            while pending:
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for fut in done:
                    if fut not in pending:  # already resubmitted after a worker died
                        continue
                    item = pending.pop(fut)
                    err = fut.exception()
                    if isinstance(err, BrokenProcessPool):
                        # a worker died (killed, out of memory): this job failed; the jobs that were running
                        # beside it go back into a fresh pool
                        err = RuntimeError(f"the worker process running this job died ({err}); "
                                           "run again to retry it")
                        retry = list(pending.values())
                        pending.clear()
                        pool.shutdown(wait=False, cancel_futures=True)
                        pool = self._pool()
                        for other in retry:
                            pending[pool.submit(_call_in_worker, fn, other)] = other
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


EXECUTORS = {"local": LocalExecutor, "process": ProcessExecutor}


def get_executor(name: str = "local") -> Executor:
    from genbench.registry import unknown_name_message
    from genbench.errors import UnknownNameError

    if name not in EXECUTORS:
        raise UnknownNameError(unknown_name_message("executor", name, EXECUTORS))
    return EXECUTORS[name]()


__all__ = ["Executor", "LocalExecutor", "ProcessExecutor", "get_executor", "EXECUTORS"]
