"""docs/extending.md, followed step by step: a toy model, metric, dataset and feature extractor, each declared
once in this file, then a suite that names them runs, and the report, `genbench recommend`, `genbench compare`
and suite validation all see them."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers.dummy_suite import DUMMY_SPEED, write_suite  # noqa: E402

from genbench.data import DATASETS, register_dataset  # noqa: E402
from genbench.data.base import DataSplit, Dataset, DatasetInfo  # noqa: E402
from genbench.features import EXTRACTORS, register_extractor  # noqa: E402
from genbench.features.base import FeatureExtractor  # noqa: E402
from genbench.metrics.base import MetricResult  # noqa: E402
from genbench.metrics.registry import METRICS, MetricSpec, Output, register_metric  # noqa: E402
from genbench.models import MODELS, register_model  # noqa: E402
from genbench.models.base import LOG_PROB_NONE, GenerativeModel, ModelConfig  # noqa: E402


# ---- a dataset: four Gaussian blobs on the axes --------------------------------------------------------------
class Ring4(Dataset):
    info = DatasetInfo("ring4-test", "points", (2,), (-3.0, 3.0), num_modes=4, licence="generated")

    def _load(self, split):
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        means = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
        x = means[torch.randint(0, 4, (400,), generator=g)] + 0.05 * torch.randn(400, 2, generator=g)
        return DataSplit(x, None, self.info, split, "generated(seed=0/1)")


# ---- a feature extractor: distance from the origin -------------------------------------------------------------
class Radius(FeatureExtractor):
    name, dim, weightless = "radius-test", 1, True

    @property
    def protocol(self) -> dict:
        return {"id": "radius-test", "extractor": "radius-test", "version": "1"}

    def _prepare(self, samples):
        return torch.as_tensor(samples, dtype=torch.float64).reshape(len(samples), -1)

    def forward_batch(self, x):
        return x.norm(dim=1, keepdim=True)


# ---- a model: a Gaussian fitted by moments ------------------------------------------------------------------------
@dataclass
class BlobConfig(ModelConfig):
    steps: int = 1
    scale: float = 1.0


class Blob(GenerativeModel):
    name, family, modalities, log_prob_kind, Config = "blob-test", "toy", ("points",), LOG_PROB_NONE, BlobConfig

    def __init__(self, config, info):
        super().__init__(config, info)
        self.net = nn.Module()
        self.net.register_buffer("mu", torch.zeros(info.dim))
        self.net.register_buffer("sd", torch.ones(info.dim))

    def modules(self):
        return {"net": self.net}

    def fit(self, train, budget=None, seed=0, device="cpu", callbacks=()):
        self.net.mu.copy_(train.mean(0))
        self.net.sd.copy_(train.std(0) * self.config.scale)
        self.history.log(1, loss=0.0)
        self.history.steps = 1
        return self.history

    def _sample(self, n, generator):
        return self.net.mu + self.net.sd * torch.randn(n, self.info.dim, generator=generator)


# ---- a metric: the samples' mean per-dimension standard deviation, declared once ----------------------------------
def _spread(ctx) -> list:
    x = torch.as_tensor(ctx.fake_samples, dtype=torch.float64)
    return [MetricResult("spread", float(x.std(0).mean()), "", True, "1", {"n_fake": len(x)})]


SPREAD = MetricSpec("spread-test", "", True, "1", ("fake_samples",), _spread, "mean per-dimension std",
                    (Output("spread", "", True, category="diversity", label="spread", headline=("points",), order=35,
                            rank=20),), modalities=("points",))


@pytest.fixture
def extended():
    register_dataset("ring4-test", Ring4)
    register_extractor("radius-test", lambda device="cpu", **o: Radius(device=device), modality="points",
                       description="distance from the origin (1-d)")
    register_model(Blob)
    register_metric(SPREAD)
    yield
    for registry, name in ((DATASETS, "ring4-test"), (EXTRACTORS, "radius-test"), (MODELS, "blob-test"), (MODELS, "blob-wide"),
                           (METRICS, "spread-test")):
        registry._items.pop(name, None)


def _suite(tmp_path, models=("blob-test",), dataset="ring4-test", metrics=("fd", "spread-test"), **kw):
    return write_suite(tmp_path, {dataset: {"features": "radius-test", "n_samples": 200, "metrics": list(metrics)}},
                       {m: {} for m in models}, seeds=(0,), speed=DUMMY_SPEED, n_bootstrap=0, **kw)


def test_suite_validation_reads_the_declarations(extended, tmp_path):
    from genbench.suite import SuiteError, load_suite

    s = load_suite(_suite(tmp_path))
    assert s.datasets[0].metrics == ["fd", "spread-test"] and s.models[0].name == "blob-test"
    with pytest.raises(SuiteError, match=r"'spread' is one of the results of metric 'spread-test'"):
        load_suite(_suite(tmp_path, metrics=("spread",)))
    with pytest.raises(SuiteError, match=r"'spread-test' works on points data; 'fashion-mnist' is image data"):
        load_suite(write_suite(tmp_path, {"fashion-mnist": {"features": "random-conv", "n_samples": 50,
                                                            "metrics": ["spread-test"]}}, {"blob-test": {}}))
    with pytest.raises(SuiteError, match=r"extractor 'radius-test' works on points"):
        load_suite(write_suite(tmp_path, {"fashion-mnist": {"features": "radius-test", "n_samples": 50,
                                                            "metrics": ["fd"]}}, {"blob-test": {}}))


def test_run_report_recommend_and_compare_see_the_additions(extended, tmp_path):
    from genbench.results.compare import compare_frames, load_results
    from genbench.pipeline.driver import Runner
    from genbench.results.recommend import categories, recommend
    from genbench.report import render
    from genbench.results.store import ResultsStore
    from genbench.suite import load_suite

    wide = tmp_path / "wide"
    wide.mkdir()
    suite = load_suite(write_suite(wide, {"ring4-test": {"features": "radius-test", "n_samples": 200,
                                                         "metrics": ["fd", "spread-test"]}},
                                   {"blob-test": {}, "blob-wide": {"model": "test_extending:Blob",
                                                                   "overrides": {"scale": 2.0}}},
                                   seeds=(0,), speed=DUMMY_SPEED, n_bootstrap=0))
    out = tmp_path / "run"
    summary = Runner(suite, out, quiet=True, log=lambda m: None).run()
    assert summary.failed == [] and len(summary.done) == 2
    f = ResultsStore(out).metrics_frame()
    spread = dict(zip(f[f.metric == "spread"].model, f[f.metric == "spread"].value))
    assert spread["blob-wide"] == pytest.approx(2 * spread["blob-test"], rel=0.2)  # the model's scale shows
    assert math.isfinite(float(f[(f.metric == "fd") & (f.model == "blob-test")].value.iloc[0]))

    md = render(out, "md")  # the leaderboard has the declared column, with its label and direction
    header = next(ln for ln in md.splitlines() if ln.startswith("| model"))
    assert "spread ↑" in header and header.index("spread ↑") < header.index("FD ↓")  # order 35 < 40

    assert "spread" in categories()["diversity"]  # recommend scores it as diversity
    rec = recommend(f, weights={"diversity": 1.0})[0]
    assert rec.ranked[0].model == "blob-wide" and rec.ranked[0].categories["diversity"] == pytest.approx(1.0)

    rows = compare_frames(load_results(out), load_results(out), timing=False).rows
    assert any(r.metric == "spread" and r.model == "blob-test" for r in rows)
