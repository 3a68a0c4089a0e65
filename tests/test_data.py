"""Datasets: every built-in of the default suite loads offline with the declared shapes, balance, hashes,
disjoint deterministic splits; the Debian and torchvision layouts of Fashion-MNIST agree; user data is
validated with clear errors."""

from __future__ import annotations

import gzip
import hashlib
import math
import warnings

import numpy as np
import pytest
import torch

import genbench.assets as assets
from genbench.assets import catalog, core, sources
from genbench.data import DATASETS, get_dataset, list_datasets, load_user_data
from genbench.data import images as images_mod
from genbench.data.base import DataSplit, TextSplit
from genbench.errors import AssetNotFoundError, InvalidInputError, UnknownNameError

DEFAULT_SUITE = ["ring8", "grid25", "digits", "fashion-mnist", "shakespeare-char", "names"]


def test_registry_names_and_errors():
    assert set(list_datasets()) >= {"ring8", "grid25", "digits", "mnist", "fashion-mnist", "stacked-mnist", "cifar10",
                                    "shakespeare-char", "names"}
    with pytest.raises(UnknownNameError, match="fashion-mnist"):
        get_dataset("fashion_mnist")
    with pytest.raises(InvalidInputError, match="'train' or 'test'"):
        get_dataset("ring8").load("val")


@pytest.mark.parametrize("name", DEFAULT_SUITE)
def test_default_suite_dataset_is_available_offline(name):
    ds = get_dataset(name)
    ok, why = ds.available()
    assert ok, why
    for split in ("train", "test"):
        sp = ds.load(split)
        assert sp.info == ds.info and sp.split == split and sp.source
        if ds.info.modality == "text":
            assert isinstance(sp, TextSplit) and len(sp) > 0
        else:
            assert isinstance(sp, DataSplit) and sp.x.dtype == torch.float32
            assert tuple(sp.x.shape[1:]) == tuple(ds.info.shape)
            assert len(sp) == ds.sizes[split]


# ----------------------------------------------------------------------------- points


@pytest.mark.parametrize("name,k,std", [("ring8", 8, 0.01), ("grid25", 25, 0.05)])
def test_mixture_datasets(name, k, std):
    ds = get_dataset(name)
    tr, te = ds.load("train"), ds.load("test")
    assert tr.x.shape == (10000, 2) and te.x.shape == (2500, 2)
    assert ds.info.num_modes == k == ds.mixture.num_modes
    assert torch.equal(tr.x, get_dataset(name).load("train").x)  # deterministic
    assert tr.meta["seed"] != te.meta["seed"]
    assert not set(map(tuple, te.x.tolist())) & set(map(tuple, tr.x.tolist()))  # different draws
    # y is the generating mode: every point lies within 5 std of its mode's mean
    d = (tr.x.double() - ds.mixture.means[tr.y]).norm(dim=1)
    assert float(d.max()) < 5 * std * math.sqrt(2)
    counts = torch.bincount(tr.y, minlength=k).double()
    assert counts.min() > 0.8 * 10000 / k and counts.max() < 1.2 * 10000 / k  # balanced
    lo, hi = ds.info.value_range
    assert float(tr.x.min()) > lo and float(tr.x.max()) < hi
    # exact log-likelihood vs scipy's independent Gaussian density
    from scipy.stats import multivariate_normal

    x = te.x[:5].double()
    ref = np.log(np.mean([multivariate_normal(mean=m.numpy(), cov=std**2).pdf(x.numpy()) for m in ds.mixture.means], 0))
    np.testing.assert_allclose(ds.mixture.log_prob(x).numpy(), ref, rtol=1e-6)


# ----------------------------------------------------------------------------- images


def test_digits_values_split_and_balance():
    from sklearn.datasets import load_digits

    ds = get_dataset("digits")
    tr, te = ds.load("train"), ds.load("test")
    assert tr.x.shape == (1438, 1, 8, 8) and te.x.shape == (359, 1, 8, 8)
    k = tr.x * 255
    assert torch.equal(k, k.round()) and float(tr.x.max()) == 1.0 and float(tr.x.min()) == 0.0
    # the images are sklearn's, 0..16 mapped to round(v*255/16)/255, and train+test is all of them exactly once
    sk = load_digits()
    ref = {hashlib.sha256((np.round(im * 255 / 16).astype(np.uint8)).tobytes()).hexdigest() for im in sk.images}
    got = [hashlib.sha256((s.x[i, 0] * 255).round().to(torch.uint8).numpy().tobytes()).hexdigest()
           for s in (tr, te) for i in range(len(s))]
    assert len(got) == 1797 and set(got) <= ref
    assert torch.equal(tr.x, get_dataset("digits").load("train").x)
    counts = torch.bincount(te.y, minlength=10)
    full = torch.bincount(torch.from_numpy(sk.target), minlength=10)
    assert torch.all((counts - 0.2 * full).abs() <= 0.5)  # stratified 20%


def test_fashion_mnist_full_official_split_and_hashes():
    ds = get_dataset("fashion-mnist")
    tr, te = ds.load("train"), ds.load("test")
    assert tr.x.shape == (60000, 1, 28, 28) and te.x.shape == (10000, 1, 28, 28)
    assert torch.equal(torch.bincount(tr.y), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(te.y), torch.full((10,), 1000))
    assert abs(float(tr.x.double().mean()) - 0.28604) < 5e-5 and abs(float(tr.x.double().std()) - 0.35302) < 5e-5
    # the tensors are exactly the pinned IDX bytes: header + pixels hashes to ASSETS.md's sha256
    u8 = (tr.x * 255).round().to(torch.uint8)
    header = bytes([0, 0, 8, 3]) + (60000).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    assert hashlib.sha256(header + u8.numpy().tobytes()).hexdigest() == \
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
    lab = bytes([0, 0, 8, 1]) + (10000).to_bytes(4, "big") + te.y.to(torch.uint8).numpy().tobytes()
    assert hashlib.sha256(lab).hexdigest() == "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
    assert tr.meta["variant"] == "full" and tr.meta["asset_sha256"] == catalog.ASSETS.get("fashion-mnist").sha256


def test_fashion_mnist_debian_and_torchvision_layouts_are_identical(tmp_path, monkeypatch):
    """Write torchvision's raw layout from the same bytes, load it with torchvision itself and with our
    loader (pointed at it through GENBENCH_FASHION_MNIST, empty cache): identical tensors."""
    import torchvision

    src = assets.fetch("fashion-mnist")  # whatever this machine has (the Debian copy here)
    raw = tmp_path / "tv" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for m in catalog.ASSETS.get("fashion-mnist").members:
        f = src / m.name if (src / m.name).exists() else src / (m.name + ".gz")
        data = gzip.decompress(f.read_bytes()) if f.suffix == ".gz" else f.read_bytes()
        (raw / m.name).write_bytes(data)
    tv_train = torchvision.datasets.FashionMNIST(str(tmp_path / "tv"), train=True, download=False)
    tv_test = torchvision.datasets.FashionMNIST(str(tmp_path / "tv"), train=False, download=False)

    ours_default = get_dataset("fashion-mnist")
    d_tr, d_te = ours_default.load("train"), ours_default.load("test")

    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path / "emptycache"))
    monkeypatch.setenv("GENBENCH_FASHION_MNIST", str(tmp_path / "tv"))
    monkeypatch.setattr(catalog, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "nowhere")
    t_tr = get_dataset("fashion-mnist").load("train")
    assert "GENBENCH_FASHION_MNIST" in t_tr.source
    for ours, tv in ((d_tr, tv_train), (d_te, tv_test)):
        assert torch.equal((ours.x * 255).round().to(torch.uint8)[:, 0], tv.data)
        assert torch.equal(ours.y, tv.targets)
    assert torch.equal(t_tr.x, d_tr.x) and torch.equal(t_tr.y, d_tr.y)
    assert images_mod.tensor_sha256(t_tr.x) == images_mod.tensor_sha256(d_tr.x)
    # the same through root= (no env var), into another empty cache
    monkeypatch.delenv("GENBENCH_FASHION_MNIST")
    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path / "emptycache2"))
    r_te = get_dataset("fashion-mnist", root=tmp_path / "tv").load("test")
    assert torch.equal(r_te.x, d_te.x) and "explicit path" in r_te.source


def test_stratified_split_is_disjoint_complete_and_seeded():
    y = torch.arange(103) % 7
    tr, te = images_mod.stratified_split(y, 0.2, 0)
    assert not set(tr.tolist()) & set(te.tolist()) and sorted(tr.tolist() + te.tolist()) == list(range(103))
    for c in range(7):
        n = int((y == c).sum())
        assert int((y[te] == c).sum()) == round(0.2 * n)
    assert torch.equal(te, images_mod.stratified_split(y, 0.2, 0)[1])
    assert not torch.equal(te, images_mod.stratified_split(y, 0.2, 1)[1])


def test_decoded_tensor_cache_is_reused_and_rebuilt_when_corrupt(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path / "c"))
    a = get_dataset("fashion-mnist").load("test")
    pts = list((tmp_path / "c" / "tensors").glob("fashion-mnist-*.pt"))
    assert len(pts) == 1 and not list((tmp_path / "c" / "tensors").glob(".*tmp"))
    clean = pts[0].read_bytes()
    data = bytearray(clean)
    data[-len(data) // 3] ^= 0x01  # a same-size flip inside the tensor bytes: torch alone would load it
    pts[0].write_bytes(bytes(data))
    capsys.readouterr()
    b = get_dataset("fashion-mnist").load("test")
    err = capsys.readouterr().err
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert err.count("\n") == 1 and "warning" in err and str(pts[0]) in err and "corrupt" in err
    assert pts[0].read_bytes() == clean  # rebuilt bit-identically
    pts[0].write_bytes(b"truncated")
    c = get_dataset("fashion-mnist").load("test")
    assert torch.equal(a.x, c.x) and pts[0].read_bytes() == clean and "not a sealed" in capsys.readouterr().err
    assert get_dataset("fashion-mnist").load("test") is not None and "warning" not in capsys.readouterr().err


@pytest.fixture
def no_full_mnist(monkeypatch):
    monkeypatch.setattr(images_mod, "_MNIST_FULL_ERROR", None)
    real = images_mod.load_idx_asset

    def fake(name, root=None):
        if name == "mnist":
            raise AssetNotFoundError("asset 'mnist' is not available (test)")
        return real(name, root)

    monkeypatch.setattr(images_mod, "load_idx_asset", fake)


def test_mnist_falls_back_to_5k_subset_loudly(no_full_mnist):
    with pytest.warns(UserWarning, match="NOT comparable"):
        tr = get_dataset("mnist").load("train")
    te = get_dataset("mnist").load("test")
    assert tr.meta["variant"] == te.meta["variant"] == "mnist-5k-subset"
    assert tr.x.shape == (4000, 1, 28, 28) and te.x.shape == (1000, 1, 28, 28)
    assert torch.equal(torch.bincount(tr.y), torch.full((10,), 400))
    assert torch.equal(torch.bincount(te.y), torch.full((10,), 100))
    trh = {hashlib.sha256(r.numpy().tobytes()).hexdigest() for r in tr.x}
    teh = {hashlib.sha256(r.numpy().tobytes()).hexdigest() for r in te.x}
    assert not trh & teh  # disjoint
    assert torch.equal(tr.x, get_dataset("mnist", variant="5k").load("train").x)  # deterministic
    with pytest.raises(AssetNotFoundError):
        get_dataset("mnist", variant="full").load("train")


def test_stacked_mnist_is_three_mnist_digits(no_full_mnist):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = get_dataset("stacked-mnist", n_train=3000, n_test=500)
        tr = ds.load("train")
        mn = get_dataset("mnist").load("train")
    assert tr.x.shape == (3000, 3, 28, 28) and ds.info.num_modes == 1000
    assert tr.meta["mnist_variant"] == "mnist-5k-subset"
    index = {hashlib.sha256(r.numpy().tobytes()).hexdigest(): int(c) for r, c in zip(mn.x[:, 0], mn.y)}
    for i in range(0, 3000, 97):  # each channel is an MNIST training image; label = its 3 digits
        digits = [index[hashlib.sha256(tr.x[i, c].numpy().tobytes()).hexdigest()] for c in range(3)]
        assert int(tr.y[i]) == 100 * digits[0] + 10 * digits[1] + digits[2]
    assert len(torch.unique(tr.y)) > 900  # 3000 draws over 1000 equally likely modes cover ~95%
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert torch.equal(tr.x, get_dataset("stacked-mnist", n_train=3000).load("train").x)


def test_cifar10_offline_without_user_copy_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("GENBENCH_CIFAR10", raising=False)
    monkeypatch.setattr(sources, "download", lambda *a, **k: (_ for _ in ()).throw(OSError("network disabled in tests")))
    ds = get_dataset("cifar10")
    with pytest.raises(AssetNotFoundError) as ei:
        ds.load("train")
    assert "GENBENCH_CIFAR10" in str(ei.value) and "CIFAR10('DIR', download=True)" in str(ei.value)


# ----------------------------------------------------------------------------- text


def test_shakespeare_char_split_by_contiguous_blocks_of_every_work():
    ds = get_dataset("shakespeare-char")
    tr, te = ds.load("train"), ds.load("test")
    assert tr.vocab == te.vocab and len(tr.vocab) == 84 and "\n" in tr.vocab
    assert (len(tr), len(te)) == (4554055, 503184)
    d = assets.fetch("shakespeare")
    works = sorted(m.name for m in catalog.ASSETS.get("shakespeare").members)
    assert len(works) == 42 and tr.meta["works"] == 42
    pos_tr = pos_te = 0
    total = 0
    for w in works:  # train = head of each work, test = its tail, in order: rebuilds every work exactly
        text = (d / w).read_text()
        total += len(text)
        lines = text.splitlines(keepends=True)
        k = round(0.9 * len(lines))
        head, tail = "".join(lines[:k]), "".join(lines[k:])
        assert tr.text[pos_tr:pos_tr + len(head)] == head and te.text[pos_te:pos_te + len(tail)] == tail
        pos_tr += len(head) + (0 if head.endswith("\n") else 1)
        pos_te += len(tail) + (0 if tail.endswith("\n") else 1)
    assert (pos_tr, pos_te) == (len(tr), len(te)) and total == 5057198
    s = te.text[:200]
    assert tr.decode(tr.encode(s)) == s


def test_names_split_by_line():
    ds = get_dataset("names")
    tr, te = ds.load("train"), ds.load("test")
    a, b = tr.lines, te.lines
    assert (len(a), len(b)) == (79919, 8880)
    assert len(set(a) | set(b)) == 88799 and not set(a) & set(b)
    assert tr.vocab == te.vocab == ["\n"] + [chr(c) for c in range(ord("a"), ord("z") + 1)]
    assert a[:3] == ["smith", "johnson", "williams"]
    assert get_dataset("names").load("test").text == te.text


# ----------------------------------------------------------------------------- user data


def test_user_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    arrs = [rng.integers(0, 256, (6, 5, 3), dtype=np.uint8) for _ in range(3)]
    (tmp_path / "sub").mkdir()
    Image.fromarray(arrs[0]).save(tmp_path / "a.png")
    Image.fromarray(arrs[1]).save(tmp_path / "sub" / "b.png")
    Image.fromarray(arrs[2]).save(tmp_path / "sub" / "c.PNG")
    (tmp_path / "notes.txt").write_text("ignored")
    sp = load_user_data(tmp_path)
    assert sp.x.shape == (3, 3, 6, 5) and sp.info.modality == "image"
    for i, a in enumerate(arrs):  # sorted by relative path: a.png, sub/b.png, sub/c.PNG
        assert torch.equal((sp.x[i] * 255).round().to(torch.uint8), torch.from_numpy(a).permute(2, 0, 1))
    Image.fromarray(arrs[0][:, :, 0]).save(tmp_path / "gray.png")
    sp = load_user_data(tmp_path)  # a grayscale one among RGB: all become RGB
    assert sp.x.shape[1] == 3
    Image.fromarray(arrs[0][:4]).save(tmp_path / "small.png")
    with pytest.raises(InvalidInputError, match="differs"):
        load_user_data(tmp_path)
    with pytest.raises(InvalidInputError, match="at least 50"):
        load_user_data(tmp_path / "sub", min_items=50)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="no .png"):
        load_user_data(tmp_path / "empty")


def test_user_arrays(tmp_path):
    u8 = np.random.default_rng(1).integers(0, 256, (4, 8, 8, 1), dtype=np.uint8)
    np.save(tmp_path / "nhwc.npy", u8)
    sp = load_user_data(tmp_path / "nhwc.npy", expect_shape=(1, 8, 8), modality="image")
    assert sp.x.shape == (4, 1, 8, 8) and torch.equal(sp.x * 255, torch.from_numpy(u8).permute(0, 3, 1, 2).float())
    np.savez(tmp_path / "xy.npz", x=np.random.rand(10, 2), y=np.arange(10))
    sp = load_user_data(tmp_path / "xy.npz")
    assert sp.info.modality == "points" and sp.x.dtype == torch.float32 and sp.y.tolist() == list(range(10))
    bad = {
        "pm1.npy": (np.random.rand(3, 1, 4, 4) * 2 - 1, r"\(x \+ 1\) / 2"),
        "x255.npy": (np.random.rand(3, 1, 4, 4) * 255, "divide by 255"),
        "nan.npy": (np.full((3, 2), np.nan), "NaN"),
        "chan.npy": (np.random.rand(3, 5, 4, 4), "1 or 3 channels"),
        "strs.npy": (np.array(["a", "b"]), "not numeric"),
        "flat.npy": (np.zeros((3, 784), np.uint8), "reshape"),
    }
    for fn, (arr, msg) in bad.items():
        np.save(tmp_path / fn, arr)
        with pytest.raises(InvalidInputError, match=msg):
            load_user_data(tmp_path / fn)
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 2)), b=np.zeros((2, 2)))
    with pytest.raises(InvalidInputError, match="name the samples 'x'"):
        load_user_data(tmp_path / "two.npz")
    with pytest.raises(InvalidInputError, match="expected \\(3, 8, 8\\)"):
        load_user_data(tmp_path / "nhwc.npy", expect_shape=(3, 8, 8))
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_user_data(tmp_path / "missing.npy")


def test_user_text(tmp_path):
    (tmp_path / "t.txt").write_text("hello\nworld\n")
    sp = load_user_data(tmp_path / "t.txt")
    assert isinstance(sp, TextSplit) and sp.lines == ["hello", "world"] and sp.vocab == sorted(set("hello\nworld\n"))
    (tmp_path / "b.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(InvalidInputError, match="not UTF-8"):
        load_user_data(tmp_path / "b.txt")
    with pytest.raises(InvalidInputError, match="holds text data, but image"):
        load_user_data(tmp_path / "t.txt", modality="image")


def test_cli_data_list(capsys):
    from genbench.cli import main

    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in DATASETS.names():
        assert name in out


def test_cli_data_show_gives_the_recipe_and_the_content_hashes(capsys):
    """`genbench data show NAME`: the info, the translation pair's domains, and per split the meta (recipe, its
    sha256) and the sha256 of the bytes genbench reads, which is the split digest of the reference-statistics key;
    an unavailable dataset says why and exits 1, an unknown name is refused with suggestions."""
    import hashlib

    from genbench.cli import main
    from genbench.data import get_dataset
    from genbench.pipeline.scorers import scorer_for

    assert main(["data", "show", "mnist-grey-edges", "--split", "test"]) == 0
    out = capsys.readouterr().out
    test = get_dataset("mnist-grey-edges").load("test")
    digest = hashlib.sha256(scorer_for("translation").data_bytes(test)).hexdigest()
    assert "domains: a = mnist-grey, b = mnist-edges" in out and "test: 2000 images (both domains), paired" in out
    assert f"recipe_sha256: {test.meta['recipe_sha256']}" in out and f"content sha256 (the bytes genbench reads): " \
        f"{digest}" in out and "train:" not in out
    assert main(["data", "show", "ring8"]) == 0
    out = capsys.readouterr().out
    assert "train: 10000 items" in out and "test: 2500 items" in out and out.count("content sha256") == 2
    ok, _ = get_dataset("cifar10").available()
    if not ok:
        assert main(["data", "show", "cifar10"]) == 1
        assert "available here: no" in capsys.readouterr().out
    assert main(["data", "show", "mnist-gray"]) == 2
    assert "unknown dataset 'mnist-gray'. Did you mean 'mnist-grey'" in capsys.readouterr().err
