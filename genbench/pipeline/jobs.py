"""What one job is: its spec (picklable, for any executor), the hashes that decide whether a recorded job is
still valid (its settings, the model's code, the harness code) and the checkpoint cache key's parts."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from genbench.errors import GenbenchError
from genbench.suite import DatasetSpec, ModelSpec, SpeedSpec, Suite, SweepSpec


class JobFailure(GenbenchError):
    """A job could not produce valid results (diverged training, non-finite or malformed samples...)."""


@dataclass
class JobSpec:
    """Everything a worker needs to run one job (picklable, so a cluster executor can ship it)."""

    job_id: str
    dataset: DatasetSpec
    model: ModelSpec
    seed: int
    budget: str
    device: str
    speed: SpeedSpec
    sweep: Optional[SweepSpec]
    n_bootstrap: int
    out_dir: str
    quiet: bool = False
    threads: Optional[int] = None  # torch CPU threads the job runs with (None: not known, e.g. genbench eval)
    # how the job's feature passes are sharded across the executor's workers (genbench.pipeline.shards
    # .FeatureSharding; None: one pass in the job's process). Not in spec_hash: the features are the same bits.
    feature_shards: Optional[Any] = None

    @property
    def spec_hash(self) -> str:
        """Changes whenever anything that changes this job's numbers changes (then a resume redoes it). The
        thread count is included: it changes float summation order, hence quality numbers slightly (digits/gan FD
        43.850 with one thread count, 43.857 with another)."""
        blob = {"dataset": vars(self.dataset), "model": vars(self.model), "seed": self.seed, "budget": self.budget,
                "device": self.device, "speed": vars(self.speed), "sweep": vars(self.sweep) if self.sweep else None,
                "n_bootstrap": self.n_bootstrap, "threads": self.threads}
        return stable_hash(blob)


@dataclass
class JobResult:
    job_id: str
    family: str
    metrics: list  # metric rows (dicts with "variant")
    artifacts: list  # (kind, path relative to DIR)
    train_seconds: Optional[float]
    checkpoint_path: Optional[str]
    cache_key: str
    config: dict
    cached: bool = False
    seconds: float = 0.0


def job_id_for(dataset: str, model: str, seed: int) -> str:
    return f"{dataset}/{model}/seed{seed}"


def slug(job_id: str) -> str:
    return job_id.replace("/", "__")


def stable_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def make_jobs(suite: Suite, out_dir: Path, device: str, quiet: bool = False,
              threads: Optional[int] = None) -> list[JobSpec]:
    """The suite's jobs; `threads` = the torch CPU threads each job runs with (part of its spec hash)."""
    jobs = []
    for d, m in suite.pairs():
        # the model spec as this job sees it: its overrides for this dataset only (so the job's hash, and a
        # resume, depend on nothing that belongs to other datasets)
        m = dataclasses.replace(m, overrides=m.overrides_for(d.name), dataset_overrides={})
        for seed in suite.seeds:
            jobs.append(JobSpec(job_id_for(d.name, m.name, seed), d, m, int(seed), suite.budget, device, suite.speed,
                                suite.sweeps.get(m.name), suite.n_bootstrap, str(out_dir), quiet, threads))
    return jobs


def job_dict(j: JobSpec) -> dict:
    return {"dataset": vars(j.dataset), "model": vars(j.model), "seed": j.seed, "budget": j.budget,
            "device": j.device, "speed": vars(j.speed), "sweep": vars(j.sweep) if j.sweep else None,
            "n_bootstrap": j.n_bootstrap, "threads": j.threads}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def code_version(cls) -> str:
    """Digest of the code a model's checkpoint depends on: genbench's version, every source file of the model
    protocol (genbench/models/) and of the built-in families' package (networks live in shared modules such as
    nets.py/unet.py), and the files defining the class and its bases (user models live elsewhere)."""
    import importlib.util

    import genbench
    from genbench.models import BUILTIN_FAMILIES

    h = hashlib.sha256(genbench.__version__.encode())
    files = set((Path(genbench.__file__).resolve().parent / "models").glob("*.py"))
    families = importlib.util.find_spec(BUILTIN_FAMILIES[0].split(".")[0])
    if families is not None and families.origin:
        files |= set(Path(families.origin).resolve().parent.glob("*.py"))
    for k in inspect.getmro(cls):
        try:
            f = inspect.getsourcefile(k)
        except TypeError:  # builtins (object, ABC)
            continue
        if f:
            files.add(Path(f).resolve())
    for f in sorted(files):
        h.update(str(f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


_HARNESS_CODE: list = []


def harness_code_version() -> str:
    """Digest of genbench's code that turns samples into numbers (data, features, metrics, the pipeline and the
    defaults it reads)."""
    if not _HARNESS_CODE:
        root = Path(__file__).resolve().parents[1]
        files = sorted([*(root / "data").rglob("*.py"), *(root / "features").rglob("*.py"),
                        *(root / "metrics").rglob("*.py"), *(root / "pipeline").rglob("*.py"), root / "defaults.py"])
        h = hashlib.sha256()
        for f in files:
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
        _HARNESS_CODE.append(h.hexdigest()[:16])
    return _HARNESS_CODE[0]


def job_code_version(model_name: str) -> str:
    """What a recorded job's numbers depend on besides its settings: the model's code and the harness code. A
    finished job whose code version changed is redone on resume (its checkpoint is reused if the model's own
    code did not change)."""
    from genbench.models import get_model_class

    return f"{code_version(get_model_class(model_name))}-{harness_code_version()}"
