"""Feature extractors other than Inception: registry, identity, random-conv, the genbench classifier (on the
small sklearn digits so it trains in seconds), the one-pass FeatureCache, input validation.
Slow (`make test-slow`): the Fashion-MNIST and MNIST accuracy bars and classifier:stacked-mnist."""

import warnings

import numpy as np
import pytest
import torch

from genbench.errors import InvalidInputError, UnknownNameError
from genbench.features import (FeatureCache, FeatureExtractor, describe_extractors, get_extractor, list_extractors,
                               register_extractor)
from genbench.features.classifier import ClassifierExtractor
from genbench.features.stacked_mnist import StackedMNISTClassifier


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def digits():
    from genbench.data import get_dataset

    ds = get_dataset("digits")
    return ds.load("train"), ds.load("test")


@pytest.fixture(scope="module")
def clf_dirs(tmp_path_factory):
    """Two independent caches, each trained from scratch (same seed)."""
    a, b = tmp_path_factory.mktemp("cache-a"), tmp_path_factory.mktemp("cache-b")
    ca = get_extractor("classifier:digits", cache_dir=a, verbose=False, weights="build")
    cb = get_extractor("classifier:digits", cache_dir=b, verbose=False, weights="build")
    return a, ca, cb


# ---------------------------------------------------------------------------------------------- registry


def test_list_and_names():
    names = list_extractors()
    for n in ["inception", "identity", "random-conv", "classifier:digits", "classifier:mnist",
              "classifier:fashion-mnist", "classifier:stacked-mnist"]:
        assert n in names
    assert "classifier:ring8" not in names  # points data has no classifier
    rows = {r["name"]: r for r in describe_extractors()}
    assert rows["classifier:<dataset>"]["modality"] == "image" and rows["identity"]["modality"] == "any"


@pytest.mark.parametrize("name, suggestion", [
    ("incepton", "'inception'"), ("classifier:fashion", "'classifier:fashion-mnist'"),
    ("clasifier:mnist", "'classifier:mnist'"), ("identity:2", "'identity'"), ("random_conv", "'random-conv'"),
])
def test_unknown_names_suggest(name, suggestion):
    with pytest.raises(UnknownNameError) as e:
        get_extractor(name)
    assert "Did you mean" in str(e.value) and suggestion in str(e.value)


def test_family_without_argument_lists_choices():
    with pytest.raises(UnknownNameError, match="classifier:<dataset>.*classifier:fashion-mnist"):
        get_extractor("classifier")


def test_classifier_on_unlabelled_data_is_refused():
    with pytest.raises(InvalidInputError, match="labelled image dataset"):
        ClassifierExtractor("ring8")


def test_cuda_refused_clearly_when_absent():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(InvalidInputError, match="CUDA is not available"):
        get_extractor("identity", device="cuda")


def test_register_a_new_extractor():
    class Sum(FeatureExtractor):
        name, dim = "sum-test", 1

        @property
        def protocol(self):
            return {"id": "sum-test"}

        def _prepare(self, s):
            return s.reshape(len(s), -1).double()

        def forward_batch(self, x):
            return x.sum(1, keepdim=True)

    register_extractor("sum-test", lambda device="cpu": Sum(device), modality="any", description="test")
    assert "sum-test" in list_extractors()
    f = get_extractor("sum-test").extract(torch.ones(5, 3), batch_size=2)
    assert f.dtype == torch.float64 and f.flatten().tolist() == [3.0] * 5
    with pytest.raises(ValueError):
        register_extractor("sum-test", lambda device="cpu": Sum(device))


# ---------------------------------------------------------------------------------------------- identity


def test_identity_flattens_to_float64():
    fx = get_extractor("identity")
    x = torch.randn(7, 2, dtype=torch.float32)
    f = fx.extract(x, batch_size=3)
    assert f.dtype == torch.float64 and torch.equal(f, x.double()) and fx.dim == 2
    img = np.random.default_rng(0).random((4, 1, 3, 3))
    assert torch.equal(fx.extract(img), torch.from_numpy(img.reshape(4, 9)))
    assert fx.protocol["id"] == "identity"
    with pytest.raises(InvalidInputError, match="NaN"):
        fx.extract(torch.tensor([[0.0, float("inf")]]))
    fixed = get_extractor("identity", dim=2)
    with pytest.raises(InvalidInputError, match="2-d"):
        fixed.extract(torch.zeros(3, 5))


# ---------------------------------------------------------------------------------------------- random-conv


def test_random_conv_seeded_and_batch_size_independent():
    x = torch.rand(9, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    a = get_extractor("random-conv").extract(x, batch_size=9)
    b = get_extractor("random-conv").extract(x, batch_size=2)
    c = get_extractor("random-conv", seed=1).extract(x)
    assert a.shape == (9, 128) and a.dtype == torch.float64
    assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)
    assert torch.equal(a, get_extractor("random-conv").extract(x, batch_size=9))  # same seed, same numbers
    assert not torch.allclose(a, c)
    assert "PLUMBING" in get_extractor("random-conv").protocol["purpose"]
    assert a.std(0).mean() > 0  # not constant


# ---------------------------------------------------------------------------------------------- classifier


def test_classifier_deterministic_same_seed_same_weights(clf_dirs):
    _, ca, cb = clf_dirs
    assert not ca.loaded_from_cache and not cb.loaded_from_cache  # both trained from scratch
    sa, sb = ca.model.state_dict(), cb.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert ca.protocol == cb.protocol and ca.accuracy == cb.accuracy


def test_classifier_second_use_loads_cache(clf_dirs, digits):
    a, ca, _ = clf_dirs
    files = list((a / "classifiers").glob("digits-seed0-*.pt"))
    assert len(files) == 1 and files[0] == ca.cache_path
    again = get_extractor("classifier:digits", cache_dir=a, verbose=False, weights="build")
    assert again.loaded_from_cache
    x = digits[1].x
    assert torch.equal(again.extract(x), ca.extract(x))
    assert again.protocol["id"] == ca.protocol["id"]


def test_classifier_accuracy_is_measured(clf_dirs, digits):
    _, ca, _ = clf_dirs
    test = digits[1]
    p = ca.predict_proba(test.x, batch_size=50)
    assert p.shape == (len(test), 10) and p.dtype == torch.float64
    assert torch.allclose(p.sum(1), torch.ones(len(test), dtype=torch.float64))
    acc = float((p.argmax(1) == test.y).double().mean())
    assert acc == ca.accuracy  # the reported number is the held-out accuracy, recomputed here independently
    assert acc >= 0.95
    assert torch.equal(ca.predict(test.x), p.argmax(1))
    proto = ca.protocol
    assert proto["test_accuracy"] == acc and proto["n_test"] == len(test) == 359
    assert proto["id"].startswith("classifier:digits/") and proto["dim"] == ca.dim == 128
    assert proto["data_variant"] == "sklearn-8x8" and proto["seed"] == 0


def test_classifier_features_batch_size_independent(clf_dirs, digits):
    _, ca, _ = clf_dirs
    x = digits[1].x
    a = ca.extract(x, batch_size=1000)
    for bs in (1, 7, 64):
        b = ca.extract(x, batch_size=bs)
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12), bs
    assert a.shape == (len(x), 128) and a.dtype == torch.float64
    # features are informative: class means are far apart compared with the spread inside a class
    y = digits[1].y
    means = torch.stack([a[y == c].mean(0) for c in range(10)])
    within = torch.stack([(a[y == c] - means[c]).norm(dim=1).mean() for c in range(10)]).mean()
    assert torch.cdist(means, means).sum() / 90 > 1.5 * within


def test_classifier_uint8_and_float_inputs_agree(clf_dirs, digits):
    _, ca, _ = clf_dirs
    x = digits[1].x[:20]
    u8 = torch.round(x * 255).to(torch.uint8)
    assert torch.equal(ca.extract(u8), ca.extract(x))


def test_classifier_refuses_wrong_shape_and_range(clf_dirs):
    _, ca, _ = clf_dirs
    with pytest.raises(InvalidInputError, match="8x8"):
        ca.extract(torch.rand(2, 1, 28, 28))
    with pytest.raises(InvalidInputError, match="channel"):
        ca.extract(torch.rand(2, 3, 8, 8))
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        ca.extract(torch.rand(2, 1, 8, 8) * 2 - 1)


def test_corrupt_cache_is_retrained(tmp_path, clf_dirs):
    a, ca, _ = clf_dirs
    d = tmp_path / "classifiers"
    d.mkdir()
    (d / ca.cache_path.name).write_bytes(b"not a torch file")
    with pytest.warns(RuntimeWarning, match="unusable"):
        c = get_extractor("classifier:digits", cache_dir=tmp_path, verbose=False, weights="build")
    assert not c.loaded_from_cache
    assert all(torch.equal(v, ca.model.state_dict()[k]) for k, v in c.model.state_dict().items())
    assert get_extractor("classifier:digits", cache_dir=tmp_path, verbose=False, weights="build").loaded_from_cache


def test_different_seed_different_network(clf_dirs, tmp_path, digits):
    _, ca, _ = clf_dirs
    c1 = get_extractor("classifier:digits", cache_dir=tmp_path, seed=1, verbose=False, weights="build")
    assert c1.cache_path != ca.cache_path and c1.protocol["id"] != ca.protocol["id"]
    assert not torch.allclose(c1.extract(digits[1].x[:5]), ca.extract(digits[1].x[:5]))


def test_stacked_classifier_labels_are_channel_triples(clf_dirs, digits):
    """The stacked wrapper (on the digits classifier here; MNIST in the slow test): mode label and the
    1000-way probabilities are the per-channel predictions combined."""
    a, ca, _ = clf_dirs
    st = StackedMNISTClassifier(base="digits", cache_dir=a, verbose=False, n_test=200, weights="build")
    assert st.digit.loaded_from_cache
    x1 = digits[1].x
    idx = torch.tensor([[0, 1, 2], [5, 9, 30], [100, 7, 7]])
    x = x1[idx].squeeze(2)  # (3, 3, 8, 8)
    d = ca.predict(x1)
    assert st.predict(x).tolist() == (100 * d[idx[:, 0]] + 10 * d[idx[:, 1]] + d[idx[:, 2]]).tolist()
    p = st.predict_proba(x)
    assert p.shape == (3, 1000) and torch.allclose(p.sum(1), torch.ones(3, dtype=torch.float64))
    pr = ca.predict_proba(x1)
    # row 1 stacks test images 5, 9, 30: P(mode 342) = P_5(3) P_9(4) P_30(2)
    assert torch.isclose(p[1, 342], pr[5, 3] * pr[9, 4] * pr[30, 2], rtol=1e-12, atol=0)
    assert torch.equal(p.argmax(1), st.predict(x))
    f = st.extract(x, batch_size=2)
    assert f.shape == (3, 384) and torch.allclose(f[:, 128:256], ca.extract(x1[idx[:, 1]]), rtol=1e-12, atol=1e-12)
    assert 0.9 <= st.accuracy <= 1.0 and st.protocol["per_channel"]["id"] == ca.protocol["id"]


# ---------------------------------------------------------------------------------------------- one pass


def test_feature_cache_extracts_once():
    fx = get_extractor("random-conv")
    calls = []
    real = fx.extract

    def counting(samples, **kw):
        calls.append(1)
        return real(samples, **kw)

    fx.extract = counting
    cache = FeatureCache()
    x = torch.rand(4, 1, 8, 8)
    f1 = cache.get(fx, x)
    f2 = cache.get(fx, x)  # every metric of the job asks again: no second pass
    assert f1 is f2 and len(calls) == 1 and cache.hits == 1 and cache.misses == 1
    y = x.clone()
    cache.get(fx, y)  # another sample set: its own pass
    assert len(calls) == 2
    x.mul_(0.5)  # changed in place: recomputed
    f3 = cache.get(fx, x)
    assert len(calls) == 3 and not torch.equal(f3, f1)
    ident = get_extractor("identity")
    cache.get(ident, x)  # same samples, other extractor: its own entry
    assert len(cache) == 3


# ---------------------------------------------------------------------------------------------- slow bars


@pytest.mark.slow
def test_fashion_mnist_classifier_bar():
    """Trains on first use (~1-2 min on 2 cores), cached in the genbench cache afterwards."""
    from genbench.data import get_dataset

    c = get_extractor("classifier:fashion-mnist")
    test = get_dataset("fashion-mnist").load("test")
    acc = float((c.predict(test.x) == test.y).double().mean())
    print(f"classifier:fashion-mnist held-out accuracy {acc:.4f} (trained in {c.train_seconds:.0f} s)")
    assert acc == c.accuracy and acc >= 0.90


@pytest.mark.slow
def test_mnist_classifier_bar_and_stacked():
    from genbench.data import get_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the 5k-subset warning, when offline
        c = get_extractor("classifier:mnist")
        test = get_dataset("mnist").load("test")
        st = get_extractor("classifier:stacked-mnist")
    acc = float((c.predict(test.x) == test.y).double().mean())
    variant = c.protocol["data_variant"]
    print(f"classifier:mnist ({variant}) held-out accuracy {acc:.4f}; stacked-mnist triples {st.accuracy:.4f}")
    assert acc == c.accuracy
    assert acc >= (0.98 if variant == "full" else 0.97)
    assert st.accuracy >= acc ** 3 - 0.03  # three independent digits
