"""`genbench eval --class-folders`: conditional samples laid out as DIR/<class>/*.png get each image's label from its
folder and the conditional scores (checked against a direct count with the pinned classifier and an independent
intra-class FD), the items are interleaved over the classes, and bad layouts are refused with a message naming
the path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genbench.errors import InvalidInputError

pytestmark = pytest.mark.usefixtures("one_thread")


def _write(d, x: torch.Tensor, y: torch.Tensor, per_class: int):
    from PIL import Image

    for c in range(10):
        idx = torch.nonzero(y == c).reshape(-1)[:per_class]
        (d / str(c)).mkdir(parents=True, exist_ok=True)
        for j, i in enumerate(idx.tolist()):
            Image.fromarray((x[i, 0].numpy() * 255).round().astype(np.uint8), mode="L").save(d / str(c) / f"{j:03d}.png")
    return d


@pytest.fixture(scope="module")
def digits_test():
    from genbench.data import get_dataset

    return get_dataset("digits").load("test")


def test_loader_reads_labels_from_folders_round_robin(tmp_path, digits_test):
    from genbench.data import load_user_data

    d = _write(tmp_path / "s", digits_test.x, digits_test.y, 3)
    (d / "4" / "003.png").write_bytes((d / "4" / "000.png").read_bytes())  # class 4 has one more
    data = load_user_data(d, class_folders=True, num_classes=10)
    assert data.y.tolist() == list(range(10)) * 3 + [4]
    first_of_7 = torch.nonzero(digits_test.y == 7).reshape(-1)[0]
    assert torch.equal(data.x[7], digits_test.x[first_of_7])  # item 7: the first image of class 7
    assert data.meta["variant"] == "class-folders" and data.meta["per_class"]["4"] == 4
    assert load_user_data(d).y is None  # without class_folders: a plain recursive image folder, no labels


def test_eval_class_folders_scores_conditional_metrics(tmp_path, digits_test):
    from genbench.evaluate import evaluate_samples
    from genbench.features import get_extractor
    from genbench.metrics import intra_class_fd
    from genbench.pipeline.scorers import _subset_index

    d = _write(tmp_path / "s", digits_test.x, digits_test.y, 12)  # 120 images, under the protocol's n_samples
    r = evaluate_samples(d, "digits", class_folders=True, metrics=["conditional_accuracy", "intra_fd"])
    vals = {row["name"]: row["value"] for row in r.rows}
    assert r.n_samples == 120
    idx = torch.cat([torch.nonzero(digits_test.y == c).reshape(-1)[:12] for c in range(10)])
    x, y = digits_test.x[idx], digits_test.y[idx]
    clf = get_extractor("classifier:digits")
    assert vals["conditional_accuracy"] == float((clf.predict(x) == y).double().mean())
    ref = _subset_index(len(digits_test.x), 120)
    ref = torch.arange(len(digits_test.x)) if ref is None else ref
    fx = get_extractor(r.protocol.spec.features)
    want = intra_class_fd(fx.extract(digits_test.x[ref]), digits_test.y[ref], fx.extract(x), y)["fd"]
    assert vals["intra_fd"] == pytest.approx(want, rel=1e-9)
    assert r.rows[0]["protocol"]["conditions"] == "given with the samples"
    # the protocol's metrics gain the conditional ones when no metrics are named
    r = evaluate_samples(d, "digits", class_folders=True)
    assert {"conditional_accuracy", "intra_fd", "intra_recall", "intra_coverage"} <= {row["name"] for row in r.rows}


def test_bad_layouts_are_clear_errors(tmp_path, digits_test):
    from genbench.evaluate import evaluate_samples

    def fresh(name):
        return _write(tmp_path / name, digits_test.x, digits_test.y, 2)

    d = fresh("loose")
    (d / "x.png").write_bytes((d / "0" / "000.png").read_bytes())
    with pytest.raises(InvalidInputError, match=r"x\.png: an image directly in the samples folder.*<class>/\*\.png"):
        evaluate_samples(d, "digits", class_folders=True)
    d = fresh("badname")
    (d / "0").rename(d / "shoe")
    with pytest.raises(InvalidInputError, match=r"folder name 'shoe' is not a class label of the dataset \(0\.\.9\)"):
        evaluate_samples(d, "digits", class_folders=True)
    d = fresh("toobig")
    (d / "0").rename(d / "10")
    with pytest.raises(InvalidInputError, match="folder name '10' is not a class label"):
        evaluate_samples(d, "digits", class_folders=True)
    d = fresh("twice")
    (d / "3").rename(d / "03")
    (d / "3").mkdir()
    (d / "3" / "a.png").write_bytes((d / "03" / "000.png").read_bytes())
    with pytest.raises(InvalidInputError, match="two folders for class 3"):
        evaluate_samples(d, "digits", class_folders=True)
    d = fresh("deep")
    (d / "2" / "more").mkdir()
    (d / "2" / "000.png").rename(d / "2" / "more" / "000.png")
    with pytest.raises(InvalidInputError, match=r"more/000\.png: an image below a class folder's subfolder"):
        evaluate_samples(d, "digits", class_folders=True)
    d = fresh("empty")
    for f in (d / "5").iterdir():
        f.unlink()
    with pytest.raises(InvalidInputError, match=r"5: class folder with no \.png/\.jpg/\.jpeg images"):
        evaluate_samples(d, "digits", class_folders=True)
    with pytest.raises(InvalidInputError, match="no class subfolders"):
        (tmp_path / "none").mkdir()
        evaluate_samples(tmp_path / "none", "digits", class_folders=True)
    np.savez(tmp_path / "s.npz", x=np.zeros((4, 1, 8, 8), np.uint8))
    with pytest.raises(InvalidInputError, match="class folders need a folder"):
        evaluate_samples(tmp_path / "s.npz", "digits", class_folders=True)
    with pytest.raises(InvalidInputError, match="--class-folders: dataset 'ring8' has no class labels"):
        evaluate_samples(fresh("pts"), "ring8", class_folders=True)


def test_cli_help_and_flag(tmp_path, digits_test, capsys):
    from genbench.cli import main

    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    assert "--class-folders" in capsys.readouterr().out
    d = _write(tmp_path / "s", digits_test.x, digits_test.y, 12)
    assert main(["eval", "--samples", str(d), "--dataset", "digits", "--class-folders", "--metrics",
                 "conditional_accuracy", "--quiet"]) == 0
    assert "cond" in capsys.readouterr().out
