"""`genbench eval` without --out places the samples on the committed reference leaderboard of their dataset, metric
by metric among the models (reference points left out), only when the protocols match."""

import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).parent))
from test_reference_points import PROTO, _store  # noqa: E402  (a store with models and reference points)

from genbench.eval_rank import ordinal, placement_lines, reference_leaderboard  # noqa: E402


def _result(fd: float, proto: dict, dataset: str = "mnist"):
    return SimpleNamespace(dataset=dataset, rows=[
        {"name": "fd", "value": fd, "higher_is_better": False, "protocol": proto},
        {"name": "kid", "value": 0.1, "higher_is_better": False, "protocol": proto},  # not on the leaderboard
    ])


def test_places_samples_among_the_models_only(tmp_path):
    _store(tmp_path / "quick")
    assert reference_leaderboard("mnist", tmp_path) == tmp_path / "quick"
    assert reference_leaderboard("cifar10", tmp_path) is None
    lines = placement_lines(_result(30.0, PROTO), tmp_path)
    assert "reference points gmm, train-copy left out" in lines[0]
    # models: ddpm 12, gan 20, vae 35 (train-copy 2 and gmm 60 are reference points)
    assert lines[1:] == ["  FD 30: would rank 3rd of 4 models (between gan 20 and vae 35)"]
    assert placement_lines(_result(5.0, PROTO), tmp_path)[1].endswith("rank 1st of 4 models (ahead of ddpm 12)")
    assert placement_lines(_result(99.0, PROTO), tmp_path)[1].endswith("rank 4th of 4 models (behind vae 35)")
    assert placement_lines(_result(1.0, PROTO, "cifar10"), tmp_path) == []


def test_other_protocol_is_not_ranked_and_says_why(tmp_path):
    _store(tmp_path / "quick")
    (line,) = placement_lines(_result(30.0, PROTO | {"n_fake": 500, "n_real": 500}), tmp_path)
    assert line.startswith("Not ranked against the committed leaderboard")
    assert "n_fake 500 here vs 1000 on the leaderboard" in line and "give as many samples" in line
    (line,) = placement_lines(_result(30.0, PROTO | {"features": "inception"}), tmp_path)
    assert "features inception here vs classifier:mnist on the leaderboard" in line


def test_ordinals():
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st"]
