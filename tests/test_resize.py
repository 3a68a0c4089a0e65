"""The matrix form of clean-fid's PIL-bicubic resize (genbench.features.resize) against clean-fid's own resizer,
and the Inception features it gives against the PIL path (issue 20, item 1)."""

import numpy as np
import pytest
import torch

from cleanfid.resize import make_resizer

from genbench.features.resize import CleanResizer, pil_bicubic_weights

TOL = 1e-4  # on the 0..255 scale


def _clean_fid(img_hwc: np.ndarray, size: int = 299) -> np.ndarray:
    return make_resizer("PIL", False, "bicubic", (size, size))(img_hwc).transpose(2, 0, 1)


@pytest.mark.parametrize("h,w", [(28, 28), (32, 32), (64, 64), (8, 8), (12, 16), (40, 31), (299, 299), (400, 350)])
def test_matrix_resize_equals_clean_fid(h, w):
    rng = np.random.default_rng(h * 1000 + w)
    imgs = rng.integers(0, 256, (3, 3, h, w), dtype=np.uint8)
    imgs[0] = 0
    imgs[1, :, :, : w // 2] = 255  # a hard edge: the kernel's negative lobes overshoot and the clip matters
    imgs[1, :, :, w // 2 :] = 0
    ours = CleanResizer(299)(torch.from_numpy(imgs)).numpy()
    assert ours.dtype == np.float32 and ours.shape == (3, 3, 299, 299)
    for i in range(3):
        theirs = _clean_fid(imgs[i].transpose(1, 2, 0))
        err = float(np.abs(ours[i] - theirs).max())
        assert err <= TOL, (h, w, i, err)
    assert ours.min() >= 0.0 and ours.max() <= 255.0
    assert float(ours[1].max()) == 255.0  # clipped, not overshooting


def test_smaller_output_sizes_use_the_widened_kernel():
    """Shrinking widens PIL's support by the scale: the weights must follow (64 -> 20 and 299 -> 64)."""
    rng = np.random.default_rng(3)
    for h, size in [(64, 20), (299, 64)]:
        img = rng.integers(0, 256, (1, 1, h, h), dtype=np.uint8)
        ours = CleanResizer(size)(torch.from_numpy(img)).numpy()[0, 0]
        theirs = _clean_fid(np.repeat(img[0].transpose(1, 2, 0), 3, -1), size)[0]
        assert float(np.abs(ours - theirs).max()) <= TOL


def test_weights_known_answers():
    w = pil_bicubic_weights(28, 299)
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=0, atol=1e-12)  # normalised rows
    assert (np.count_nonzero(w, axis=1) <= 4).all()  # upsampling: support 2 on each side
    assert w.min() < 0  # bicubic's negative lobes
    ident = pil_bicubic_weights(10, 10)  # same size: PIL's kernel at integer offsets is the identity
    np.testing.assert_allclose(ident, np.eye(10), atol=1e-15)
    with pytest.raises(ValueError):
        pil_bicubic_weights(0, 5)


def test_inception_features_equal_the_pil_path():
    from genbench.features import get_extractor

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        mat = get_extractor("inception", device="cpu", resize="matrix")
        assert "matrix" in mat.protocol["resize_impl"]
        pil = get_extractor("inception", device="cpu")
        assert pil.resize_impl == "pil"  # the CPU default: bit-identical to clean-fid
        rng = np.random.default_rng(5)
        x = torch.from_numpy(rng.integers(0, 256, (2, 1, 28, 28), dtype=np.uint8))
        x[1, :, 8:20, 8:20] = 255
        a, b = mat.extract(x), pil.extract(x)
    finally:
        torch.set_num_threads(old)
    rel = float((a - b).abs().max() / b.abs().max())
    print(f"inception features, matrix vs PIL resize: max rel diff {rel:.3g}")
    assert rel <= 1e-5, rel
    assert mat.protocol["id"] == pil.protocol["id"]  # the same instrument
