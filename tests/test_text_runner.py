"""Text jobs in `genbench run`: bits/char carries its window protocol and is the model's own nll_per_char on
the stated held-out text; the embedding FD compares the samples with held-out units of the same kind and
length (passages of the model's sample_length for running text, whole lines for names). Also the per-dataset,
step-based quick configs of the text models."""

from __future__ import annotations

import json
import math

import pytest
import torch

from genbench.data import get_dataset
from genbench.metrics import frechet_distance, gaussian_stats
from genbench.metrics.text import heldout_text, reference_texts
from genbench.runner import REAL_SUBSET_SEED, Runner
from genbench.results.store import ResultsStore
from genbench.suite import load_suite
from reference_models import create_model, load_model
from helpers.dummy_suite import suite_toml

_TEXT = {"features": "char-ngram", "n_samples": 48, "reference": "test"}
SUITE = suite_toml({"shakespeare-char": {**_TEXT, "metrics": ["fd", "bits_per_char"], "n_likelihood": 3000},
                    "names": {**_TEXT, "metrics": ["fd", "bits_per_char", "novelty"], "n_likelihood": 1500}},
                   {"transformer": {"overrides": {"sample_length": 40}}}, name="text-t", n_bootstrap=0,
                   speed={"batch_size": 8, "repeats": 1, "warmup": 0})


def _need(name):
    ds = get_dataset(name)
    ok, why = ds.available()
    if not ok:
        pytest.skip(f"{name} not available: {why}")
    return ds


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    for n in ("shakespeare-char", "names"):
        _need(n)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tmp = tmp_path_factory.mktemp("textrun")
        (tmp / "s.toml").write_text(SUITE)
        out = tmp / "out"
        s = Runner(load_suite(tmp / "s.toml"), out, device="cpu", quiet=True, log=lambda m: None).run()
        assert not s.failed, s.failed
        yield out
    finally:
        torch.set_num_threads(threads)


def _job(out, dataset):
    store = ResultsStore(out)
    jobs = store.jobs_frame().set_index("job_id")
    jid = f"{dataset}/transformer/seed0"
    assert jobs.loc[jid, "status"] == "done"
    model = load_model(out / jobs.loc[jid, "checkpoint_path"])
    f = store.metrics_frame()
    f = f[(f.dataset == dataset) & (f.model == "transformer")].set_index("metric")
    arts = store.artifacts(jid).set_index("kind")
    fake = json.loads((out / arts.loc["samples_preview", "path"]).read_text())
    real_prev = json.loads((out / arts.loc["real_preview", "path"]).read_text())
    return model, f, fake, real_prev


@pytest.mark.parametrize("dataset", ["shakespeare-char", "names"])
def test_bits_per_char_states_the_window_protocol_and_is_the_models_nll(text_run, dataset):
    model, f, _, _ = _job(text_run, dataset)
    proto = json.loads(f.loc["bits_per_char", "protocol"])
    C = model.default_context()
    assert C == 32  # the smoke transformer's block size
    assert proto["context"] == C and proto["stride"] == C // 2
    test = get_dataset(dataset).load("test")
    text, _ = heldout_text(test, proto["max_chars"], model.sample_mode, seed=REAL_SUBSET_SEED)
    if dataset == "shakespeare-char":
        assert proto["text"].startswith("first characters") and text == test.text[:3000]
    else:  # whole lines in a seeded random order, not the file's first (most frequent) names
        assert proto["text"].startswith("whole lines") and text.endswith("\n") and len(text) <= 1500
        assert text != test.text[: len(text)]
    nats, n = model.nll_per_char(text, context=C, stride=C // 2)
    assert proto["n_chars"] == n == len(text)
    assert f.loc["bits_per_char", "value"] == pytest.approx(nats / math.log(2), rel=1e-9)
    # a different window protocol gives a different number: the stated protocol is the one used
    other, _ = model.nll_per_char(text, context=8, stride=8)
    assert abs(other - nats) > 1e-4


def test_running_text_fd_uses_passages_of_the_sample_length(text_run):
    model, f, fake, real_prev = _job(text_run, "shakespeare-char")
    assert model.sample_mode == "stream" and model.config.sample_length == 40
    assert len(fake) == 48 and all(len(s) == 40 for s in fake)
    assert all(len(s) == 40 for s in real_prev)  # held-out passages of the samples' length, not lines or 256
    test = get_dataset("shakespeare-char").load("test")
    assert real_prev == reference_texts(test, 64, "stream", 40, seed=REAL_SUBSET_SEED)  # the 64-unit preview
    real = reference_texts(test, 48, "stream", 40, seed=REAL_SUBSET_SEED)
    from genbench.features import get_extractor

    ext = get_extractor("char-ngram")
    fr, ff = ext.extract(real, batch_size=64), ext.extract(fake, batch_size=64)
    fd = frechet_distance(*gaussian_stats(fr), *gaussian_stats(ff))
    assert f.loc["fd", "value"] == pytest.approx(fd, rel=1e-6)
    # against single held-out lines (the wrong unit) the distance is a different number
    lines = reference_texts(test, 48, "line", seed=REAL_SUBSET_SEED)
    fl = ext.extract(lines, batch_size=64)
    assert abs(frechet_distance(*gaussian_stats(fl), *gaussian_stats(ff)) - fd) > 1e-3 * max(fd, 1.0)


def test_names_fd_uses_whole_lines(text_run):
    model, f, fake, real_prev = _job(text_run, "names")
    assert model.sample_mode == "line"
    test = get_dataset("names").load("test")
    assert real_prev == reference_texts(test, 64, "line", seed=REAL_SUBSET_SEED)
    assert set(real_prev) <= set(test.lines)


def test_heldout_text_units():
    from genbench.data.base import DatasetInfo, TextSplit

    info = DatasetInfo(name="t", modality="text", shape=(), value_range=(0, 0))
    lines = [f"line{i:02d}" for i in range(30)]
    sp = TextSplit("".join(ln + "\n" for ln in lines), sorted(set("".join(lines)) | {"\n"}), info, "test", source="t")
    t, p = heldout_text(sp, 50, "stream")
    assert t == sp.text[:50] and p["max_chars"] == 50
    t, p = heldout_text(sp, 50, "line", seed=3)
    got = t.split("\n")[:-1]
    assert len(got) == 7 == p["n_lines"] and len(t) == 49  # whole 7-character lines, as many as fit in 50
    assert set(got) <= set(lines) and len(set(got)) == 7 and got != lines[:7]
    assert heldout_text(sp, 50, "line", seed=3)[0] == t and heldout_text(sp, 50, "line", seed=4)[0] != t
    assert heldout_text(sp, None, "line")[0].count("\n") == 30


@pytest.mark.parametrize("name", ["transformer", "lstm", "ngram", "text-copy"])
def test_quick_configs_are_step_based_and_per_dataset(name):
    from genbench.data.base import DatasetInfo

    names = DatasetInfo(name="names", modality="text", shape=(), value_range=(0, 0))
    shk = DatasetInfo(name="shakespeare-char", modality="text", shape=(), value_range=(0, 0))
    other = DatasetInfo(name="my-text", modality="text", shape=(), value_range=(0, 0))
    cn, cs, co = (create_model(name, i, "quick").config for i in (names, shk, other))
    for c in (cn, cs, co):
        assert c.max_seconds is None and c.steps >= 1
    assert co == cs  # other datasets get the running-text settings
    if name in ("transformer", "lstm"):
        ctx = "block_size" if name == "transformer" else "seq_len"
        chars = lambda c: c.steps * c.batch_size * getattr(c, ctx)  # characters trained on
        assert getattr(cn, ctx) < getattr(cs, ctx) and chars(cn) < chars(cs)
    if name == "ngram":
        assert (cn.order, cs.order) == (5, 6)


def test_line_datasets_train_on_shuffled_lines():
    """Line datasets are trained on their lines in a seeded random order (names is alphabetical within frequency
    ties: in file order a model learns to copy the previous name's prefix)."""
    from genbench.data.base import DatasetInfo, TextSplit
    from reference_models.text_base import training_text

    info = DatasetInfo(name="t", modality="text", shape=(), value_range=(0, 0))
    lines = [f"ab{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    sp = TextSplit("".join(ln + "\n" for ln in lines), sorted(set("".join(lines)) | {"\n"}), info, "train", source="t")
    assert training_text(sp, "stream", 0) == sp.text
    t0 = training_text(sp, "line", 0)
    assert t0 != sp.text and sorted(t0.split("\n")[:-1]) == lines and t0.endswith("\n")
    assert training_text(sp, "line", 0) == t0 and training_text(sp, "line", 1) != t0
    m = create_model("text-copy", info, "smoke")  # keeps the text it was fitted on
    m.fit(sp, seed=1)
    assert m.config.sample_mode == "line" and m.text_ == training_text(sp, "line", 1)


def test_run_gives_novelty_the_training_lines_and_times_the_public_sampling_path(text_run):
    """The text scorer hands novelty the dataset's training lines (no hidden dataset load in the metric), and the
    speed rows come from `generate_ids`: cached and uncached for the transformer, whose uncached path differs."""
    model, f, fake, _ = _job(text_run, "names")
    assert 0.0 <= f.loc["novelty", "value"] <= 1.0
    proto = json.loads(f.loc["novelty", "protocol"])
    assert proto["n_lines"] == 48 and proto["against"] == "training lines"
    assert {"chars_per_s", "chars_per_s_nocache", "first_char_latency"} <= set(f.index)
    assert model.has_uncached_path

