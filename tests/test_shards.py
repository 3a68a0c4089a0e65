"""Sharded feature passes (genbench/pipeline/shards.py, genbench.metrics.stats.ShardStats): the merged
statistics give the unsharded Frechet distance to 1e-10 relative (1e-8 where the covariances are singular, see
test_merged_sums_of_a_sharded_extractor_pass_give_the_one_pass_fd) for any shard count and order."""

from __future__ import annotations

import random

import pytest
import torch

from genbench.data import get_dataset
from genbench.errors import InvalidInputError
from genbench.executors import LocalExecutor, ProcessExecutor
from genbench.metrics.frechet import frechet_distance
from genbench.metrics.stats import ShardStats, gaussian_stats
from genbench.pipeline.shards import shard_items, sharded_feature_stats


def _feats(seed: int, n: int = 4000, d: int = 48, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    # ReLU features with a mean of the order of their spread, like Inception pool features
    return torch.relu(torch.randn(n, d, generator=g, dtype=torch.float64) @ w + 0.5 + shift)


@pytest.mark.parametrize("shards", [1, 2, 3, 7, 64, 101])
def test_merged_fd_equals_unsharded_for_any_count_and_order(shards):
    real, fake = _feats(0), _feats(1, shift=0.05)
    want = frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))
    assert want > 0
    rng = random.Random(shards)
    for shift in (None, real.mean(0)):
        parts = [ShardStats.of(x, start=s, shift=shift, keep_features=True) for s, x in shard_items(real, shards)]
        rng.shuffle(parts)  # shards finish in any order
        merged = ShardStats.merge(parts)
        assert merged.n == real.shape[0] and torch.equal(merged.features, real)
        mu, sigma = merged.stats()
        got = frechet_distance(mu, sigma, *gaussian_stats(fake))
        assert abs(got - want) <= 1e-10 * want, (shards, shift is None, got, want)
        mu0, s0 = gaussian_stats(real)
        assert torch.allclose(mu, mu0, rtol=0, atol=1e-13) and torch.allclose(sigma, s0, rtol=0, atol=1e-13)


def test_shard_items_cover_every_row_once():
    x = torch.arange(103)
    for k in (1, 2, 10, 103, 500):
        items = shard_items(x, k)
        assert torch.equal(torch.cat([s for _, s in items]), x) and [a for a, _ in items] == sorted(a for a, _ in items)
        aligned = shard_items(x, k, align=16)
        assert torch.equal(torch.cat([s for _, s in aligned]), x) and all(a % 16 == 0 for a, _ in aligned)
        assert len(aligned) == min(k, 7)


def test_shards_of_different_shifts_or_dims_do_not_merge():
    a = ShardStats.of(_feats(0, 10, 4))
    with pytest.raises(InvalidInputError, match="cannot be merged"):
        ShardStats.merge([a, ShardStats.of(_feats(0, 10, 4), shift=torch.ones(4))])
    with pytest.raises(InvalidInputError, match="cannot be merged"):
        ShardStats.merge([a, ShardStats.of(_feats(0, 10, 5))])


def test_shard_stats_known_answers_and_boundaries(monkeypatch):
    """ShardStats against torch's own mean and covariance (every row counted, from the first), the n = 2 boundary,
    empty shards (a worker that got no rows), features kept only when every shard kept them, and the singular
    covariance warning."""
    from genbench.metrics._util import MetricWarning

    x = _feats(3, 9, 4)
    for shift in (None, torch.full((4,), 0.7, dtype=torch.float64)):
        mu, sigma = ShardStats.merge([ShardStats.of(x[:4], 0, shift), ShardStats.of(x[4:], 4, shift),
                                      ShardStats.of(x[:0], 9, shift)]).stats()
        torch.testing.assert_close(mu, x.mean(0), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(sigma, torch.cov(x.T), rtol=1e-12, atol=1e-12)
    one = ShardStats.of(x[:1])
    assert one.n == 1 and float(one.s1.sum()) == pytest.approx(float(x[0].sum()))  # the first row is counted
    with pytest.raises(InvalidInputError, match="at least 2 feature rows"):
        one.stats()
    with pytest.warns(MetricWarning, match="singular"):  # n = 2 <= d = 4: allowed, and warned about
        mu2, s2 = ShardStats.of(x[:2]).stats()
    torch.testing.assert_close(s2, torch.cov(x[:2].T), rtol=1e-12, atol=1e-12)
    import genbench.metrics.stats as stats_mod

    monkeypatch.setattr(stats_mod, "_CHUNK", 2)  # more rows than one chunk (and than dimensions): every chunk counts
    mu3, s3 = ShardStats.of(x).stats()
    torch.testing.assert_close((mu3, s3), (x.mean(0), torch.cov(x.T)), rtol=1e-12, atol=1e-12)
    assert ShardStats.of(x).start == 0
    kept = ShardStats.of(x[:4], 0, keep_features=True)
    assert ShardStats.of(x[:4]).features is None and ShardStats(4, kept.s1, kept.s2).start == 0
    assert ShardStats.merge([kept, ShardStats.of(x[4:], 4)]).features is None  # not every shard kept them
    both = ShardStats.merge([ShardStats.of(x[4:], 4, keep_features=True), kept])
    torch.testing.assert_close(both.features, x)  # in the unsharded order


def test_sharded_pass_on_workers_equals_one_pass():
    x = get_dataset("ring8").load("test").x[:3000]
    whole = sharded_feature_stats(x, "identity", shards=1, keep_features=True)
    mu0, s0 = gaussian_stats(whole.features)
    for ex in (LocalExecutor(), ProcessExecutor(workers=2, threads=1)):
        m = sharded_feature_stats(x, "identity", shards=5, executor=ex, keep_features=True)
        assert torch.equal(m.features, whole.features)
        mu, s = m.stats()
        assert torch.allclose(mu, mu0, rtol=0, atol=1e-14) and torch.allclose(s, s0, rtol=0, atol=1e-14)


# ---- sharded passes inside jobs: genbench eval and genbench run (FeatureSharding) ------------------------------

import dataclasses  # noqa: E402

import numpy as np  # noqa: E402

from genbench.cli import main  # noqa: E402
from genbench.evaluate import evaluate_samples  # noqa: E402
from genbench.pipeline.shards import FeatureSharding  # noqa: E402
from tests.helpers.dummy_suite import suite_toml  # noqa: E402


class _PermutedExecutor(LocalExecutor):
    """Runs the shards in this process in a seeded random order (or reversed), recording where each started."""

    def __init__(self, order, log: list):
        self.order, self.log = order, log

    def map_unordered(self, fn, items):
        items = list(items)
        if self.order == "reversed":
            items.reverse()
        elif self.order != "forward":
            random.Random(self.order).shuffle(items)
        self.log.append([start for start, _ in items])
        yield from super().map_unordered(fn, items)


@dataclasses.dataclass(frozen=True)
class _Permuted(FeatureSharding):
    order: object = "forward"
    log: list = dataclasses.field(default_factory=list, compare=False, hash=False)

    def make_executor(self):
        return _PermutedExecutor(self.order, self.log)


@pytest.fixture
def small_batches(monkeypatch):
    """Feature batches of 8 rows (sharded and unsharded passes alike), so 128 samples make up to 16 shards."""
    import genbench.pipeline.scoring as scoring
    import genbench.pipeline.worker as worker

    monkeypatch.setattr(scoring, "FEATURE_BATCH_SIZE", 8)
    monkeypatch.setattr(worker, "FEATURE_BATCH_SIZE", 8)
    return 8


@pytest.fixture
def user_digits(tmp_path):
    x = get_dataset("digits").load("train").x[:600]
    x = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    p = tmp_path / "user.npy"
    np.save(p, x.numpy().astype(np.float32))
    return p


def _fd(result) -> float:
    (row,) = [r for r in result.rows if r.get("name", r.get("metric")) == "fd" and not r.get("variant")]
    return float(row["value"])


def test_eval_fd_from_a_sharded_pass_equals_one_pass_for_several_counts_and_orders(tmp_path, monkeypatch,
                                                                                    small_batches, user_digits):
    """`genbench eval` with its feature passes (the user's samples and the reference, built anew in a fresh
    cache each time) in 2, 3 and 16 shards finishing in reversed or random order: FD equals the one-pass FD to
    1e-10 relative (it is the same features, so in fact equal)."""
    kw = dict(extractor="random-conv", metrics=["fd"], quiet=True)
    monkeypatch.setenv("GENBENCH_STATS_CACHE", str(tmp_path / "one-pass"))
    want = _fd(evaluate_samples(user_digits, "digits", **kw))
    assert want > 0
    for i, (shards, order) in enumerate([(2, "reversed"), (3, 7), (16, 11)]):
        monkeypatch.setenv("GENBENCH_STATS_CACHE", str(tmp_path / f"sharded{i}"))
        sh = _Permuted(shards, "local", order=order)
        got = _fd(evaluate_samples(user_digits, "digits", sharding=sh, **kw))
        assert abs(got - want) <= 1e-10 * want, (shards, order, got, want)
        assert len(sh.log) == 2  # the reference pass and the samples' pass both went through the shards
        starts = sh.log[-1]  # the samples' pass: the protocol's 128 rows in batch-aligned shards
        assert len(starts) == shards and all(s % small_batches == 0 for s in starts)
        if order != "forward":
            assert starts != sorted(starts)


def test_merged_sums_of_a_sharded_extractor_pass_give_the_one_pass_fd(small_batches):
    """The (n, sum x, sum x x^T) the shards return, merged in any order, give the FD of one pass's features to
    1e-8 relative (a real network: random-conv on digits). Why 1e-8 and not tighter: these 128-d covariances of 300
    rows are singular, so the FD is ill-conditioned; perturbing the stats at float64 rounding (1e-16 relative)
    moves it by up to 1.3e-10 relative, and other summation orders (another CPU's BLAS) by as much: 1.8e-10 was
    seen on an Intel Xeon with AMX against a 1e-10 bar that had passed on an AMD EPYC. A merge that loses a tenth
    of the rows moves it by more than 1e-3 relative (checked below), so the bar still tells a bug from rounding."""
    from genbench.pipeline.worker import Worker

    real = get_dataset("digits").load("test").x[:300]
    fake = (real.flip(-1) + 0.1).clamp(0, 1)
    w = Worker()
    one = [w.features("random-conv", "cpu", x, 32, True, "") for x in (real, fake)]
    want = frechet_distance(*gaussian_stats(one[0]), *gaussian_stats(one[1]))
    for shards, order in [(2, "reversed"), (5, 3), (10, "forward")]:
        merged = [_Permuted(shards, "local", order=order).run(x, "random-conv", "cpu", 32) for x in (real, fake)]
        assert all(torch.equal(m.features, f) for m, f in zip(merged, one))
        got = frechet_distance(*merged[0].stats(), *merged[1].stats())
        assert abs(got - want) <= 1e-8 * want, (shards, order, got, want)
    lost = frechet_distance(*gaussian_stats(one[0][:270]), *gaussian_stats(one[1]))  # a shard of 30 rows missing
    assert abs(lost - want) > 1e-3 * want


RUN_SUITE = suite_toml({"digits": {"features": "random-conv", "n_samples": 300, "metrics": ["fd", "prdc"]}},
                       {"gmm": {}}, name="sharded", n_bootstrap=0, speed={"batch_size": 64, "repeats": 1, "warmup": 0})


def test_run_jobs_shard_their_feature_passes_with_the_same_numbers(tmp_path, monkeypatch, small_batches):
    from genbench.runner import Runner
    from genbench.results.store import ResultsStore
    from genbench.suite import load_suite

    p = tmp_path / "s.toml"
    p.write_text(RUN_SUITE)

    def values(out, sharding, cache):
        monkeypatch.setenv("GENBENCH_STATS_CACHE", str(tmp_path / cache))
        Runner(load_suite(p), out, quiet=True, log=lambda m: None, feature_shards=sharding).run()
        f = ResultsStore(out).metrics_frame()
        return {r.metric: float(r.value) for r in f.itertuples() if r.metric in ("fd", "precision", "recall",
                                                                                 "density", "coverage")}

    want = values(tmp_path / "one", None, "c1")
    sh = _Permuted(4, "local", order=5)
    got = values(tmp_path / "sharded", sh, "c2")
    assert set(want) == {"fd", "precision", "recall", "density", "coverage"}
    assert abs(got["fd"] - want["fd"]) <= 1e-10 * want["fd"] and got == want
    assert [len(s) for s in sh.log] == [4, 4]  # the reference's pass and the job's samples


@pytest.mark.slow  # spawns worker processes (~15 s idle); the pass on processes is also checked above, directly
def test_eval_cli_shards_on_worker_processes(tmp_path, user_digits, small_batches, capsys):
    """`genbench eval --shards 3 --executor process --workers 2`: the samples' pass (the protocol's 128 of them)
    runs on 2 spawned processes in 3 shards, and the FD line is that of one pass."""
    args = ["eval", "--samples", str(user_digits), "--dataset", "digits", "--extractor", "random-conv",
            "--metrics", "fd"]
    assert main(args) == 0  # builds the reference in this process; the sharded run below reads it
    one = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| fd ")]
    assert main(args + ["--shards", "3", "--executor", "process", "--workers", "2"]) == 0
    out = capsys.readouterr()
    assert "3 shards on 2 worker processes" in out.err
    assert [ln for ln in out.out.splitlines() if ln.startswith("| fd ")] == one and one


def test_bad_shard_options_are_refused_with_what_to_do(tmp_path, user_digits, capsys):
    base = ["eval", "--samples", str(user_digits), "--dataset", "digits"]
    assert main(base + ["--shards", "0"]) == 2
    assert "--shards 0" in capsys.readouterr().err
    assert main(base + ["--shards", "2", "--address", "auto"]) == 2
    assert "--executor ray" in capsys.readouterr().err
    assert main(["run", "smoke", "--feature-shards", "2", "--workers", "2", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "busy running jobs" in err and "--executor ray" in err
    with pytest.raises(InvalidInputError, match="executor 'mpi'"):
        FeatureSharding(2, "mpi")
