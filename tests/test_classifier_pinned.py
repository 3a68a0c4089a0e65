"""Pinned instruments (issue: numbers that hold on any machine): the classifier:<dataset> networks ship with
genbench, are verified by the sha256 of their weights, and that hash is the protocol id. A network built here
instead is marked unpinned, is built once under a lock, and never passes for the shipped one."""

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from genbench.errors import GenbenchError
from genbench.features import classifier as C
from genbench.features import get_extractor

GOLDEN = json.loads((Path(__file__).parent / "fixtures" / "classifier_golden.json").read_text())


def _test_images(dataset, rows):
    from genbench.data import get_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the offline MNIST-subset notice
        return get_dataset(dataset).load("test").x[rows]


@pytest.mark.parametrize("dataset", sorted(GOLDEN))
def test_shipped_classifier_features_equal_the_golden_slice(dataset):
    g = GOLDEN[dataset]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ext = get_extractor(f"classifier:{dataset}", verbose=False)
    if ext.data_variant != g["data_variant"]:
        pytest.skip(f"{dataset} here is the {ext.data_variant!r} variant; the golden slice is for {g['data_variant']!r}")
    assert ext.shipped is not None and ext.pinned and ext.protocol["pinned"] is True
    assert ext.protocol["id"] == g["id"] == f"classifier:{dataset}/{g['weights_sha256'][:12]}"
    assert ext.weights_sha256 == g["weights_sha256"] == ext.protocol["weights_sha256"]
    f = ext.extract(_test_images(dataset, g["test_rows"]))[:, g["dims"]]
    want = torch.tensor(g["features"], dtype=torch.float64)
    assert torch.allclose(f, want, rtol=1e-6, atol=1e-6), (f - want).abs().max()


def test_every_shipped_file_matches_its_manifest_hash():
    man = C.shipped_manifest()
    assert {"digits", "fashion-mnist", "mnist"} <= set(man)
    for dataset, entries in man.items():
        for e in entries:
            sd, meta = C._state_from_bytes((C.WEIGHTS_DIR / e["file"]).read_bytes())
            assert C.weights_digest(sd) == e["weights_sha256"] == meta["weights_sha256"], e["file"]
            assert 0.9 < e["test_accuracy"] <= 1.0 and e["built"]["command"].startswith("genbench assets build")


def _copy_weights(tmp_path, monkeypatch):
    wd = tmp_path / "weights"
    shutil.copytree(C.WEIGHTS_DIR, wd)
    monkeypatch.setattr(C, "WEIGHTS_DIR", wd)
    monkeypatch.setattr(C, "MANIFEST", wd / "classifiers.json")
    return wd


def test_a_flipped_weight_byte_is_refused(tmp_path, monkeypatch):
    wd = _copy_weights(tmp_path, monkeypatch)
    entry = C.shipped_manifest()["digits"][0]
    f = wd / entry["file"]
    raw = bytearray(f.read_bytes())
    sd, _ = C._state_from_bytes(bytes(raw))
    # flip one byte inside the fc weight tensor's data (the file stores it verbatim)
    needle = sd["fc.weight"].flatten()[100:104].numpy().tobytes()
    pos = bytes(raw).find(needle)
    assert pos > 0
    raw[pos] ^= 0x10
    f.write_bytes(bytes(raw))
    with pytest.raises(GenbenchError, match="reinstall genbench"):
        get_extractor("classifier:digits", verbose=False)


def test_the_protocol_id_changes_when_a_weight_byte_changes(tmp_path, monkeypatch):
    """Re-pin the digits entry to weights with one byte changed: the instrument's id changes with it."""
    wd = _copy_weights(tmp_path, monkeypatch)
    before = get_extractor("classifier:digits", verbose=False)
    man = json.loads((wd / "classifiers.json").read_text())
    entry = man["classifiers"]["digits"][0]
    sd, meta = C._state_from_bytes((wd / entry["file"]).read_bytes())
    w = sd["out.bias"].clone()
    b = bytearray(w.numpy().tobytes())
    b[0] ^= 0x01
    sd["out.bias"] = torch.frombuffer(b, dtype=torch.float32).clone()
    model = C.SmallCNN(1, 8, 8, 10)
    model.load_state_dict(sd)
    (wd / entry["file"]).write_bytes(C._state_to_bytes(model, meta))
    entry["weights_sha256"] = C.weights_digest(sd)
    (wd / "classifiers.json").write_text(json.dumps(man))
    after = get_extractor("classifier:digits", verbose=False)
    assert after.pinned and before.pinned
    assert after.protocol["id"] != before.protocol["id"]
    assert after.protocol["id"] == f"classifier:digits/{entry['weights_sha256'][:12]}"


def test_a_local_build_is_unpinned_unless_it_reproduces_the_shipped_weights(tmp_path):
    other_seed = get_extractor("classifier:digits", cache_dir=tmp_path, seed=1, verbose=False)
    assert other_seed.shipped is None and other_seed.protocol["pinned"] is False
    assert other_seed.protocol["weights_source"] == "built here"
    shipped = get_extractor("classifier:digits", verbose=False)
    assert other_seed.protocol["id"] != shipped.protocol["id"]
    built = get_extractor("classifier:digits", cache_dir=tmp_path, verbose=False, weights="build")
    assert built.protocol["pinned"] == (built.weights_sha256 == shipped.weights_sha256)
    assert built.protocol["id"] == f"classifier:digits/{built.weights_sha256[:12]}"


def test_unpinned_features_are_flagged_in_the_metric_protocol():
    from genbench.metrics.context import EvalContext
    from genbench.pipeline.scoring import feature_protocol as _feature_protocol

    class UserNet(C.FeatureExtractor):  # a user's extractor that says nothing about its weights
        name, dim = "user-net", 2

        @property
        def protocol(self):
            return {"id": "user-net"}

        def _prepare(self, s):
            return s

        def forward_batch(self, x):
            return x

    fp = _feature_protocol(UserNet())
    assert fp["pinned"] is False
    assert EvalContext(feature_protocol=fp).base_protocol()["features_pinned"] is False
    assert "features_pinned" not in EvalContext(feature_protocol=_feature_protocol(
        get_extractor("identity"))).base_protocol()
    from genbench.report.tables import describe_protocol

    assert "UNPINNED" in describe_protocol({"features": "user-net", "features_pinned": False})


def test_concurrent_builds_train_once(tmp_path):
    """Two processes ask for the same not-yet-built classifier at once: one trains, the other waits on the
    lock and loads the result."""
    code = ("import sys; from genbench.features import get_extractor; "
            "e = get_extractor('classifier:digits', cache_dir=sys.argv[1], seed=3, verbose=True, weights='build'); "
            "print('CACHED' if e.loaded_from_cache else 'TRAINED', e.weights_sha256)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    words = sorted(o[0].split()[0] for o in outs)
    assert words == ["CACHED", "TRAINED"], outs
    assert outs[0][0].split()[1] == outs[1][0].split()[1]
    assert sum(o[1].count("saved classifier:digits") for o in outs) == 1


def test_assets_build_reports_against_the_shipped_weights(tmp_path, monkeypatch, capsys):
    from genbench.cli import main

    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path))
    assert main(["assets", "build", "classifier:digits"]) == 0
    out = capsys.readouterr().out
    shipped = C.shipped_manifest()["digits"][0]
    assert "classifier:digits built here" in out
    assert ("identical to the shipped weights" in out) or (f"differs from the shipped weights "
                                                           f"{shipped['weights_sha256'][:12]}" in out)
    assert main(["assets", "build", "inception"]) == 2
    assert main(["assets", "build", "classifier:ring8"]) == 2


@pytest.mark.slow
def test_fashion_mnist_rebuild_reproduces_the_shipped_accuracy(tmp_path):
    from genbench.features.classifier_build import build

    res = build("fashion-mnist", cache_dir=tmp_path, verbose=False)
    print(res.summary())
    assert res.shipped is not None and res.within_margin


def test_a_flipped_byte_in_a_built_classifier_cache_is_detected_and_rebuilt(tmp_path):
    """Issue 15: a same-size byte flip in a locally built classifier's cache used to load silently (PyTorch's
    zip reader checks no CRC). The cache is sealed with its sha256: the flip is caught, the file deleted and the
    network trained again, bit-identical to the clean build."""
    clean = get_extractor("classifier:digits", cache_dir=tmp_path, seed=2, verbose=False, weights="build")
    raw = bytearray(clean.cache_path.read_bytes())
    raw[len(raw) // 2] ^= 0x04
    clean.cache_path.write_bytes(bytes(raw))
    with pytest.warns(RuntimeWarning, match="unusable.*CorruptFileError"):
        again = get_extractor("classifier:digits", cache_dir=tmp_path, seed=2, verbose=False, weights="build")
    assert not again.loaded_from_cache and again.weights_sha256 == clean.weights_sha256
    assert get_extractor("classifier:digits", cache_dir=tmp_path, seed=2, verbose=False,
                         weights="build").loaded_from_cache
