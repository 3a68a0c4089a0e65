"""The built-in metric declarations (genbench/metrics/builtin.py), the registry's reading of them
(genbench/metrics/registry.py) and EvalContext's protocol and defaults (genbench/metrics/context.py): what each
built-in metric yields, in which unit and direction, how it is shown and counted, and what each protocol records.
Written against mutation-testing survivors (issue 24); the values are the documented ones."""

import logging

import pytest
import torch

from genbench.metrics import EvalContext, MetricUnavailable, compute_metrics
from genbench.metrics import registry as reg
from genbench.metrics.registry import PERCENT

from tests.test_metrics_registry import ALL, _ctx

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

BUILTIN = ["fd", "kid", "precision", "recall", "density", "coverage", "modes_covered", "hq_share", "mode_kl",
           "classes_covered", "class_kl", "vendi", "near_copy_share", "nn_ratio", "bits_per_dim"]
UNIT = {"modes_covered": "modes", "mode_kl": "nats", "classes_covered": "modes", "class_kl": "nats", "vendi": "samples",
        "bits_per_dim": "bits/dim"}
LOWER_IS_BETTER = {"fd", "kid", "mode_kl", "class_kl", "near_copy_share", "bits_per_dim"}


def _only(names):
    return [n for n in names if n in BUILTIN]  # other modules (and other engineers' metrics) declare more


def test_every_result_matches_its_declaration():
    """Each result the built-ins yield has the unit and direction its Output declares, and both are the
    documented ones (lower is better for distances, KLs, near copies and bits/dim)."""
    res = compute_metrics(ALL, _ctx())
    assert [r.name for r in res] == BUILTIN
    for r in res:
        o = reg.output(r.name)
        assert (r.unit, r.higher_is_better) == (o.unit, o.higher_is_better) == (UNIT.get(r.name, ""),
                                                                                 r.name not in LOWER_IS_BETTER), r.name
        assert r.version == "1"
        assert reg.spec_of_output(r.name).name == {"precision": "prdc", "recall": "prdc", "density": "prdc",
                                                   "coverage": "prdc", "modes_covered": "mode_coverage",
                                                   "hq_share": "mode_coverage", "mode_kl": "mode_coverage",
                                                   "classes_covered": "class_coverage", "class_kl": "class_coverage",
                                                   "near_copy_share": "memorisation",
                                                   "nn_ratio": "memorisation"}.get(r.name, r.name)
    for name in ALL:  # the spec's own unit and direction are those of its main result
        spec = reg.get_metric(name)
        main = reg.output(spec.output_names[0])
        assert (spec.unit, spec.higher_is_better) == (main.unit, main.higher_is_better), name
    assert reg.spec_of_output("no_such_output") is None and reg.output("no_such_output") is None


def test_categories_ranks_and_headline_columns():
    assert _only(reg.in_category("quality")) == ["fd", "kid", "hq_share", "precision", "density"]
    q = reg.in_category("quality")  # density (rank 5) before the Inception Score (rank 6, another module)
    assert q.index("density") < q.index("inception_score")
    assert _only(reg.in_category("diversity")) == ["modes_covered", "classes_covered", "recall", "coverage", "mode_kl",
                                                   "vendi", "class_kl"]
    assert _only(reg.in_category("memorisation")) == ["near_copy_share", "nn_ratio"]
    assert _only(reg.in_category("likelihood")) == ["bits_per_dim"]
    assert _only(reg.headline("points")) == ["modes_covered", "hq_share", "mode_kl", "fd", "bits_per_dim", "near_copy_share"]
    assert _only(reg.headline("image")) == ["fd", "kid", "precision", "recall", "density", "coverage", "classes_covered",
                                            "bits_per_dim", "near_copy_share"]
    assert _only(reg.display_order()) == ["modes_covered", "hq_share", "mode_kl", "fd", "kid", "precision", "recall",
                                          "density", "coverage", "classes_covered", "bits_per_dim", "near_copy_share",
                                          "class_kl", "vendi", "nn_ratio"]
    labels = {n: reg.output(n).label for n in BUILTIN}
    assert labels == {"fd": "FD", "kid": "KID", "precision": "precision", "recall": "recall", "density": "density",
                      "coverage": "coverage", "modes_covered": "modes covered", "hq_share": "high-quality %",
                      "mode_kl": "reverse KL", "classes_covered": "classes covered", "class_kl": "class KL",
                      "vendi": "Vendi", "near_copy_share": "near copies %", "nn_ratio": "train/held-out NN",
                      "bits_per_dim": "bits/dim"}
    assert {n for n in BUILTIN if reg.output(n).fmt == PERCENT} == {"hq_share", "near_copy_share"}
    assert not any(reg.output(n).log_scale for n in BUILTIN)
    assert {"bits_per_dim"} <= reg.likelihood_metrics() and not reg.likelihood_metrics() & (set(BUILTIN) - {"bits_per_dim"})
    assert reg.get_metric("bits_per_dim").modalities == ("points", "image")
    assert all(reg.get_metric(n).modalities == () for n in ALL if n != "bits_per_dim")
    assert reg.get_metric("fd").requires == ("real_features", "fake_features")
    assert reg.get_metric("mode_coverage").requires == ("fake_samples", "mixture")


def test_output_declarations_are_checked_and_bare_names_get_the_spec_defaults():
    with pytest.raises(ValueError, match="category"):
        reg.Output("x", category="speedy")
    with pytest.raises(ValueError, match="fmt"):
        reg.Output("x", fmt="percentage")
    spec = reg.MetricSpec("x", "u", False, "1", (), lambda ctx: [], outputs=("x", "y"))
    assert [(o.name, o.unit, o.higher_is_better, o.category) for o in spec.declared] == [("x", "u", False, None),
                                                                                          ("y", "u", False, None)]
    assert reg.MetricSpec("z", "", True, "1", (), lambda ctx: []).output_names == ("z",)
    o = reg.Output("w")
    assert (o.unit, o.higher_is_better, o.category, o.fmt, o.headline, o.order, o.rank, o.log_scale) == (
        "", True, None, "number", (), 1000, 100, False)
    recorded = reg.recorded_outputs()
    assert "samples_per_s" in recorded and not set(BUILTIN) & set(recorded)


def test_skips_name_the_missing_field_and_its_reason(caplog):
    ctx = _ctx(mixture=None, unavailable={"mixture": "the dataset is not a known mixture"})
    with caplog.at_level(logging.INFO, logger="genbench.metrics.registry"):
        assert compute_metrics(["mode_coverage"], ctx) == []
    assert ctx.skipped["mode_coverage"] == ("metric 'mode_coverage' needs EvalContext field(s) mixture, which are not "
                                            "set: the dataset is not a known mixture")
    assert "skipped metric mode_coverage" in caplog.text
    ctx = _ctx(mixture=None)
    compute_metrics(["mode_coverage"], ctx)
    assert ctx.skipped["mode_coverage"].endswith("which are not set")
    assert reg.missing_requirements(reg.get_metric("memorisation"), _ctx(train_features=None, fake_features=None)) == [
        "fake_features", "train_features"]
    with pytest.raises(MetricUnavailable, match="no likelihood"):
        compute_metrics(["bits_per_dim"], _ctx(log_prob_kind="none"), strict=True)


def test_bits_per_dim_protocol_and_applicability():
    ctx = _ctx(extra_protocol={"suite": "s"})
    [r] = compute_metrics(["bits_per_dim"], ctx)
    assert r.protocol == {"reference_split": "test", "n_eval": 600, "kind": "exact", "convention": "continuous density",
                          "dim": 2, "dataset": "ring8", "suite": "s"}
    assert r.extra == {"is_upper_bound": False}
    [b] = compute_metrics(["bits_per_dim"], _ctx(log_prob_kind="bound", modality="image", dataset=None,
                                                 log_prob=[-1.0, -2.0]))
    assert b.extra == {"is_upper_bound": True} and b.protocol["convention"] == "discrete 8-bit log-probability"
    assert "dataset" not in b.protocol and b.protocol["n_eval"] == 2
    for kw, match in (({"modality": "text"}, "bits_per_char"), ({"data_dim": None}, "data_dim")):
        ctx = _ctx(**kw)
        assert compute_metrics(["bits_per_dim"], ctx) == []
        assert match in ctx.skipped["bits_per_dim"]


def test_builtin_protocols():
    res = {r.name: r for r in compute_metrics(ALL, _ctx(classifier_protocol={"id": "clf", "accuracy": 0.97},
                                                        vendi_max_samples=100, copy_fraction=0.2))}
    assert res["fd"].protocol["feature_dim"] == 2 and "n_bootstrap" not in res["fd"].protocol
    assert res["fd"].extra["route"].startswith("statistics")
    assert res["kid"].protocol["subsets"] == 10 and res["kid"].protocol["subset_size"] == 200
    assert res["precision"].protocol["ball"] == "<=" and res["precision"].protocol["k"] == 3
    assert res["coverage"].protocol["k"] == 5 and res["recall"].protocol["convention"] == "official"
    assert res["modes_covered"].protocol["high_quality"] == "within 3 std of the nearest mean"
    assert res["modes_covered"].extra["num_modes"] == 8 and res["modes_covered"].unit == "modes"
    assert res["classes_covered"].protocol["classifier"] == "clf"
    assert res["classes_covered"].protocol["classifier_accuracy"] == 0.97 and res["class_kl"].extra["num_modes"] == 8
    assert res["vendi"].protocol["n_samples"] == 100 and res["vendi"].protocol["kernel"] == "cosine"
    assert res["near_copy_share"].protocol["n_train"] == 800
    assert res["near_copy_share"].protocol["near_copy"] == "d_train < 0.2 x median train NN distance"
    assert res["nn_ratio"].extra["n_train_compared"] == 600
    no_acc = {r.name: r for r in compute_metrics(["class_coverage"], _ctx(classifier_protocol={"id": "clf"}))}
    assert "classifier_accuracy" not in no_acc["classes_covered"].protocol
    # the strict prdc convention: k of precision / recall is k_dc, balls are open
    strict = {r.name: r for r in compute_metrics(["prdc"], _ctx(prdc_convention="prdc", k_pr=2, k_dc=4))}
    assert strict["precision"].protocol["k"] == 4 and strict["precision"].protocol["ball"] == "<"
    official = {r.name: r for r in compute_metrics(["prdc"], _ctx(k_pr=2, k_dc=4))}
    assert official["recall"].protocol["k"] == 2 and official["density"].protocol["k"] == 4
    # kid's subset size is clamped to the smaller set; n_bootstrap 0: no interval
    with pytest.warns(Warning, match="clamped from 5000 to 500"):
        [k] = compute_metrics(["kid"], _ctx(kid_subset_size=5000, n_bootstrap=0))
    assert k.protocol["subset_size"] == 500 and k.ci_low is None and "n_bootstrap" not in k.protocol
    [k] = compute_metrics(["kid"], _ctx(n_bootstrap=3))
    assert k.ci_low is not None and k.protocol["n_bootstrap"] == 3 and k.protocol["bootstrap_alpha"] == 0.05
    assert k.extra["std_of"].startswith("one subset's MMD^2")


def test_fd_small_n_route_and_warning():
    g = torch.Generator().manual_seed(0)
    ctx = _ctx(real_features=torch.randn(20, 30, generator=g, dtype=torch.float64),
               fake_features=torch.randn(20, 30, generator=g, dtype=torch.float64))
    with pytest.warns(Warning, match="singular"):
        [r] = compute_metrics(["fd"], ctx)
    assert r.extra["route"].startswith("features") and r.protocol["feature_dim"] == 30


def test_eval_context_defaults_and_base_protocol():
    c = EvalContext()
    assert (c.reference_split, c.seed, c.bootstrap_alpha, c.device, c.kid_subsets, c.kid_subset_size, c.k_pr, c.k_dc,
            c.prdc_convention, c.vendi_kernel, c.vendi_max_samples, c.copy_fraction, c.is_splits, c.mauve_buckets,
            c.log_prob_kind, c.fd_inf_points, c.fd_inf_min_fraction, c.fd_inf_draws, c.fd_inf_scale) == (
        "test", 0, 0.05, "cpu", 100, 1000, 3, 5, "official", "cosine", 10000, 0.1, 10, "auto", "none", 15, 0.1, 1, "both")
    from genbench.defaults import CONTEXT_N_BOOTSTRAP

    assert c.n_bootstrap == CONTEXT_N_BOOTSTRAP
    assert c.base_protocol() == {"reference_split": "test", "seed": 0}
    x = torch.zeros(7, 3)
    c = EvalContext(real_features=x, fake_features=x[:4], feature_protocol={"id": "f", "pinned": False}, dataset="d",
                    seed=3, reference_split="val", extra_protocol={"suite": "s", "seed": 9})
    assert c.base_protocol() == {"reference_split": "val", "seed": 9, "dataset": "d", "features": "f",
                                 "features_pinned": False, "n_real": 7, "n_fake": 4, "suite": "s"}
    pinned = EvalContext(feature_protocol={"id": "f", "pinned": True}).base_protocol()
    assert pinned == {"reference_split": "test", "seed": 0, "features": "f"}
    assert EvalContext(feature_protocol={"id": "f"}).base_protocol()["features"] == "f"
    assert EvalContext(feature_protocol={"x": 1}).base_protocol()["features"] == ""


def test_declarations_are_frozen_and_recorded_outputs_are_outputs():
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        reg.Output("x").unit = "y"
    with pytest.raises(dataclasses.FrozenInstanceError):
        reg.get_metric("fd").unit = "y"
    assert reg.output("samples_per_s").category == "speed" and reg.output("samples_per_s").log_scale
    assert "samples_per_s" in reg.display_order()


def test_a_spec_with_one_likelihood_output_makes_all_its_outputs_likelihood_metrics():
    spec = reg.MetricSpec("tmp_mixed", "", True, "1", (), lambda ctx: [],
                          outputs=(reg.Output("tmp_a", category="likelihood"), reg.Output("tmp_b")))
    reg.register_metric(spec)
    try:
        assert {"tmp_mixed", "tmp_a", "tmp_b"} <= reg.likelihood_metrics()
    finally:
        reg.METRICS._items.pop("tmp_mixed")
    assert "tmp_b" not in reg.likelihood_metrics()


def test_the_registry_loads_the_declaring_modules_itself():
    """In a fresh interpreter that imported only the registry, the recorded outputs (declared by
    genbench.pipeline.speed, which nothing else imports) are there on the first call."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    code = "import genbench.metrics.registry as r; assert 'samples_per_s' in r.{}(), r.{}()"
    procs = [subprocess.Popen([sys.executable, "-c", code.format(fn, fn)], cwd=root, env=env, stderr=subprocess.PIPE)
             for fn in ("outputs", "recorded_outputs")]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-500:]


def test_bootstrap_switches_and_their_edges():
    """n_bootstrap 1 is refused (bootstrap_ci needs 2 replicates) by every bootstrapped metric, not silently
    skipped; the KID interval on the per-subset path is the bootstrap of KID's mean."""
    from genbench.errors import InvalidInputError
    from genbench.metrics import bootstrap_ci, kid

    for name in ("fd", "kid", "prdc"):
        with pytest.raises(InvalidInputError, match="n_boot must be >= 2"):
            compute_metrics([name], _ctx(n_bootstrap=1))
    ctx = _ctx(n_bootstrap=3, kid_subset_size=20, kid_subsets=2)  # too few subsets for the kernel path
    [k] = compute_metrics(["kid"], ctx)
    want = bootstrap_ci(lambda r, f: kid(r, f, subsets=2, subset_size=20, seed=0)[0], ctx.real_features,
                        ctx.fake_features, 3, 0, 0.05)
    assert (k.ci_low, k.ci_high) == (want["ci_low"], want["ci_high"])


def test_prdc_intervals_are_clipped_to_each_metrics_range():
    """A fake set equal to the real one: precision, recall and coverage are 1 and their intervals end at 1 (the
    bias-corrected bootstrap goes past it); density's interval is not clipped at 1 (only at 0)."""
    from genbench.metrics import bootstrap_ci, prdc_dedup

    ctx = _ctx(n_bootstrap=20)
    ctx.fake_features = ctx.real_features.clone()
    res = {r.name: r for r in compute_metrics(["prdc"], ctx)}
    raw = bootstrap_ci(lambda r, f: prdc_dedup(r, f), ctx.real_features, ctx.fake_features, 20, 0, 0.05)
    for name in ("precision", "recall", "coverage"):
        assert res[name].value == 1.0 and res[name].ci_high == 1.0, name
    assert max(raw[n]["ci_high"] for n in ("precision", "recall", "coverage")) > 1.0  # so the clip is needed
    # not clipped at 1: the same interval as the unclipped bootstrap (the resampler and prdc_dedup agree on this
    # set to float rounding: its rows are distinct)
    assert (res["density"].ci_low, res["density"].ci_high) == pytest.approx(
        (raw["density"]["ci_low"], raw["density"]["ci_high"]), rel=1e-12)
    assert res["density"].ci_high > 1.0
    shifted = {r.name: r for r in compute_metrics(["prdc"], _ctx(n_bootstrap=20))}
    assert 0.0 <= shifted["density"].ci_low < 1.0


def test_fd_route_uses_the_row_counts_and_warns_once():
    """40 x 30 real and 35 x 30 fake rows: no covariance is singular (35 > 30) and the features route is not the
    cheaper (4 x 40 x 35 x 35 > 30^3): statistics, no small-N warning (with a set's dimension read as its row count
    the features route and the warning would come). 20 x 30 rows with a bootstrap: one warning (the point
    estimate's), the replicates stay quiet; KID's clamp warning likewise."""
    import warnings

    g = torch.Generator().manual_seed(0)
    ctx = _ctx(real_features=torch.randn(40, 30, generator=g, dtype=torch.float64),
               fake_features=torch.randn(35, 30, generator=g, dtype=torch.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        [r] = compute_metrics(["fd"], ctx)
    assert r.extra["route"].startswith("statistics")
    small = _ctx(real_features=torch.randn(20, 30, generator=g, dtype=torch.float64),
                 fake_features=torch.randn(20, 30, generator=g, dtype=torch.float64), n_bootstrap=3)
    with pytest.warns(Warning) as rec:
        compute_metrics(["fd"], small)
    assert len(rec) == 1
    with pytest.warns(Warning) as rec:
        compute_metrics(["kid"], _ctx(kid_subset_size=5000, n_bootstrap=3))
    assert len(rec) == 1


def test_every_declared_output_has_its_own_display_order():
    """Two outputs of one display order would be listed in registration order, an accident of import order."""
    from genbench.metrics.registry import METRICS, _DECLARED, _load

    _load()
    orders: dict = {}
    for _, spec in METRICS.items():
        for o in spec.declared:
            orders.setdefault(o.order, set()).add(o.name)
    for o, _, _ in _DECLARED.values():
        orders.setdefault(o.order, set()).add(o.name)
    shared = {k: sorted(v) for k, v in orders.items() if len(v) > 1}
    assert not shared, shared
