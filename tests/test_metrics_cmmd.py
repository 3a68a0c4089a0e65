"""CMMD's RBF MMD^2 (genbench/metrics/cmmd.py) against a brute-force double sum and the full-matrix formula."""

import math

import numpy as np
import pytest
import torch

from genbench.errors import InvalidInputError
from genbench.metrics import cmmd
from genbench.metrics.cmmd import rbf_mmd2


def _brute(x, y, sigma, scale):
    def k(a, b):
        return math.exp(-sum((ai - bi) ** 2 for ai, bi in zip(a, b)) / (2 * sigma ** 2))

    kxx = sum(k(a, b) for a in x for b in x) / len(x) ** 2
    kyy = sum(k(a, b) for a in y for b in y) / len(y) ** 2
    kxy = sum(k(a, b) for a in x for b in y) / (len(x) * len(y))
    return scale * (kxx + kyy - 2 * kxy)


@pytest.mark.parametrize("sigma,scale", [(10.0, 1000.0), (1.0, 1.0), (0.5, 1000.0)])
def test_equals_the_brute_force_double_sum(sigma, scale):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 5)), rng.normal(size=(25, 5)) * 1.3 + 0.2
    assert rbf_mmd2(x, y, sigma, scale) == pytest.approx(_brute(x.tolist(), y.tolist(), sigma, scale), rel=1e-10)


def test_unit_norm_embeddings_blocked_as_the_full_matrices(monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 64)); x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = rng.normal(size=(200, 64)) + 0.3; y /= np.linalg.norm(y, axis=1, keepdims=True)
    g = 1 / (2 * 10.0 ** 2)

    def km(a, b):
        return np.exp(-g * ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)).mean()

    want = 1000 * (km(x, x) + km(y, y) - 2 * km(x, y))
    assert rbf_mmd2(x, y) == pytest.approx(want, rel=1e-9)
    monkeypatch.setattr(cmmd, "_BLOCK", 7)  # row blocks that do not divide N
    assert rbf_mmd2(x, y) == pytest.approx(want, rel=1e-9)
    assert rbf_mmd2(x, x) == pytest.approx(0.0, abs=1e-9)  # V-statistic: exactly 0 for one set


def test_bad_input():
    with pytest.raises(InvalidInputError, match="sigma"):
        rbf_mmd2(torch.zeros(3, 2), torch.zeros(3, 2), sigma=0)
    with pytest.raises(InvalidInputError, match="dimension"):
        rbf_mmd2(torch.zeros(3, 2), torch.zeros(3, 4))


# ------------------------------------------------------------------ the clip extractor, on random weights
transformers = pytest.importorskip("transformers")


def _tiny_clip(seed=0):
    torch.manual_seed(seed)
    cfg = transformers.CLIPVisionConfig(image_size=56, patch_size=14, hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=2, num_attention_heads=4, projection_dim=16,
                                        hidden_act="quick_gelu")
    return transformers.CLIPVisionModelWithProjection(cfg).eval()


def _reference_embed(model, images_nhwc):
    """The CMMD PyTorch reference's embed(): torch bicubic resize, CLIPImageProcessor normalisation only,
    image_embeds, L2 norm."""
    x = torch.from_numpy(images_nhwc.transpose(0, 3, 1, 2))
    x = torch.nn.functional.interpolate(x, size=(56, 56), mode="bicubic").permute(0, 2, 3, 1).numpy()
    proc = transformers.CLIPImageProcessor()
    inputs = proc(images=list(x), do_normalize=True, do_center_crop=False, do_resize=False, do_rescale=False,
                  return_tensors="pt")
    with torch.no_grad():
        e = model(**inputs).image_embeds
    return (e / torch.linalg.norm(e, dim=-1, keepdim=True)).double()


def test_clip_features_equal_the_reference_pipeline_on_random_weights(tmp_path, monkeypatch):
    from genbench.features import get_extractor
    from genbench.features.clip import ClipExtractor

    model = _tiny_clip()
    imgs = torch.rand(6, 3, 40, 40, generator=torch.Generator().manual_seed(1))
    u8 = torch.round(imgs * 255) / 255  # genbench quantises first, as image files are
    want = _reference_embed(model, u8.permute(0, 2, 3, 1).numpy().astype(np.float32))
    got = ClipExtractor(model=model).extract(imgs)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    model.save_pretrained(str(tmp_path))  # the checkpoint layout: config.json + model.safetensors
    monkeypatch.setenv("GENBENCH_CLIP_VIT_L14_336", str(tmp_path))
    ext = get_extractor("clip")
    torch.testing.assert_close(ext.extract(imgs), got, rtol=1e-6, atol=1e-7)
    assert len(ext.protocol["weights_sha256"]) == 64 and ext.protocol["pinned"] is False and ext.dim == 16


def test_clip_absent_says_which_files_and_where(monkeypatch, tmp_path):
    from genbench.features.clip import ClipUnavailable, find_clip

    monkeypatch.delenv("GENBENCH_CLIP_VIT_L14_336", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ClipUnavailable, match=r"config\.json and model\.safetensors of https://huggingface\.co/openai/"
                                              r"clip-vit-large-patch14-336.*export GENBENCH_CLIP_VIT_L14_336=DIR"):
        find_clip()
    monkeypatch.setenv("GENBENCH_CLIP_VIT_L14_336", str(tmp_path))
    with pytest.raises(ClipUnavailable, match="not a directory holding config.json"):
        find_clip()


def test_cmmd_metric_only_on_clip_features():
    from genbench.metrics import EvalContext, compute_metrics

    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.normal(size=(50, 16)))
    y = torch.from_numpy(rng.normal(size=(40, 16)) + 0.5)
    ctx = EvalContext(real_features=x, fake_features=y, feature_protocol={"id": "c", "extractor": "clip"})
    (res,) = compute_metrics(["cmmd"], ctx)
    assert res.value == rbf_mmd2(x, y) and not res.higher_is_better
    other = EvalContext(real_features=x, fake_features=y, feature_protocol={"id": "inception", "extractor": "inception"})
    assert compute_metrics(["cmmd"], other) == [] and 'features = "clip"' in other.skipped["cmmd"]


def test_one_row_per_side_is_the_closed_form():
    # one point each: k(x, x) = k(y, y) = 1, so MMD^2 = 2 - 2 exp(-|x - y|^2 / (2 sigma^2))
    x, y = np.array([[0.0, 3.0]]), np.array([[4.0, 0.0]])
    assert rbf_mmd2(x, y) == pytest.approx(1000 * (2 - 2 * math.exp(-25 / 200)), rel=1e-12)
    assert rbf_mmd2(x, np.array([[0.0, 3.0], [4.0, 0.0]]), sigma=5.0, scale=1.0) == pytest.approx(
        1 + (2 + 2 * math.exp(-0.5)) / 4 - 2 * (1 + math.exp(-0.5)) / 2, rel=1e-12)


def test_declaration_lower_is_better_quality_on_images():
    from genbench.metrics import registry as reg

    spec, out = reg.get_metric("cmmd"), reg.output("cmmd")
    assert (spec.higher_is_better, spec.modalities, spec.requires) == (False, ("image",), ("real_features", "fake_features"))
    assert (out.higher_is_better, out.category, out.label) == (False, "quality", "CMMD")


def test_cmmd_metric_without_a_feature_protocol_is_skipped():
    x = torch.zeros(4, 3, dtype=torch.float64)
    from genbench.metrics import EvalContext, compute_metrics

    ctx = EvalContext(real_features=x, fake_features=x + 1, feature_protocol={})
    assert compute_metrics(["cmmd"], ctx) == [] and "unnamed" in ctx.skipped["cmmd"]
