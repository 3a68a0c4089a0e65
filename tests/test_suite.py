"""Suite files: the built-in suites load; invalid files fail before any work with the file and the key named."""

import pytest

from genbench.suite import SuiteError, apply_overrides, list_suites, load_suite

BASE = """
name = "t"
budget = "smoke"
device = "cpu"
seeds = [0]

[datasets.ring8]
features = "identity"
n_samples = 100
metrics = ["fd"]

[models.gan]
"""


def _write(tmp_path, text, name="s.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _err(tmp_path, text) -> str:
    p = _write(tmp_path, text)
    with pytest.raises(SuiteError) as e:
        load_suite(p)
    msg = str(e.value)
    assert str(p) in msg, msg  # every error names the file
    return msg


def test_builtin_suites_load():
    assert {"smoke", "quick", "standard"} <= set(list_suites())
    for name in ("smoke", "quick", "standard"):
        s = load_suite(name)
        assert s.name == name and s.pairs()
    quick = load_suite("quick")
    assert quick.device == "cpu" and {"ring8", "grid25", "fashion-mnist"} <= {d.name for d in quick.datasets}


def test_minimal_suite_and_defaults(tmp_path):
    s = load_suite(_write(tmp_path, BASE))
    assert [(d.name, m.name) for d, m in s.pairs()] == [("ring8", "gan")]
    assert s.dataset("ring8").reference == "test" and s.speed.batch_size == 256
    assert len(s.hash) == 16


@pytest.mark.parametrize("text, key, words", [
    (BASE + "\ncolour = 'red'\n", "colour", "unknown key"),
    (BASE.replace('budget = "smoke"', 'budget = "smok"'), "budget", "'smoke'"),
    (BASE.replace("seeds = [0]", "seeds = 0"), "seeds", "list of integers"),
    (BASE.replace("seeds = [0]", "seeds = [0, 0]"), "seeds", "repeated"),
    (BASE.replace("n_samples = 100", "n_samples = '100'"), "datasets.ring8.n_samples", "integer"),
    (BASE.replace("n_samples = 100", "n_samples = 0"), "datasets.ring8.n_samples", "between 2 and"),
    (BASE.replace("n_samples = 100", "n_samples = 100\nextra = 1"), "datasets.ring8.extra", "unknown key"),
    (BASE.replace("[datasets.ring8]", "[datasets.ring9]"), "datasets.ring9", "'ring8'"),
    (BASE.replace("[models.gan]", "[models.gann]"), "models.gann", "'gan'"),
    (BASE.replace('metrics = ["fd"]', 'metrics = ["fd", "samples_per_s"]'), "datasets.ring8.metrics", "speed metric"),
    (BASE.replace("[datasets.ring8]", "[datasets.digits]").replace('"identity"', '"inception"')
     .replace('metrics = ["fd"]', 'metrics = ["mode_coverage"]'), "datasets.digits.metrics", "known mixture"),
    (BASE.replace('metrics = ["fd"]', 'metrics = []'), "datasets.ring8.metrics", "at least one"),
    (BASE.replace('device = "cpu"', 'device = "tpu"'), "device", "'cpu'"),
    (BASE + "\n[speed]\nrepeats = 0\n", "speed.repeats", "> 0"),
    (BASE.replace('metrics = ["fd"]', 'metrics = ["fd"]\noptions = { kid_subset = 3 }'), "datasets.ring8.options.kid_subset",
     "'kid_subsets'"),
    (BASE.replace('metrics = ["fd"]', 'metrics = ["fd"]\noptions = { k_pr = "3" }'), "datasets.ring8.options.k_pr",
     "integer"),
    (BASE + "\n[models.gan.overrides]\nstepz = 3\n", "models.gan.overrides.stepz", "'steps'"),
    (BASE + "\n[sweeps.gan]\nsampler = 'ddim'\nsteps = [10]\n", "sweeps.gan", "sampler"),
    (BASE.split("[models.gan]")[0], "models", "required"),
])
def test_invalid_suites_name_file_and_key(tmp_path, text, key, words):
    msg = _err(tmp_path, text)
    assert f"key {key!r}" in msg, msg
    assert words in msg, msg


def test_impossible_combinations(tmp_path):
    # an image-only extractor on points
    msg = _err(tmp_path, BASE.replace('"identity"', '"inception"'))
    assert "key 'datasets.ring8.features'" in msg and "works on image data" in msg and "points" in msg
    # an image/points model restricted to a text dataset
    text = BASE + '\n[datasets.names]\nfeatures = "identity"\nn_samples = 10\nmetrics = ["fd"]\n'
    text = text.replace("[models.gan]", '[models.gan]\ndatasets = ["names"]')
    msg = _err(tmp_path, text)
    assert "models.gan.datasets" in msg and "text" in msg
    # a restriction to a dataset the suite does not have
    msg = _err(tmp_path, BASE.replace("[models.gan]", '[models.gan]\ndatasets = ["grid25"]'))
    assert "models.gan.datasets" in msg and "grid25" in msg


def test_bad_toml_and_unknown_suite(tmp_path):
    msg = _err(tmp_path, "name = [")
    assert "not valid TOML" in msg
    with pytest.raises(SuiteError, match="Did you mean 'quick'"):
        load_suite("quik")
    with pytest.raises(SuiteError, match="does not exist"):
        load_suite(tmp_path / "missing.toml")


def test_command_line_overrides(tmp_path):
    s = load_suite(_write(tmp_path, BASE.replace("[datasets.ring8]", '[datasets.grid25]\nfeatures = "identity"\n'
                                                 'n_samples = 10\nmetrics = ["fd"]\n\n[datasets.ring8]')))
    o = apply_overrides(s, datasets=["grid25"], seeds=[3, 4], budget="quick", device="auto")
    assert [d.name for d in o.datasets] == ["grid25"] and o.seeds == [3, 4] and o.budget == "quick"
    assert o.hash != s.hash and [d.name for d in s.datasets] == ["grid25", "ring8"]  # original untouched
    with pytest.raises(SuiteError, match="Did you mean 'ring8'"):
        apply_overrides(s, datasets=["ring"])
    with pytest.raises(SuiteError, match="--models"):
        apply_overrides(s, models=["vae"])
    with pytest.raises(SuiteError, match="--seeds"):
        apply_overrides(s, seeds=[1, 1])


def test_dataset_overrides(tmp_path):
    from genbench.runner import make_jobs

    text = BASE.replace("[models.gan]", "[models.gan]\noverrides = { steps = 5, lr = 0.01 }\n"
                        "dataset_overrides = { ring8 = { steps = 7 } }")
    s = load_suite(_write(tmp_path, text))
    assert s.models[0].overrides_for("ring8") == {"steps": 7, "lr": 0.01}
    assert s.models[0].overrides_for("grid25") == {"steps": 5, "lr": 0.01}
    (job,) = make_jobs(s, tmp_path, "cpu")
    assert job.model.overrides == {"steps": 7, "lr": 0.01} and job.model.dataset_overrides == {}
    msg = _err(tmp_path, BASE.replace("[models.gan]", "[models.gan]\ndataset_overrides = { grid25 = { steps = 7 } }"))
    assert "key 'models.gan.dataset_overrides.grid25'" in msg and "not in this suite" in msg
    msg = _err(tmp_path, BASE.replace("[models.gan]", "[models.gan]\ndataset_overrides = { ring8 = { stepz = 7 } }"))
    assert "key 'models.gan.dataset_overrides.ring8.stepz'" in msg and "'steps'" in msg


GMM = BASE.replace("[models.gan]", "[models.gmm]")


@pytest.mark.parametrize("text, key, words", [
    (BASE.replace("n_samples = 100", "n_samples = 1"), "datasets.ring8.n_samples", "between 2 and 1_000_000"),
    (BASE.replace("n_samples = 100", "n_samples = 100000000000"), "datasets.ring8.n_samples", "1_000_000"),
    (BASE.replace("n_samples = 100", "n_samples = 100\nn_likelihood = 1"), "datasets.ring8.n_likelihood", "between 2"),
    (BASE.replace("n_samples = 100", "n_samples = 100\nn_train_features = 5000000"),
     "datasets.ring8.n_train_features", "1_000_000"),
    (GMM.replace("[models.gmm]", '[models.gmm]\noverrides = { n_components = "four" }'),
     "models.gmm.overrides.n_components", "expected an integer"),
    (GMM.replace("[models.gmm]", "[models.gmm]\noverrides = { n_components = -3 }"),
     "models.gmm.overrides.n_components", "must be >= 1"),
    (GMM.replace("[models.gmm]", "[models.gmm]\noverrides = { n_components = 0 }"),
     "models.gmm.overrides.n_components", "must be >= 1"),
    (GMM.replace("[models.gmm]", "[models.gmm]\noverrides = { n_components = 2.5 }"),
     "models.gmm.overrides.n_components", "expected an integer"),
    (BASE.replace("[models.gan]", "[models.gan]\noverrides = { lr = nan }"), "models.gan.overrides.lr", "finite"),
    (BASE.replace("[models.gan]", "[models.gan]\noverrides = { lr = -0.1 }"), "models.gan.overrides.lr", ">= 0"),
    (BASE.replace("[models.gan]", "[models.gan]\noverrides = { lr = true }"), "models.gan.overrides.lr", "a number"),
    (BASE.replace("[models.gan]", "[models.gan]\ndataset_overrides = { ring8 = { steps = \"many\" } }"),
     "models.gan.dataset_overrides.ring8.steps", "expected an integer"),
])
def test_override_types_and_sample_counts_are_validated(tmp_path, text, key, words):
    msg = _err(tmp_path, text)
    assert f"key {key!r}" in msg, msg
    assert words in msg, msg


def test_valid_overrides_still_load(tmp_path):
    s = load_suite(_write(tmp_path, BASE.replace("[models.gan]", "[models.gan]\noverrides = { steps = 5, lr = 1 }")))
    assert s.models[0].overrides == {"steps": 5, "lr": 1}
    text = BASE.replace("[models.gan]", "[models.vae]\noverrides = { min_log_scale = -5.0 }")
    assert load_suite(_write(tmp_path, text)).models[0].overrides == {"min_log_scale": -5.0}  # negative default


def test_non_utf8_suite_file_is_a_clear_error(tmp_path):
    p = tmp_path / "latin1.toml"
    p.write_bytes(BASE.replace('name = "t"', 'name = "caf\u00e9"').encode("latin-1"))
    with pytest.raises(SuiteError, match="not UTF-8"):
        load_suite(p)


def test_standard_holds_the_conditional_blocks():
    """Issue #23 item 5: `standard` runs the `conditional` suite's blocks at the standard (GPU) budget: the
    class-conditional models on Fashion-MNIST only, with the conditional metrics, uniform conditions and the same
    guidance sweep, and the prefix-conditioned names block for the text models that can continue a prefix."""
    from genbench.models import get_model_class

    std, cond = load_suite("standard"), load_suite("conditional")
    assert std.budget == "standard" and cond.budget == "quick"
    pairs = {(d.name, m.name) for d, m in std.pairs()}
    conditional_models = [m.name for m in cond.models if getattr(get_model_class(m.name), "conditional", False)]
    assert conditional_models == ["cfg-ddpm", "cgan", "cvae", "cpixelcnn"]
    for name in conditional_models:
        assert {d for d, m in pairs if m == name} == {"fashion-mnist"}, name
        cls = get_model_class(name)
        from genbench.data import get_dataset

        info = get_dataset("fashion-mnist").info
        assert cls.Config.for_budget("standard", info).steps > cls.Config.for_budget("quick", info).steps, name
    fm, cfm = std.dataset("fashion-mnist"), cond.dataset("fashion-mnist")
    assert set(cfm.metrics) <= set(fm.metrics)  # every conditional score of the conditional suite, beside standard's
    assert {"conditional_accuracy", "intra_fd", "intra_recall_coverage", "cas"} <= set(fm.metrics)
    assert fm.conditions == cfm.conditions == "uniform" and fm.features == "inception" and fm.n_samples == 10000
    assert std.sweeps["cfg-ddpm"].guidance == cond.sweeps["cfg-ddpm"].guidance == [0.0, 1.0, 2.0, 4.0]
    assert not std.sweeps["cfg-ddpm"].steps
    # the unconditional image models still run on every image dataset, the conditional metrics skipped for them
    for d in ("fashion-mnist", "mnist", "stacked-mnist", "cifar10"):
        assert {m for dd, m in pairs if dd == d} >= {"gan", "vae", "ddpm", "realnvp", "pixelcnn", "train-copy"}
    # text prefixes: the conditional suite's names block; text-copy cannot continue a prefix, so it stays off it
    names, cnames = std.dataset("names"), cond.dataset("names")
    assert names.prefix_length == cnames.prefix_length == 3 and names.metrics == cnames.metrics
    cond_text = {m.name for d, m in cond.pairs() if d.name == "names"}
    assert {m for d, m in pairs if d == "names"} == cond_text == {"transformer", "lstm", "ngram"}
    assert {d for d, m in pairs if m == "text-copy"} == {"shakespeare-char"}
    assert {m for d, m in pairs if d == "shakespeare-char"} == {"transformer", "lstm", "ngram", "text-copy"}
