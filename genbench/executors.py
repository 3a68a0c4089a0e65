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

`RayExecutor(address, num_cpus, num_gpus, threads)` (optional extra: `pip install 'genbench[ray]'`) runs each job as
a Ray task with the suite's per-job resources (`[resources]`: num_cpus, num_gpus; fractional GPUs allowed), on a
local Ray instance it starts (no address) or on a running cluster (`address="auto"` or "HOST:PORT"). Results come
back to the driver, which alone writes the store, so resume, --fresh and failure handling are those of the other
executors: a task that raises, or whose worker dies, fails only its job (tasks are not retried); Ctrl-C cancels
the outstanding tasks. Checkpoints and artifacts are written by the task under the run directory: every node must
see that directory at the same path (a shared filesystem; docs/cluster.md).

A cluster executor of another engine plugs in the same way: implement `map_unordered`.
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


RAY_CONNECT_TIMEOUT_S = 10.0
RAY_LOCAL_HINT = ("start a local cluster with `ray start --head --port 6379 --num-cpus 2` (then pass --address "
                  "127.0.0.1:6379, or auto), or leave out --address and genbench starts a Ray instance inside the run")


def import_ray():
    """The `ray` module, or a clear error saying how to install it."""
    try:
        import ray
    except ImportError:
        from genbench.errors import InvalidInputError

        raise InvalidInputError("--executor ray needs Ray, an optional extra: pip install 'genbench[ray]' (or pip "
                                "install ray)") from None
    return ray


def _check_reachable(address: str, timeout: float) -> None:
    """Fail fast (bounded) when HOST:PORT does not accept connections."""
    import socket

    from genbench.errors import InvalidInputError

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise InvalidInputError(f"--address {address!r}: give HOST:PORT of the Ray head node (e.g. 10.0.0.5:6379) "
                                "or auto")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise InvalidInputError(f"cannot reach a Ray cluster at {address} ({e.strerror or e}; waited at most "
                                f"{timeout:.0f} s): {RAY_LOCAL_HINT}") from None


def _ray_call(fn, item, threads):
    """One job in a Ray worker process: set its torch threads, keep the first job function this process received
    (its in-process caches live across tasks), run it."""
    if threads is not None:
        import torch

        if torch.get_num_threads() != int(threads):
            torch.set_num_threads(int(threads))
    fn = _PROCESS_FN.setdefault(type(fn), fn)
    return fn(item)


class RayExecutor(Executor):
    """Each job a Ray task (see the module docstring)."""

    def __init__(self, address: Optional[str] = None, num_cpus: float = 1.0, num_gpus: float = 0.0,
                 threads: Optional[int] = None, local_cpus: Optional[int] = None,
                 connect_timeout_s: float = RAY_CONNECT_TIMEOUT_S):
        from genbench.errors import InvalidInputError

        if num_cpus <= 0 or num_gpus < 0:
            raise InvalidInputError(f"Ray resources per job: num_cpus must be > 0 and num_gpus >= 0, got "
                                    f"num_cpus={num_cpus}, num_gpus={num_gpus}")
        ray = import_ray()
        self.ray, self.address = ray, address
        self.num_cpus, self.num_gpus, self.threads = float(num_cpus), float(num_gpus), threads
        # resources kept free of jobs, e.g. for the feature shards a job submits while it waits on them
        # (genbench run --feature-shards: Ray frees a waiting task's CPUs, not its GPUs)
        self.reserve_cpus, self.reserve_gpus = 0.0, 0.0
        self._own = False
        if not ray.is_initialized():
            import os

            env = {k: v for k, v in os.environ.items() if k.startswith("GENBENCH_") or k == "PYTHONPATH"}
            kw = dict(include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
            if address in (None, "", "local"):
                # address="local": always a new cluster of our own, never one that another process started
                ray.init(address="local", num_cpus=local_cpus or os.cpu_count() or 1, **kw)
            else:
                if address != "auto":
                    _check_reachable(address, connect_timeout_s)
                try:
                    ray.init(address=address, **kw)
                except (ConnectionError, RuntimeError, TimeoutError) as e:
                    raise InvalidInputError(f"cannot connect to a Ray cluster at {address} "
                                            f"({str(e).splitlines()[0] if str(e) else type(e).__name__}): "
                                            f"{RAY_LOCAL_HINT}") from None
            self._own = True

    def slots(self) -> int:
        """How many jobs the cluster can run at once with the per-job resources, leaving `reserve_cpus` and
        `reserve_gpus` free (at least 1)."""
        res = self.ray.cluster_resources()
        n = int(max(0.0, res.get("CPU", 1) - self.reserve_cpus) // self.num_cpus)
        if self.num_gpus > 0:
            n = min(n, int(max(0.0, res.get("GPU", 0) - self.reserve_gpus) // self.num_gpus))
        return max(1, n)

    def map_unordered(self, fn, items):
        ray = self.ray
        remote = ray.remote(num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=0)(_ray_call)
        fn_ref = ray.put(fn)
        it = iter(items)
        pending: dict = {}  # object ref -> item
        limit = self.slots()  # keep the cluster busy; the rest are taken (and marked started) as slots free up

        def submit_next() -> bool:
            for item in it:
                pending[remote.remote(fn_ref, item, self.threads)] = item
                return True
            return False

        try:
            while len(pending) < limit and submit_next():
                pass
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                ref = done[0]
                item = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as e:  # noqa: BLE001 - a job failure is a result, not a crash
                    yield item, None, _ray_error(ray, e)
                else:
                    yield item, result, None
                submit_next()
        finally:
            for ref in list(pending):  # interrupted: cancel what is still queued or running
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - already finished
                    pass

    def close(self) -> None:
        if self._own and self.ray.is_initialized():
            self.ray.shutdown()
            self._own = False


def _ray_error(ray, e: BaseException) -> BaseException:
    """The job's own exception when the task raised (so JobFailure stays a JobFailure), else a plain error saying
    the worker died."""
    exc = ray.exceptions
    if isinstance(e, exc.RayTaskError):
        cause = getattr(e, "cause", None)
        return cause if isinstance(cause, BaseException) else e
    if isinstance(e, (exc.WorkerCrashedError, getattr(exc, "NodeDiedError", exc.WorkerCrashedError))):
        return RuntimeError("the Ray worker running this job died (killed, out of memory, or its node was lost); "
                            "run again to retry it")
    if isinstance(e, exc.TaskCancelledError):
        return RuntimeError("the Ray task running this job was cancelled; run again to retry it")
    return e


EXECUTORS = {"local": LocalExecutor, "process": ProcessExecutor, "ray": RayExecutor}


def get_executor(name: str = "local") -> Executor:
    from genbench.registry import unknown_name_message
    from genbench.errors import UnknownNameError

    if name not in EXECUTORS:
        raise UnknownNameError(unknown_name_message("executor", name, EXECUTORS))
    return EXECUTORS[name]()


__all__ = ["Executor", "LocalExecutor", "ProcessExecutor", "RayExecutor", "get_executor", "EXECUTORS"]
