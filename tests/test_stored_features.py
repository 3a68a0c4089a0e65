"""What a job stores for the paired bootstrap and how it is found again (genbench/results/stored_features.py): the
size budget (GENBENCH_FEATURES_MB, documented in docs/gate.md) and its bad values, the metadata written, the
reference identity (stable across genbench versions: stored identities are compared), the shared reference
file written once, variants' artifact kinds, and unreadable metadata read back with the reason."""

import json

import numpy as np
import pytest
import torch

from genbench.errors import InvalidInputError
from genbench.results.store import ResultsStore
from genbench.results.stored_features import (BUDGET_ENV, StoredFeatures, budget_bytes, feature_index,
                                              reference_identity, save_features)

KEY = {"dataset": "toy", "split": "test", "split_sha256": "abc", "subset": {"n": 300, "sha256": "f00"},
       "extractor": {"id": "identity", "weights_sha256": "beef"}, "device": "cpu", "metric_version": "x"}


def _x(n, d, seed):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_budget_default_units_and_bad_values(monkeypatch):
    monkeypatch.delenv(BUDGET_ENV, raising=False)
    assert budget_bytes() == 16 * 2**20  # docs/gate.md: default 16 MiB per array
    for raw, want in (("1", 2**20), ("0", 0), ("0.5", 2**19), (" ", 16 * 2**20)):
        monkeypatch.setenv(BUDGET_ENV, raw)
        assert budget_bytes() == want, raw
    for raw in ("-1", "inf", "nan", "lots"):
        monkeypatch.setenv(BUDGET_ENV, raw)
        with pytest.raises(InvalidInputError, match=BUDGET_ENV):
            budget_bytes()


def test_the_reference_identity_is_stable_and_order_free():
    """A stored identity is compared with one computed by a later genbench: its value must not change (this
    known answer), nor depend on the order of the key's entries; the device and code version are left out."""
    ident = reference_identity(KEY)
    assert ident == KNOWN_IDENTITY and len(ident) == 32
    reordered = {"extractor": {"weights_sha256": "beef", "id": "identity"}, "subset": {"sha256": "f00", "n": 300},
                 "split_sha256": "abc", "split": "test", "dataset": "toy"}
    assert reference_identity(reordered) == ident
    assert reference_identity({**KEY, "subset": {"n": 301, "sha256": "f00"}}) != ident


KNOWN_IDENTITY = "c96432ece233b8eb5e7af99867ab9c3e"


def test_metadata_records_shapes_extractor_and_kind(tmp_path, monkeypatch):
    monkeypatch.delenv(BUDGET_ENV, raising=False)
    real, fake = _x(7, 3, 0), _x(5, 3, 1)
    arts = save_features(tmp_path, "artifacts/j", "toy", "", real, fake, KEY)
    assert arts == [("features", "artifacts/j/features.json")]
    meta = json.loads((tmp_path / arts[0][1]).read_text())
    assert (meta["n_real"], meta["n_fake"], meta["dim"], meta["extractor"]) == (7, 5, 3, "identity")
    assert meta["format"] == 1 and meta["stored"] is True
    got = StoredFeatures(tmp_path, meta).load()
    assert torch.equal(got[0], real) and torch.equal(got[1], fake)
    arts = save_features(tmp_path, "artifacts/j", "toy", "ddim:5", real, fake, KEY)  # a variant's kind
    assert arts == [("features:ddim:5", "artifacts/j/features-ddim:5.json")]


def test_features_that_are_not_matrices_are_not_stored(tmp_path):
    for real, fake in ((_x(7, 3, 0)[:, 0], _x(5, 3, 1)), (_x(7, 3, 0), _x(5, 3, 1)[:, 0])):
        meta = json.loads((tmp_path / save_features(tmp_path, "artifacts/j", "toy", "", real, fake, KEY)[0][1])
                          .read_text())
        assert meta["stored"] is False and meta["why"] == "the features are not (n, d) matrices"


def test_the_budget_applies_to_the_larger_array_and_allows_exactly_its_size(tmp_path, monkeypatch):
    real, fake = _x(128, 8, 0), _x(4, 8, 1)  # float64 (not lossless in float32): 8192 and 256 bytes
    monkeypatch.setenv(BUDGET_ENV, str(8192 / 2**20))  # exactly the larger array
    meta = json.loads((tmp_path / save_features(tmp_path, "artifacts/a", "toy", "", real, fake, KEY)[0][1]).read_text())
    assert meta["stored"] is True
    monkeypatch.setenv(BUDGET_ENV, str(8191 / 2**20))  # one byte less: the real array is over the budget
    meta = json.loads((tmp_path / save_features(tmp_path, "artifacts/b", "toy", "", real, fake, KEY)[0][1]).read_text())
    assert meta["stored"] is False and "over the budget" in meta["why"]


def test_the_shared_reference_file_is_written_once(tmp_path, monkeypatch):
    monkeypatch.delenv(BUDGET_ENV, raising=False)
    real = _x(6, 2, 0)
    save_features(tmp_path, "artifacts/s0", "toy", "", real, _x(4, 2, 1), KEY)
    ref = next((tmp_path / "artifacts/toy").glob("reference-*.npy"))
    before = ref.stat().st_ino
    save_features(tmp_path, "artifacts/s1", "toy", "", real, _x(4, 2, 2), KEY)  # another seed, same reference
    assert ref.stat().st_ino == before  # not rewritten
    save_features(tmp_path, "artifacts/s2", "toy", "", real + 1.0, _x(4, 2, 3), KEY)  # other content: rewritten
    assert ref.stat().st_ino != before


def test_a_pickled_array_is_never_loaded(tmp_path):
    import hashlib
    import io

    buf = io.BytesIO()
    np.save(buf, np.array([[1.0, 2.0]], dtype=object), allow_pickle=True)
    data = buf.getvalue()
    (tmp_path / "x.npy").write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    meta = {"format": 1, "stored": True, "real": "x.npy", "fake": "x.npy", "real_sha256": sha, "fake_sha256": sha}
    with pytest.raises(ValueError, match="allow_pickle"):
        StoredFeatures(tmp_path, meta).load()


def test_unreadable_metadata_is_indexed_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.delenv(BUDGET_ENV, raising=False)
    with ResultsStore(tmp_path, create=True) as st:
        st.begin_run("r", suite_name="t")
        for job, seed in (("toy/m/seed3", 3), ("toy/m/seed0", 0)):
            st.add_job(job, run_id="r", dataset="toy", model="m", family="x", seed=seed, budget="quick", config={})
            st.start_job(job, "r")
            arts = []
            for variant in ("", "ddim-5", "a:b"):  # a variant's kind is "features:<variant>" (a colon kept)
                arts += save_features(tmp_path, f"artifacts/{job.replace('/', '_')}", "toy", variant, _x(6, 2, 0),
                                      _x(4, 2, 1), KEY)
            st.record_job(job, [], arts)
    (tmp_path / "artifacts/toy_m_seed3/features.json").write_text("[1, 2]")  # not an object
    import sqlite3

    with sqlite3.connect(tmp_path / "results.db") as c:  # an artifact row whose job row is gone: NULL seed
        c.execute("INSERT INTO artifacts (job_id, kind, path) VALUES ('gone', 'features', "
                  "'artifacts/toy_m_seed0/features.json')")
    c.close()
    idx = feature_index(tmp_path)  # never raises
    assert set(idx.entries) == {("toy", "m", v, s) for v in ("", "ddim-5", "a:b") for s in (3, 0)} | \
        {("nan", "nan", "", 0)}  # the orphan row: indexed under seed 0, never looked up
    assert "cannot be read (not an object)" in idx.entries[("toy", "m", "", 3)].why_unusable()
    assert idx.entries[("toy", "m", "", 0)].why_unusable() == ""
    meta = {**idx.entries[("toy", "m", "", 0)].meta, "format": 2}
    assert "format 2, this genbench reads 1" in StoredFeatures(tmp_path, meta).why_unusable()
