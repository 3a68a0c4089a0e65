"""Where benchmark jobs run. The runner hands an Executor a picklable job function and a list of job specs and
records each result in the results store as it comes back; only the driver process writes the store.

`LocalExecutor` (the default) runs jobs one after another in this process, sharing in-process caches (loaded
datasets, real-data features) between jobs.

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


EXECUTORS = {"local": LocalExecutor}


def get_executor(name: str = "local") -> Executor:
    from genbench.registry import unknown_name_message
    from genbench.errors import UnknownNameError

    if name not in EXECUTORS:
        raise UnknownNameError(unknown_name_message("executor", name, EXECUTORS))
    return EXECUTORS[name]()


__all__ = ["Executor", "LocalExecutor", "get_executor", "EXECUTORS"]
