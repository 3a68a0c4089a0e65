"""`inception` against clean-fid's own "clean" pipeline, same weights, same images.

clean-fid reads the images back from PNG files, converts them to RGB, resizes with its own
make_resizer("PIL", False, "bicubic", (299, 299)) and calls the custom extractor; genbench gets the same
images as [0, 1] tensors. CPU Inception is slow (a few images/s on 2 cores), so the sets are tiny: FD with
N < 2048 has singular covariances, but both sides compute the same formula on the same features.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from cleanfid import fid as cfid
from cleanfid.resize import make_resizer

from genbench.errors import InvalidInputError
from genbench.features import get_extractor
from genbench.features.inception import PROTOCOL_ID, clean_resize

N = 6  # images per set: CPU Inception is slow, and the comparison is exact anyway


def _digits_u8(n):
    from sklearn.datasets import load_digits

    d = load_digits()
    return np.round(d.images[:n] * 255.0 / 16.0).astype(np.uint8)  # (n, 8, 8)


def _rgb_u8(n, h=12, w=16, seed=0):
    """Smooth colour blobs plus noise, non-square (H != W) to pin the resize's axis order."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        base = np.stack([np.sin(xx / (1 + i) + c) * np.cos(yy / (2 + c)) for c in range(3)], -1)
        out[i] = np.clip(127.5 + 100 * base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    return out


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    gray, rgb = _digits_u8(N), _rgb_u8(N)
    da, db = tmp_path_factory.mktemp("gray"), tmp_path_factory.mktemp("rgb")
    for i in range(N):
        Image.fromarray(gray[i], mode="L").save(da / f"{i:03d}.png")
        Image.fromarray(rgb[i], mode="RGB").save(db / f"{i:03d}.png")
    xa = torch.from_numpy(gray).unsqueeze(1).float() / 255  # (N, 1, 8, 8) in [0, 1]
    xb = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255  # (N, 3, 12, 16)
    return {"dirs": (str(da), str(db)), "x": (xa, xb)}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def fx():
    return get_extractor("inception", device="cpu")


@pytest.fixture(scope="module")
def ours(fx, sets):
    """Our features of both sets (one pass each), at different batch sizes."""
    return fx.extract(sets["x"][0], batch_size=N), fx.extract(sets["x"][1], batch_size=4)


def test_resize_is_clean_fids_bit_for_bit():
    ref = make_resizer("PIL", False, "bicubic", (299, 299))
    rng = np.random.default_rng(1)
    for h, w in [(8, 8), (28, 28), (12, 16), (40, 31)]:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        ours = clean_resize(img.transpose(2, 0, 1))  # (3, 299, 299)
        theirs = ref(img).transpose(2, 0, 1)  # (3, 299, 299)
        assert ours.dtype == theirs.dtype == np.float32
        np.testing.assert_array_equal(ours, theirs)
    gray = rng.integers(0, 256, (9, 7), dtype=np.uint8)  # grayscale = RGB with three equal channels
    np.testing.assert_array_equal(clean_resize(gray[None]), ref(np.stack([gray] * 3, -1)).transpose(2, 0, 1))


def test_quantisation_rounds_and_accepts_uint8(fx):
    k = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    as_float = fx._prepare(k.float() / 255)
    assert torch.equal(as_float, k)  # k/255 -> k exactly
    assert torch.equal(fx._prepare(k), k)
    x = torch.tensor([0.0, 0.4 / 255, 0.6 / 255, 1.0]).reshape(1, 1, 2, 2)
    assert fx._prepare(x).flatten().tolist() == [0, 0, 1, 255]


def test_features_and_fd_equal_clean_fid(ours, sets):
    """Our features vs clean-fid's get_folder_features (inside compute_fid) with the same TorchScript weights,
    and our FD (genbench.metrics.frechet_distance) vs clean-fid's compute_fid(mode="clean")."""
    from genbench.assets import fetch

    net = torch.jit.load(str(fetch("fid-inception")), map_location="cpu").eval()
    seen = []

    def custom(batch):  # clean-fid hands float (B, 3, 299, 299) in [0, 255] after its own resize
        with torch.no_grad():
            f = net((batch - 128) / 128)  # the file's own forward: trunk + reshape to (B, 2048)
        seen.append(f.clone())
        return f

    fd_clean = cfid.compute_fid(*sets["dirs"], mode="clean", custom_feat_extractor=custom, num_workers=0,
                                batch_size=4, device=torch.device("cpu"), verbose=False)
    theirs = torch.cat(seen).double()  # compute_fid -> compare_folders -> get_folder_features(dir1), then dir2
    assert theirs.shape == (2 * N, 2048)

    fa, fb = ours
    assert fa.dtype == torch.float64 and fa.shape == (N, 2048)
    ours = torch.cat([fa, fb])
    both = torch.cat([fa, fb])
    rel = float((both - theirs).abs().max() / theirs.abs().max())
    print(f"features: max |ours - clean-fid| / max |clean-fid| = {rel:.3g}")
    assert rel <= 1e-4, rel
    assert float(both.std(0).mean()) > 1e-3  # the images give distinct features (not a degenerate comparison)

    from genbench.metrics import frechet_distance  # the metrics engineer's FD, on our features

    def stats(f):
        return f.mean(0), torch.cov(f.T)

    fd_ours = float(frechet_distance(*stats(fa), *stats(fb)))
    print(f"FD genbench {fd_ours!r} vs clean-fid compute_fid {fd_clean!r}")
    assert fd_clean > 1.0
    assert abs(fd_ours - fd_clean) <= 1e-4 * abs(fd_clean), (fd_ours, fd_clean)


def test_batch_size_independent(fx, sets, ours):
    a = ours[0][:2]  # extracted with batch_size=N
    b = fx.extract(sets["x"][0][:2], batch_size=1)
    print(f"batch size {N} vs 1: max abs difference {float((a - b).abs().max()):.3g}")
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-6 * float(a.abs().max()))


def test_protocol_names_the_pipeline(fx):
    p = fx.protocol
    assert p["id"] == PROTOCOL_ID
    assert p["dim"] == fx.dim == 2048
    assert "bicubic" in p["resize"] and "299" in p["resize"] and p["layer"] == "pool3"
    from genbench.assets import ASSETS

    assert p["weights_sha256"] == ASSETS.get("fid-inception").sha256


@pytest.mark.parametrize("bad, msg", [
    (torch.rand(2, 8, 8), "unsqueeze"),
    (torch.rand(2, 2, 8, 8), "channel"),
    (torch.rand(2, 8, 8, 3), "permute"),
    (torch.rand(2, 3, 8, 8) * 2 - 1, "(x + 1) / 2"),
    (torch.rand(2, 3, 8, 8) * 255, "x / 255"),
    (torch.full((1, 3, 4, 4), float("nan")), "NaN"),
    (torch.zeros(1, 3, 4, 4, dtype=torch.int32), "uint8"),
    ("not images", "torch.Tensor or numpy"),
])
def test_bad_input_is_refused_clearly(fx, bad, msg):
    with pytest.raises(InvalidInputError, match=None) as e:
        fx.extract(bad)
    assert msg in str(e.value)


def test_bad_batch_size(fx):
    with pytest.raises(InvalidInputError, match="batch_size"):
        fx.extract(torch.rand(1, 1, 4, 4), batch_size=0)
