"""Inception Score: the formula against a brute-force double loop and torchmetrics' InceptionScore on the same
probabilities; the full-Inception extractor's conventions (no output bias, verification, skip message) on a small
TorchScript network with NVIDIA's interface (NVIDIA's real file is not available offline)."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genbench.errors import GenbenchError, InvalidInputError
from genbench.features import inception_full as full
from genbench.metrics import EvalContext, MetricWarning, compute_metrics, inception_score

pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit.s:FutureWarning"),
              pytest.mark.filterwarnings("ignore:inception_score.*per split:genbench.metrics._util.MetricWarning")]


def _probs(n=1000, k=20, seed=0):
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(k, 0.3), size=n)


def _brute(p, splits):
    n = len(p)
    scores = []
    for i in range(splits):
        rows = p[i * n // splits:(i + 1) * n // splits]
        marg = [sum(r[j] for r in rows) / len(rows) for j in range(p.shape[1])]
        kl = 0.0
        for r in rows:
            kl += sum(r[j] * (math.log(r[j]) - math.log(marg[j])) for j in range(p.shape[1]) if r[j] > 0)
        scores.append(math.exp(kl / len(rows)))
    m = sum(scores) / splits
    return m, math.sqrt(sum((s - m) ** 2 for s in scores) / splits)


@pytest.mark.parametrize("n,splits", [(1000, 10), (1003, 10), (60, 3)])
def test_equals_brute_force(n, splits):
    p = _probs(n)
    p[0, :] = 0.0
    p[0, 3] = 1.0  # a one-hot row: 0 log 0 = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        got = inception_score(p, splits)
    want = _brute(p, splits)
    assert got[0] == pytest.approx(want[0], rel=1e-12) and got[1] == pytest.approx(want[1], rel=1e-9, abs=1e-12)


def test_equals_torchmetrics_on_the_same_probabilities():
    from torchmetrics.image.inception import InceptionScore

    p = torch.from_numpy(_probs(2000, 50, seed=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tm = InceptionScore(feature=torch.nn.Identity(), splits=10)
        tm.update(p.log())  # softmax(log p) = p: torchmetrics takes logits
        torch.manual_seed(7)
        tm_mean, tm_std = tm.compute()
    torch.manual_seed(7)
    perm = torch.randperm(2000)  # torchmetrics shuffles before splitting; genbench keeps the sampler's order
    mean, std = inception_score(p[perm], 10)
    assert mean == pytest.approx(float(tm_mean), rel=1e-10)
    assert std == pytest.approx(float(tm_std) * math.sqrt(9 / 10), rel=1e-8)  # torchmetrics: ddof 1; here ddof 0


def test_analytic_cases():
    k, n = 8, 800
    assert inception_score(torch.full((n, k), 1 / k, dtype=torch.float64), 2) == pytest.approx((1.0, 0.0), abs=1e-12)
    onehot = F.one_hot(torch.arange(n) % k, k).double()  # every part holds every class equally
    mean, std = inception_score(onehot, 2)
    assert mean == pytest.approx(k, rel=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_too_few_samples_and_bad_input():
    with pytest.raises(InvalidInputError, match="at least 10 samples"):
        inception_score(_probs(9), 10)
    with pytest.warns(MetricWarning, match=r"100 per split.*at least 5000 samples"):
        inception_score(_probs(1000), 10)
    with pytest.raises(InvalidInputError, match="summing to 1"):
        inception_score(np.ones((20, 4)), 2)
    with pytest.raises(InvalidInputError, match="splits"):
        inception_score(_probs(20), 0)


# ------------------------------------------------------------------ the extractor, on a network with NVIDIA's interface
class _NvidiaLike(torch.nn.Module):
    def __init__(self, trunk_seed=0):
        super().__init__()
        torch.manual_seed(trunk_seed)
        self.layers = torch.nn.Sequential(torch.nn.Conv2d(3, 2048, 4, stride=4), torch.nn.AdaptiveAvgPool2d(1))
        self.output = torch.nn.Linear(2048, 1008)
        with torch.no_grad():
            self.output.bias.normal_(0, 3.0)  # a large bias, so leaving it out matters

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        x = F.interpolate(img.to(torch.float32), size=(16, 16), mode="bilinear", align_corners=False)
        x = (x - 128.0) / 128.0
        f = self.layers(x).reshape(-1, 2048)
        if return_features:
            return f
        logits = F.linear(f, self.output.weight) if no_output_bias else self.output(f)
        return torch.softmax(logits, 1)


@pytest.fixture
def nvidia_like(tmp_path, monkeypatch):
    net = _NvidiaLike()
    path = tmp_path / "inception-2015-12-05.pt"
    torch.jit.save(torch.jit.script(net), str(path))
    monkeypatch.setenv(full.ENV, str(path))
    monkeypatch.setattr(full, "reference_trunk_state", lambda: net.layers.state_dict())
    full._CACHE.clear()
    yield net, path
    full._CACHE.clear()


def _images(n=24, c=1):
    return torch.rand(n, c, 28, 28, generator=torch.Generator().manual_seed(0))


def test_probabilities_are_the_softmax_without_output_bias(nvidia_like):
    net, path = nvidia_like
    ext = full.InceptionProbs()
    x = _images()
    p = ext.extract(x)
    u8 = torch.round(x * 255).to(torch.uint8).repeat(1, 3, 1, 1)
    with torch.no_grad():
        feats = net(u8, return_features=True)
        want = torch.softmax(feats @ net.output.weight.T, 1).double()
        with_bias = torch.softmax(net.output(feats), 1).double()
    torch.testing.assert_close(p, want, rtol=1e-5, atol=1e-7)
    assert (p - with_bias).abs().max() > 1e-3
    proto = ext.protocol
    assert proto["pinned"] is False and proto["weights_sha256"] == full.file_sha256(path)
    assert proto["id"].endswith(proto["weights_sha256"][:12]) and "no output bias" in proto["output"]


def test_metric_through_the_context_fields(nvidia_like):
    fields = full.inception_probs_fields(_images(40, 3), "cpu")
    ctx = EvalContext(**fields, seed=0, is_splits=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        (res,) = compute_metrics(["inception_score"], ctx)
        want = inception_score(fields["fake_inception_probs"], 4)
    assert res.value == want[0] and res.extra["std"] == want[1] and res.higher_is_better
    assert res.protocol["splits"] == 4 and res.protocol["classifier"]["extractor"] == "inception-probs"


def test_skipped_with_how_to_provide_it_when_absent(monkeypatch, tmp_path):
    monkeypatch.delenv(full.ENV, raising=False)
    monkeypatch.setattr(full, "CLEANFID_PATH", tmp_path / "absent.pt")
    full._CACHE.clear()
    fields = full.inception_probs_fields(_images(), "cpu")
    ctx = EvalContext(**fields)
    assert compute_metrics(["inception_score"], ctx) == []
    why = ctx.skipped["inception_score"]
    assert full.ENV in why and full.URL in why and "absent.pt" in why
    monkeypatch.setenv(full.ENV, str(tmp_path / "nope.pt"))
    with pytest.raises(full.InceptionUnavailable, match="is not a file"):
        full.find_full_inception()


def test_wrong_files_are_refused(nvidia_like, monkeypatch, tmp_path):
    net, path = nvidia_like
    sha = full.file_sha256(path)
    monkeypatch.setattr(full, "FULL_FILE_SHA256", "0" * 64)
    with pytest.raises(GenbenchError, match=f"sha256 {sha} .*expected {'0' * 64}"):
        full.InceptionProbs()
    monkeypatch.setattr(full, "FULL_FILE_SHA256", sha)
    ext = full.InceptionProbs()
    assert ext.protocol["pinned"] is True and ext.protocol["id"] == full.PROTOCOL_ID
    monkeypatch.setattr(full, "FULL_FILE_SHA256", None)
    other = _NvidiaLike(trunk_seed=1).layers.state_dict()
    monkeypatch.setattr(full, "reference_trunk_state", lambda: other)
    with pytest.raises(GenbenchError, match="differ from the pinned fid-inception"):
        full.InceptionProbs()
    trunk_only = tmp_path / "trunk.pt"
    torch.jit.save(torch.jit.script(torch.nn.Sequential(net.layers)), str(trunk_only))
    with pytest.raises(GenbenchError, match="output"):
        full.InceptionProbs(weights=trunk_only)
    fields = full.inception_probs_fields(_images(), "cpu")  # in a run: skipped, saying why
    assert "differ from the pinned" in fields["unavailable"]["fake_inception_probs"]


# ------------------------------------------------------------------ the boundaries of the checks (issue 24, mutation)
def test_boundaries_of_the_input_checks():
    two = F.one_hot(torch.arange(6) % 2, 2).double()  # classes 0,1,0,1,0,1; K = 2 is enough
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        mean, std = inception_score(two, 1)  # splits = 1: the whole set, p(y) = (1/2, 1/2), IS = 2
        assert (mean, std) == pytest.approx((2.0, 0.0), abs=1e-12)
        # parts [0, 1, 0] and [1, 0, 1]: p(y) = (2/3, 1/3) and (1/3, 2/3), KL mean = H(p(y)) = log 3 - 2/3 log 2
        h = math.log(3) - 2 / 3 * math.log(2)
        assert inception_score(two, 2) == pytest.approx((math.exp(h), 0.0), abs=1e-12)
        # n == splits: one row per part, p(y) = the row, IS = 1 per part
        assert inception_score(two[:4], 4) == pytest.approx((1.0, 0.0), abs=1e-12)
        # row sums within 1e-4 of 1 are accepted, beyond refused
        near = np.array([[0.5, 0.5 + 0.9e-4], [0.5, 0.5]])
        assert inception_score(near, 1)[0] > 1.0
    with pytest.raises(InvalidInputError, match="summing to 1"):
        inception_score(np.array([[0.5, 0.5 + 1.1e-4], [0.5, 0.5]]), 1)
    with pytest.raises(InvalidInputError, match="K >= 2"):
        inception_score(np.ones((4, 1)), 1)
    with pytest.raises(InvalidInputError, match="non-negative"):
        inception_score(np.array([[1.5, -0.5], [0.5, 0.5]]), 1)
    with pytest.raises(InvalidInputError, match="at least 4 samples"):
        inception_score(two[:3], 4)
    for bad in (True, 2.5, -1):
        with pytest.raises(InvalidInputError, match="splits >= 1"):
            inception_score(two, bad)


def test_warning_only_below_500_per_split():
    p = _probs(5000, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MetricWarning)
        inception_score(p, 10)  # exactly 500 per split: no warning
    with pytest.warns(MetricWarning, match="499 per split"):
        inception_score(p[:4999], 10)


def test_declaration_higher_is_better_quality_on_images():
    from genbench.metrics import registry as reg

    spec, out = reg.get_metric("inception_score"), reg.output("inception_score")
    assert (spec.higher_is_better, spec.modalities, spec.requires) == (True, ("image",), ("fake_inception_probs",))
    assert (out.higher_is_better, out.category, out.label) == (True, "quality", "IS")
    q = reg.in_category("quality")  # rank 6: before CMMD (rank 7)
    assert q.index("density") < q.index("inception_score") < q.index("cmmd")
    d = reg.display_order()  # order 48: between fd_inf (45) and kid (50)
    assert d.index("fd_inf") < d.index("inception_score") < d.index("kid")


def test_ten_splits_by_default():
    p = _probs(1003)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        assert inception_score(p)[0] == pytest.approx(_brute(p, 10)[0], rel=1e-12)
        assert inception_score(p)[1] == pytest.approx(_brute(p, 10)[1], rel=1e-9)


def test_protocol_names_the_classifier_not_the_dataset_features():
    p = torch.from_numpy(_probs(60, 5))
    feats = torch.zeros(7, 3, dtype=torch.float64)
    ctx = EvalContext(fake_inception_probs=p, inception_protocol={"id": "inception-probs"}, is_splits=3,
                      real_features=feats, fake_features=feats, feature_protocol={"id": "identity"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        (res,) = compute_metrics(["inception_score"], ctx)
    proto = res.protocol
    assert proto["n_samples"] == 60 and proto["splits"] == 3 and proto["classifier"] == {"id": "inception-probs"}
    assert "features" not in proto and "n_real" not in proto
