"""Sharded feature passes: split a large sample set into shards, featurise them on the executor's workers
(genbench/executors.py: local, process or Ray), and merge their exactly mergeable statistics
(genbench.metrics.stats.ShardStats: n, sum x, sum x x^T in float64, plus the features when a k-NN metric needs
them). The merged mean and covariance equal the unsharded ones to float64 rounding for any shard count and
finishing order. Shard boundaries are multiples of the extraction batch size and every shard worker runs with the
pass's own torch thread count, so the features are those of one pass.

`FeatureSharding` says how a pass is split and where its shards run. Users:
  - `genbench stats build --shards N --executor process|ray` (reference sets);
  - `genbench eval --shards N --executor local|process|ray` (the user's samples, and the reference when it is
    not cached yet);
  - `genbench run --feature-shards N` (every job's fake-feature pass and any reference pass it builds): with
    `--executor ray` the shards are Ray tasks on the cluster that runs the jobs; with `--executor local` (jobs
    one at a time in this process) they run on `--workers` spawned processes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

from genbench.errors import InvalidInputError
from genbench.metrics.stats import ShardStats

SHARD_EXECUTORS = ("local", "process", "ray")


class ShardTask:
    """Featurise one shard in a worker: builds the extractor by name there (cached per process)."""

    _extractors: dict = {}

    def __init__(self, extractor: str, device: str, batch_size: int = 256, keep_features: bool = False,
                 shift: Optional[torch.Tensor] = None, threads: Optional[int] = None):
        self.extractor, self.device, self.batch_size = extractor, device, int(batch_size)
        self.keep_features, self.shift = bool(keep_features), shift
        self.threads = None if threads is None else int(threads)

    def __call__(self, item: tuple) -> ShardStats:
        start, samples = item
        if self.threads is not None and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)  # the pass's own count: the same float summation order
        key = (self.extractor, self.device)
        if key not in ShardTask._extractors:
            from genbench.features import get_extractor

            ShardTask._extractors[key] = get_extractor(self.extractor, device=self.device)
        ext = ShardTask._extractors[key]
        feats = ext.extract(samples, batch_size=self.batch_size).double().cpu()
        return ShardStats.of(feats, start=start, shift=self.shift, keep_features=self.keep_features)


def shard_items(samples: Any, shards: int, align: int = 1) -> list:
    """(start row, samples[start:stop]) for up to `shards` near-equal contiguous shards whose boundaries are
    multiples of `align` (the extraction batch size: then every batch is the one an unsharded pass forms, and
    the features are the same bits)."""
    n = len(samples)
    blocks = -(-n // max(1, int(align)))
    shards = max(1, min(int(shards), blocks))
    bounds = sorted({min(n, round(i * blocks / shards) * int(align)) for i in range(shards + 1)})
    return [(bounds[i], samples[bounds[i]:bounds[i + 1]]) for i in range(len(bounds) - 1)]


def sharded_feature_stats(samples: Any, extractor: str, device: str = "cpu", shards: int = 4, executor=None,
                          keep_features: bool = False, batch_size: int = 256,
                          shift: Optional[torch.Tensor] = None, threads: Optional[int] = None) -> ShardStats:
    """Featurise `samples` in `shards` shards on `executor` (default: in this process) and merge. A shard that
    fails raises (a partial reference would be wrong). `threads`: torch threads in each shard worker."""
    from genbench.executors import LocalExecutor

    ex = executor or LocalExecutor()
    task = ShardTask(extractor, device, batch_size, keep_features, shift, threads)
    out = []
    for item, result, err in ex.map_unordered(task, shard_items(samples, shards, align=batch_size)):
        if err is not None:
            raise RuntimeError(f"feature shard starting at row {item[0]} failed: {err}") from err
        out.append(result)
    return ShardStats.merge(out)


@dataclass(frozen=True)
class FeatureSharding:
    """How a feature pass is split: `shards` batch-aligned shards run on `executor` -- 'local' (this process, one
    after another), 'process' (`workers` spawned processes) or 'ray' (Ray tasks with `num_cpus`/`num_gpus` each,
    on the cluster this process is already connected to -- inside a Ray job, the one running the jobs -- else
    the one at `address`, else a local instance with `workers` CPUs). `threads`: torch threads per shard worker
    (the pass's own count, so the features are the same bits as one pass). Picklable: a job carries it."""

    shards: int
    executor: str = "process"
    workers: int = 2
    address: Optional[str] = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    threads: Optional[int] = None

    def __post_init__(self):
        if int(self.shards) < 1:
            raise InvalidInputError(f"feature shards: {self.shards}: give 1 or more")
        if self.executor not in SHARD_EXECUTORS:
            raise InvalidInputError(f"feature shards: executor {self.executor!r}: choose one of "
                                    f"{', '.join(SHARD_EXECUTORS)}")
        if int(self.workers) < 1:
            raise InvalidInputError(f"feature shards: workers {self.workers}: give 1 or more")

    def describe(self) -> str:
        where = {"local": "this process", "process": f"{self.workers} worker processes",
                 "ray": "Ray tasks" + (f" at {self.address}" if self.address else "")}[self.executor]
        return f"{self.shards} shards on {where}"

    def make_executor(self):
        from genbench.executors import LocalExecutor, ProcessExecutor, RayExecutor

        if self.executor == "local":
            return LocalExecutor()
        if self.executor == "process":
            return ProcessExecutor(int(self.workers), threads=self.threads or 1)
        return RayExecutor(self.address, num_cpus=self.num_cpus, num_gpus=self.num_gpus, threads=self.threads,
                           local_cpus=int(self.workers))

    def run(self, samples: Any, extractor: str, device: str, batch_size: int, keep_features: bool = True,
            executor=None) -> ShardStats:
        """The merged ShardStats of `samples` through `extractor` (features kept when `keep_features`). `executor`
        replaces the one `make_executor` builds (it is then not closed here)."""
        ex = executor if executor is not None else self.make_executor()
        try:
            return sharded_feature_stats(samples, extractor, device, int(self.shards), ex, keep_features,
                                         batch_size, threads=self.threads)
        finally:
            if executor is None:
                ex.close()


__all__ = ["FeatureSharding", "SHARD_EXECUTORS", "ShardTask", "shard_items", "sharded_feature_stats"]
