"""Users' own models: `model = "package.module:factory"` in a suite, entry points, and clear errors (and a run
that goes on) for models that return the wrong shape, dtype, range or NaNs."""

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # "tests.helpers.collapsed_model" must import as the suites name it
    sys.path.insert(0, str(ROOT))

from genbench.cli import main  # noqa: E402
from genbench.data import get_dataset  # noqa: E402
from genbench.models import (ENTRY_POINT_ERRORS, get_model_class, is_external, list_models,  # noqa: E402
                             load_entry_points, register_external, unregister_external)
from genbench.models.external_checks import ExternalModelError, ModelOutputError, resolve, validate_samples  # noqa: E402
from genbench.results.store import ResultsStore  # noqa: E402
from helpers.dummy_suite import RING8_ALL, write_suite  # noqa: E402
from genbench.suite import SuiteError, load_suite  # noqa: E402
from reference_models import create_model, get_model_class, list_models, load_model  # noqa: E402

HELPERS = "tests.helpers.collapsed_model"
USED_NAMES = ("collapsed", "nan", "badshape", "duck", "cgm", "col", "col3", "ext-entry", "int", "scaled")


@pytest.fixture(autouse=True)
def _cleanup():
    yield
    for n in USED_NAMES:
        unregister_external(n)


@pytest.fixture(scope="module")
def ring8():
    return get_dataset("ring8")


def _suite(tmp_path, models: dict, name="s.toml") -> Path:
    """ring8 with every points metric and the user models `models` ({name: table})."""
    return write_suite(tmp_path / name, {"ring8": dict(RING8_ALL)}, models, name="ext",
                       speed={"batch_size": 100, "repeats": 2, "warmup": 0})


def test_external_models_run_score_and_failures_are_recorded(tmp_path, capsys):
    suite = _suite(tmp_path, {"collapsed": {"model": f"{HELPERS}:make"}, "nan": {"model": f"{HELPERS}:nan_sampler"},
                              "badshape": {"model": f"{HELPERS}:wrong_shape"}, "duck": {"model": f"{HELPERS}:DuckGauss"}})
    out = tmp_path / "out"
    rc = main(["run", str(suite), "--out", str(out), "--quiet"])
    assert rc == 1  # some jobs failed ...
    jobs = ResultsStore(out).jobs_frame().set_index("model")
    assert jobs.loc["collapsed", "status"] == "done" and jobs.loc["duck", "status"] == "done"  # ... the run went on
    err = jobs.loc["nan", "error"]
    assert jobs.loc["nan", "status"] == "failed"
    assert "ModelOutputError" in err and "model 'nan' on ring8" in err and "NaN" in err and "expected finite" in err
    err = jobs.loc["badshape", "error"]
    assert "model 'badshape'" in err and "shape (100, 3), expected (100, 2)" in err
    assert "failed: ring8/nan/seed0" in capsys.readouterr().out

    f = ResultsStore(out).metrics_frame()
    vals = f[f.variant == ""].set_index(["model", "metric"])["value"]
    # the deliberately mode-collapsed sampler covers exactly one of the 8 modes, with low recall/coverage
    assert vals["collapsed", "modes_covered"] == 1
    assert vals["collapsed", "recall"] < 0.3 and vals["collapsed", "coverage"] < 0.3
    assert vals["collapsed", "precision"] > 0.8
    assert f[f.model == "collapsed"].family.iloc[0] == "user"
    # the duck-typed Gaussian has a likelihood (bits/dim recorded) and spreads over the ring (high recall)
    assert np.isfinite(vals["duck", "bits_per_dim"]) and vals["duck", "recall"] > 0.8
    # speed metrics as for built-in models
    assert {"samples_per_s", "latency_ms", "nfe", "num_params"} <= set(f[f.model == "collapsed"].metric)
    # the stored suite names the factory, so a later `genbench check` can rerun it
    runs = ResultsStore(out).runs_frame()
    assert f"{HELPERS}:make" in runs.suite_toml.iloc[-1]


def test_function_factory_parameters_are_its_config(tmp_path, ring8):
    cls = register_external("col", f"{HELPERS}:make")
    assert cls.family == "user" and cls.modalities == ("points",)
    cfg = cls.Config.for_budget("smoke", ring8.info)
    assert cfg.to_dict() == {"mode": 0, "spread": 0.01, "budget": "smoke"}
    m = create_model("col", ring8.info, "smoke", {"mode": 3})
    x = m.sample(50, seed=1)
    center = ring8.mixture.means[3].float()
    assert x.shape == (50, 2) and ((x - center).norm(dim=1) < 0.1).all()
    assert torch.equal(x, m.sample(50, seed=1)) and not torch.equal(x, m.sample(50, seed=2))
    # overrides are validated by the suite against the factory's parameters
    bad = _suite(tmp_path, {"col3": {"model": f"{HELPERS}:make", "overrides": {"mdoe": 3}}})
    with pytest.raises(SuiteError, match=r"models\.col3\.overrides\.mdoe.*Did you mean 'mode'"):
        load_suite(bad)


def test_generative_model_subclass_and_state_roundtrip(tmp_path, ring8):
    train = ring8.load("train").x
    register_external("cgm", f"{HELPERS}:CollapsedGM")
    m = create_model("cgm", ring8.info, "smoke")
    assert m.name == "cgm" and m.family == "toy"
    m.fit(train, seed=0)
    x = m.sample(64, seed=5)
    m.save(tmp_path / "ckpt")
    again = load_model(tmp_path / "ckpt")  # through the registry, like the runner's checkpoint cache
    assert type(again) is get_model_class("cgm") and torch.equal(again.sample(64, seed=5), x)

    register_external("duck", f"{HELPERS}:DuckGauss")
    d = create_model("duck", ring8.info, "smoke", {"shrink": 0.5})
    d.fit(train, seed=0)
    assert d.log_prob_kind == "exact" and d.log_prob(train[:10]).shape == (10,)
    d.save(tmp_path / "duck")
    d2 = load_model(tmp_path / "duck")
    assert torch.equal(d2.sample(32, seed=3), d.sample(32, seed=3))
    assert torch.allclose(d2.sample(2000, seed=0).std(0), 0.5 * train.std(0), rtol=0.1)


def test_contract_violations_name_model_expected_and_got(ring8):
    info = ring8.info
    for name, fn, pattern in [
        ("nan", "nan_sampler", r"model 'nan' on ring8: 4 of 10 samples contain non-finite values \(8 NaN, 0 inf\)"),
        ("badshape", "wrong_shape", r"shape \(10, 3\), expected \(10, 2\)"),
        ("int", "int_sampler", r"dtype torch.int64, expected a floating-point dtype"),
        ("scaled", "scaled_sampler", r"50.0% of sample values lie outside \[-3.15, 3.15\].*from 0 to 100"),
    ]:
        register_external(name, f"{HELPERS}:{fn}")
        with pytest.raises(ModelOutputError, match=pattern):
            create_model(name, info, "smoke").sample(10, seed=0)


def test_validate_samples_cases():
    from genbench.data.base import DatasetInfo

    img = DatasetInfo("digits", "image", (1, 8, 8), (0.0, 1.0))
    ok = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    out = validate_samples(ok.numpy(), img, 4, "m")  # numpy float64 accepted -> float32 tensor
    assert out.dtype == torch.float32 and torch.allclose(out, ok.float())
    over = ok.clone()
    over[0, 0, 0, 0] = 1.05  # a little outside: clamped, not an error
    assert validate_samples(over, img, 4, "m").max() == 1.0
    with pytest.raises(ModelOutputError, match=r"\[-1, 1\] images: return \(x \+ 1\) / 2"):
        validate_samples(ok * 2 - 1, img, 4, "m")
    with pytest.raises(ModelOutputError, match="0..255 images: divide by 255"):
        validate_samples(ok * 255, img, 4, "m")
    with pytest.raises(ModelOutputError, match=r"same number of values: reshape to \(4, 1, 8, 8\)"):
        validate_samples(ok.reshape(4, 64), img, 4, "m")
    with pytest.raises(ModelOutputError, match="returned 3 strings, expected 4"):
        validate_samples(["a", "b", "c"], DatasetInfo("t", "text", (), (0, 0)), 4, "m")
    with pytest.raises(ModelOutputError, match="must return a torch.Tensor or numpy array"):
        validate_samples([[0.0, 0.0]] * 4, DatasetInfo("p", "points", (2,), (-1.0, 1.0)), 4, "m")


def test_bad_references_give_clear_errors(tmp_path):
    with pytest.raises(ExternalModelError, match="must look like 'package.module:factory'"):
        resolve("tests.helpers.collapsed_model.make")
    with pytest.raises(ExternalModelError, match="cannot import module 'no_such_pkg_xyz.models'.*PYTHONPATH"):
        resolve("no_such_pkg_xyz.models:make")
    with pytest.raises(ExternalModelError, match=r"has no attribute 'maek'.*make"):
        resolve(f"{HELPERS}:maek")
    with pytest.raises(ExternalModelError, match="not a class or function"):
        resolve("math:pi")
    with pytest.raises(ExternalModelError, match="is a built-in model"):
        register_external("gan", f"{HELPERS}:make")
    # in a suite: the error names the file and the key
    bad = _suite(tmp_path, {"collapsed": {"model": f"{HELPERS}:nope"}})
    with pytest.raises(SuiteError, match=r"s\.toml: key 'models\.collapsed\.model'.*has no attribute 'nope'"):
        load_suite(bad)
    assert main(["run", str(bad), "--out", str(tmp_path / "o")]) == 2


def test_a_module_next_to_the_suite_resolves(tmp_path, monkeypatch):
    (tmp_path / "my_models_abc.py").write_text(textwrap.dedent("""
        import torch

        class Ring:
            def sample(self, n, seed=0):
                g = torch.Generator().manual_seed(seed)
                a = 2 * torch.pi * torch.randint(0, 8, (n,), generator=g) / 8
                return torch.stack([a.cos(), a.sin()], 1) + 0.01 * torch.randn(n, 2, generator=g)

        def make(info):
            return Ring()
        make.modalities = ("points",)
    """))
    suite = _suite(tmp_path, {"ext-entry": {"model": "my_models_abc:make"}})
    monkeypatch.chdir(ROOT)  # not the suite's folder
    monkeypatch.setattr(sys, "path", list(sys.path))
    s = load_suite(suite)
    assert s.models[0].factory == "my_models_abc:make"
    # parsing resolved and checked the model, and registered nothing (issue 16: no side effect of parsing)
    assert "ext-entry" not in list_models() and s.model_modalities("ext-entry") == ("points",)
    assert [m.name for _, m in s.pairs()] == ["ext-entry"]
    s.install_user_models()  # what a run does when it starts
    assert is_external("ext-entry") and get_model_class("ext-entry") is s.user_models["ext-entry"]
    sys.modules.pop("my_models_abc", None)


def test_entry_points_register_models_by_name(tmp_path, monkeypatch, capsys):
    # an "installed" distribution: a .dist-info folder on sys.path with entry points
    site = tmp_path / "site"
    dist = site / "genbench_plugin_demo-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: genbench-plugin-demo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        f"[genbench.models]\next-entry = {HELPERS}:make\nbroken = no_such_pkg_xyz:make\n")
    monkeypatch.setattr(sys, "path", [str(site)] + sys.path)
    list_models()
    added = load_entry_points()
    assert "ext-entry" in added and "ext-entry" in list_models()
    assert get_model_class("ext-entry")._external_ref == f"{HELPERS}:make"
    err = capsys.readouterr().err
    assert "genbench-plugin-demo registers model 'broken'" in err and "cannot import module 'no_such_pkg_xyz'" in err
    assert "broken" not in list_models() and "broken" in ENTRY_POINT_ERRORS
    assert load_entry_points() == []  # idempotent
    ENTRY_POINT_ERRORS.pop("broken", None)


def test_user_state_dict_with_numpy_is_cached_bit_identically_objects_are_not(tmp_path, ring8, monkeypatch, capsys):
    """Checkpoints are loaded weights-only (docs/security.md): NumPy state round-trips exactly; state holding
    other objects is not cached (a warning; the model is refitted on every run) instead of failing the job."""
    from tests.helpers import collapsed_model as helpers

    monkeypatch.setattr(helpers.DuckGauss, "state_dict",
                        lambda self: {"mu": self.mu, "sigma": self.sigma, "n": np.int64(len(self.mu))})
    train = ring8.load("train").x
    register_external("duck", f"{HELPERS}:DuckGauss")
    d = create_model("duck", ring8.info, "smoke")
    d.fit(train, seed=0)
    d.save(tmp_path / "duck")
    d2 = load_model(tmp_path / "duck")
    assert d2.inner.mu.tobytes() == d.inner.mu.tobytes() and d2.inner.sigma.dtype == d.inner.sigma.dtype
    assert torch.equal(d2.sample(32, seed=3), d.sample(32, seed=3))

    monkeypatch.setattr(helpers.DuckGauss, "state_dict", lambda self: {"mu": self.mu, "rng": np.random.default_rng(0)})
    capsys.readouterr()
    assert d.save(tmp_path / "duck2") == tmp_path / "duck2" and not (tmp_path / "duck2").exists()
    err = capsys.readouterr().err
    assert "model 'duck' is not cached between runs" in err and "['rng'] is a numpy.random" in err
