"""Run directories are data (docs/security.md): a checkpoint never executes code, and a corrupted cache is
never used: a same-size byte flip in a checkpoint or a real-feature cache is detected, warned about (one line
naming the file), deleted and rebuilt, and the numbers after the rebuild equal the clean ones. (The decoded-data
cache and asset files have the same test next to their other tests: tests/test_data.py
`test_decoded_tensor_cache_is_reused_and_rebuilt_when_corrupt`, tests/test_assets.py
`test_same_size_flip_with_restored_mtime_is_rehashed_warned_and_fetched_again`; baselines: tests/test_eval.py
`test_check_refuses_baseline_factories_without_trust_baseline`.)"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from genbench.data import get_dataset
from genbench.fileio import read_sealed
from genbench.runner import Runner
from genbench.results.store import ResultsStore
from genbench.suite import load_suite
from reference_models import create_model, load_model
from genbench.models.checkpoint import MANIFEST, CheckpointError, UnsafeStateError, write_manifest
from helpers.dummy_suite import RING8_ALL, write_suite



class _Payload:
    """Unpickling this creates `marker` (stands for any code an attacker's checkpoint would run)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _suite(tmp_path: Path, repeats: int) -> Path:
    return write_suite(tmp_path / f"s{repeats}.toml", {"ring8": dict(RING8_ALL)}, {"gmm": {}}, name="sec",
                       speed={"batch_size": 64, "repeats": repeats, "warmup": 0})


def _run(tmp_path: Path, out: Path, repeats: int = 2):
    """Run the tiny suite; a new `repeats` changes the job's settings, so a resumed run redoes the job (and
    loads its checkpoint and feature cache)."""
    return Runner(load_suite(_suite(tmp_path, repeats)), out, device="cpu", quiet=True, log=lambda m: None).run()


def _quality(out: Path) -> dict:
    """Every non-timing metric value of the run."""
    f = ResultsStore(out).metrics_frame()
    f = f[~f["protocol"].map(lambda p: bool(json.loads(p).get("timing")))]
    return {(r.job_id, r.metric, r.variant): (None if pd.isna(r.value) else float(r.value)) for r in f.itertuples()}


def _from_cache(out: Path) -> bool:
    f = ResultsStore(out).metrics_frame().set_index("metric")
    return json.loads(f.loc["train_seconds", "protocol"])["from_checkpoint_cache"]


def _flip_inside(path: Path, t: torch.Tensor) -> None:
    """Flip one bit inside the stored bytes of tensor `t` in `path` (same size): without a digest check, torch
    would load the file with a changed number."""
    raw = t.detach().contiguous().reshape(-1).numpy().tobytes()
    data = bytearray(path.read_bytes())
    at = data.find(raw[:64])
    assert at >= 0 and data.find(raw[:64], at + 1) < 0, "the tensor's bytes are not found once in the file"
    data[at + min(len(raw), 64) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _inject(ckpt: Path, marker: Path, reseal: bool = True) -> None:
    """Put a code-running object in the checkpoint's extra state; `reseal`: also rewrite checksums.json, as an
    attacker who read this code would (so only the weights-only loading stands in the way)."""
    blob = torch.load(ckpt / "weights.pt", map_location="cpu", weights_only=False)  # our own file, in a test
    blob["extra"]["payload"] = _Payload(marker)
    torch.save(blob, ckpt / "weights.pt")
    if reseal:
        write_manifest(ckpt)


def _gmm_checkpoint(tmp_path: Path):
    ds = get_dataset("ring8")
    model = create_model("gmm", ds.info, "smoke")
    model.fit(ds.load("train").x, seed=0)
    return model, model.save(tmp_path / "ckpt")


@pytest.mark.parametrize("reseal", [True, False])
def test_malicious_checkpoint_does_not_execute(tmp_path, capsys, reseal):
    marker = tmp_path / "pwned"
    # 1. load_model on a saved checkpoint with a payload
    _, ckpt = _gmm_checkpoint(tmp_path)
    _inject(ckpt, marker, reseal)
    with pytest.raises(CheckpointError) as ei:
        load_model(ckpt)
    msg = str(ei.value)
    assert str(ckpt / "weights.pt") in msg and "train the model again" in msg
    assert ("never unpickles" in msg and "GLOBAL" in msg) if reseal else "does not match the recorded" in msg
    assert not marker.exists()

    # 2. a resumed run on a run directory whose checkpoint was tampered with
    out = tmp_path / "out"
    assert _run(tmp_path, out).failed == []
    clean = _quality(out)
    (ckpt,) = (out / "checkpoints").iterdir()
    _inject(ckpt, marker, reseal)
    capsys.readouterr()
    s = _run(tmp_path, out, repeats=3)
    err = capsys.readouterr().err
    assert s.done == ["ring8/gmm/seed0"] and s.failed == []
    assert not marker.exists()
    assert [ln for ln in err.splitlines() if "warning" in ln and ckpt.name in ln and "retraining" in ln]
    assert _from_cache(out) is False and _quality(out) == clean  # retrained: the same numbers
    assert load_model(ckpt).sample(10, seed=1).shape == (10, 2)  # the new checkpoint is clean and loads
    assert not marker.exists()


def test_flipped_checkpoint_byte_is_detected_and_retrained(tmp_path, capsys):
    out = tmp_path / "out"
    _run(tmp_path, out)
    clean = _quality(out)
    (ckpt,) = (out / "checkpoints").iterdir()
    # torch's zip reader checks no CRC: a flipped bit in the tensor data would load with other numbers
    means = torch.load(ckpt / "weights.pt", weights_only=True)["extra"]["state"]["means"]
    _flip_inside(ckpt / "weights.pt", means)
    assert not torch.equal(torch.load(ckpt / "weights.pt", weights_only=True)["extra"]["state"]["means"], means)
    with pytest.raises(CheckpointError, match="corrupt: its sha256 .* does not match"):
        load_model(ckpt)
    capsys.readouterr()
    s = _run(tmp_path, out, repeats=3)
    warned = [ln for ln in capsys.readouterr().err.splitlines() if "warning" in ln]
    assert s.done == ["ring8/gmm/seed0"]
    assert len(warned) == 1 and ckpt.name in warned[0] and "corrupt" in warned[0] and "retraining" in warned[0]
    assert _from_cache(out) is False and _quality(out) == clean
    # the rebuilt checkpoint is used from then on
    capsys.readouterr()
    _run(tmp_path, out, repeats=4)
    assert _from_cache(out) is True and _quality(out) == clean and "warning" not in capsys.readouterr().err


def test_checkpoint_without_manifest_is_unverifiable_and_retrained(tmp_path, capsys):
    out = tmp_path / "out"
    _run(tmp_path, out)
    clean = _quality(out)
    (ckpt,) = (out / "checkpoints").iterdir()
    (ckpt / MANIFEST).unlink()  # as written by an older genbench
    with pytest.raises(CheckpointError, match="no checksums.json .* cannot be verified"):
        load_model(ckpt)
    capsys.readouterr()
    _run(tmp_path, out, repeats=3)
    assert "cannot be verified" in capsys.readouterr().err
    assert _from_cache(out) is False and _quality(out) == clean and (ckpt / MANIFEST).exists()


def test_flipped_feature_cache_byte_is_detected_and_recomputed(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GENBENCH_STATS_CACHE", str(tmp_path / "stats"))
    out = tmp_path / "out"
    _run(tmp_path, out)
    clean = _quality(out)
    caches = sorted(p for p in (tmp_path / "stats").glob("*.pt") if not p.name.endswith(".radii.pt"))
    assert caches
    for p in caches:
        payload = read_sealed(p)
        feats = torch.load(io.BytesIO(payload), weights_only=True)["features"]
        _flip_inside(p, feats)  # inside the feature values: the payload alone would still load
        changed = torch.load(io.BytesIO(p.read_bytes()[-len(payload):]), weights_only=True)["features"]
        assert changed.shape == feats.shape and not torch.equal(changed, feats)
    capsys.readouterr()
    _run(tmp_path, out, repeats=3)
    warned = [ln for ln in capsys.readouterr().err.splitlines() if "warning" in ln]
    assert len(warned) == len(caches)
    assert all(any(str(p) in ln and "corrupt" in ln for ln in warned) for p in caches)
    assert _from_cache(out) is True  # the checkpoint was fine
    assert _quality(out) == clean  # features recomputed: the same numbers
    # the rewritten caches are intact and used silently
    capsys.readouterr()
    _run(tmp_path, out, repeats=4)
    assert "warning" not in capsys.readouterr().err and _quality(out) == clean


def test_numpy_state_round_trips_bit_identically_and_objects_are_refused(tmp_path):
    from genbench.models.checkpoint import decode_state, encode_state

    state = {"w": np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32), "s": np.float64(np.pi),
             "i": [np.int64(7), ("text", None, 2.5)], "u": np.array(["ab", "c"]), "e": np.zeros((0, 2)),
             "t": torch.arange(4)}
    back = decode_state(encode_state(state))
    assert back["w"].dtype == np.float32 and back["w"].tobytes() == state["w"].tobytes()
    assert type(back["s"]) is np.float64 and back["s"] == state["s"]
    assert type(back["i"][0]) is np.int64 and back["i"][1] == ("text", None, 2.5)
    assert back["u"].tolist() == ["ab", "c"] and back["e"].shape == (0, 2) and torch.equal(back["t"], state["t"])
    with pytest.raises(UnsafeStateError, match=r"state\['k'\]\[0\] is a .*_Payload.*cannot store as plain data"):
        encode_state({"k": [_Payload(tmp_path / "x")]})
    # a model whose extra state holds an object fails at save time, before anything is written
    model, _ = _gmm_checkpoint(tmp_path)
    model.state_["bad"] = _Payload(tmp_path / "x")
    with pytest.raises(UnsafeStateError, match="model 'gmm' state"):
        model.save(tmp_path / "bad")
    assert not (tmp_path / "bad").exists() and not (tmp_path / "x").exists()
