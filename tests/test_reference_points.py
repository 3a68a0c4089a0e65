"""Reference points (family `baseline`: train-copy, gmm, ...) bound the leaderboard instead of competing on it:
recommend leaves them out unless asked, reports put them in their own band and never let them "lead"."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from genbench.cli import main
from genbench.metrics.base import MetricResult
from genbench.results.recommend import recommend
from genbench.report import render
from genbench.results.store import ResultsStore

TIMING = {"timing": True, "device": "cpu", "batch_size": 64}
PROTO = {"features": "classifier:mnist", "n_fake": 1000, "n_real": 1000}
# model -> (family, FD (value, half CI), precision, recall, samples/s, near-copy share, bits/dim or None)
MODELS = {
    "train-copy": ("baseline", (2.0, 0.5), 0.95, 0.95, 1e6, 0.9, None),
    "gmm": ("baseline", (60.0, 2.0), 0.5, 0.2, 5e5, 0.0, 7.0),
    "gan": ("gan", (20.0, 1.0), 0.7, 0.5, 2e4, 0.0, None),
    "vae": ("vae", (35.0, 1.5), 0.8, 0.3, 8e3, 0.0, 3.5),
    "ddpm": ("diffusion", (12.0, 1.0), 0.85, 0.6, 50.0, 0.0, 4.0),
}


RAW_SKIP = "metric 'bits_per_dim' needs EvalContext field(s) log_prob, which are not set"


def _store(root):
    """The MODELS on mnist; the GAN's job records the runner's raw reason for skipping bits/dim."""
    s = ResultsStore(root, create=True)
    skip = root / "artifacts" / "skipped_metrics.json"
    skip.parent.mkdir(parents=True, exist_ok=True)
    skip.write_text(json.dumps({"bits_per_dim": RAW_SKIP}))
    for model, (family, (fd, hw), p, r, sps, copies, bpd) in MODELS.items():
        jid = f"mnist/{model}/s0"
        s.add_job(jid, run_id="r", dataset="mnist", model=model, family=family, seed=0, budget="q")
        ms = [MetricResult("fd", fd, "", False, "1", PROTO, ci_low=fd - hw, ci_high=fd + hw),
              MetricResult("precision", p, "", True, "1", PROTO | {"k": 3}),
              MetricResult("recall", r, "", True, "1", PROTO | {"k": 3}),
              MetricResult("near_copy_share", copies, "", False, "1", PROTO | {"n_train": 1000}),
              MetricResult("samples_per_s", sps, "samples/s", True, "1", TIMING)]
        if bpd is not None:
            ms.append(MetricResult("bits_per_dim", bpd, "bits/dim", False, "1", {"n_eval": 100}))
        arts = [("skipped_metrics", "artifacts/skipped_metrics.json")] if model == "gan" else []
        s.record_job(jid, ms, artifacts=arts)
    s.export()
    s.close()
    return root


def _frame(root):
    from genbench.results.compare import load_results

    return load_results(root)


def test_recommend_leaves_the_fastest_best_baseline_out_unless_asked(tmp_path):
    f = _frame(_store(tmp_path))
    for task in ("real-time", "high-fidelity"):
        rec = recommend(f, task=task)[0]
        models = [r.model for r in rec.ranked]
        assert "train-copy" not in models and "gmm" not in models
        assert set(rec.references) == {"train-copy", "gmm"}
        assert rec.references["train-copy"] == "memorisation ceiling"
        assert not any(r.model in ("train-copy", "gmm") for r in rec.ranked if r.pareto)
    rec = recommend(f, task="real-time", include_baselines=True)[0]
    assert rec.ranked[0].model == "train-copy"
    assert "reference point (memorisation ceiling), not a model to deploy" in rec.verdict()


def test_recommend_cli_prints_the_verdict_first(tmp_path, capsys):
    d = _store(tmp_path)
    assert main(["recommend", "--results", str(d), "--task", "high-fidelity"]) == 0
    out = capsys.readouterr().out
    verdict = next(ln for ln in out.splitlines() if ln.startswith("**Verdict**"))
    assert verdict.startswith("**Verdict**: use **ddpm** (FD 12")
    assert "Runner-up: " in verdict and "Reference points left out: gmm (classical floor), train-copy" in verdict
    assert out.index("**Verdict**") < out.index("Ranking and reasons:") < out.index("1. **ddpm**")
    assert "**train-copy**" not in out.split("Ranking and reasons:")[1]
    assert main(["recommend", "--results", str(d), "--task", "real-time", "--include-baselines"]) == 0
    assert "use **train-copy**" in capsys.readouterr().out


def _table_rows(md: str, dataset: str) -> list:
    sec = md.split(f"## {dataset}", 1)[1]
    return [ln for ln in sec.split("\n\n", 2)[1].splitlines() if ln.startswith("|")][2:]


def test_report_puts_reference_points_in_their_band_and_out_of_the_leads(tmp_path):
    md = render(_store(tmp_path), "md")
    rows = [r.split("|")[1].strip() for r in _table_rows(md, "mnist")]
    band = rows.index("*reference points: bounds, not ranked*")
    assert rows[:band] == ["ddpm", "gan", "vae"]  # ranked on FD, models only
    assert rows[band + 1:] == ["train-copy (memorisation ceiling, 90% near copies)", "gmm (classical floor)"]
    # bold marks the best *model*: ddpm's FD, not train-copy's
    fd = {r.split("|")[1].strip(): r.split("|")[2].strip() for r in _table_rows(md, "mnist")}
    assert fd["ddpm"].startswith("**12") and not fd["train-copy (memorisation ceiling, 90% near copies)"].startswith("**")
    summ = md.split("## Summary", 1)[1]
    leads = [ln for ln in summ.splitlines() if " leads " in ln or " tie on " in ln]
    assert leads and not any(re.search(r"\b(train-copy|gmm)\b", ln.split(".")[0]) for ln in leads)
    assert "ddpm leads on FD with 12 ± 1, ahead of gan" in summ
    assert "gan leads on samples/s" in summ  # not train-copy, the fastest of all
    assert ("**Against the reference points**: the best model, ddpm, has FD 12 ± 1: 10 worse than the memorisation "
            "ceiling (train-copy, 2 ± 0.5) and 48 better than the classical floor (gmm, 60 ± 2).") in summ


def test_html_band_is_a_separate_tbody_and_skips_keep_the_raw_reason(tmp_path):
    page = render(_store(tmp_path), "html")
    table = page.split("<div class='lb'>", 1)[1].split("</table>", 1)[0]
    first, second = table.split("</tbody>")[:2]
    assert "<td>gan</td>" in first and "train-copy" not in first  # the sorting script only touches the first tbody
    assert "class='band'" in second and "train-copy (memorisation ceiling" in second
    assert "Not measured: gan: no likelihood (GANs define none), so no bits/dim." in page
    assert RAW_SKIP.replace("'", "&#x27;") in page  # the raw reason stays available, in the line's title
    assert "needs EvalContext" not in render(tmp_path, "md")


def test_recommend_without_family_column_ranks_everyone():
    rows = [dict(dataset="d", model=m, seed=0, metric="fd", variant="", value=v, ci_low=None, ci_high=None,
                 unit="", higher_is_better=False, protocol="{}") for m, v in (("a", 1.0), ("b", 2.0))]
    rec = recommend(pd.DataFrame(rows), weights={"quality": 1.0})[0]
    assert [r.model for r in rec.ranked] == ["a", "b"] and not rec.references


CHROMIUM = shutil.which("chromium") or (Path("/usr/bin/chromium") if Path("/usr/bin/chromium").exists() else None)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/setup.sh installs it as root)")
def test_band_survives_sorting_in_headless_chromium(tmp_path):
    """The page's own sorting script, run in a real browser, reorders the models and leaves the band below them;
    a screenshot of the page is not blank."""
    render_dir = _store(tmp_path / "run")
    page = render(render_dir, "html")
    probe = """<script>
      var t = document.querySelector('.lb table'), th = t.querySelectorAll('th');
      function order() { return Array.from(t.rows).map(function (r) { return r.cells[0].textContent.trim()
                                                                       .split(' ')[0]; }).join(','); }
      th[1].click(); th[1].click();   // FD descending
      document.body.setAttribute('data-order', order());
    </script></body>"""
    f = tmp_path / "probe.html"
    f.write_text(page.replace("</body>", probe))
    base = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(base + ["--dump-dom", f.as_uri()], check=True, timeout=120, capture_output=True,
                         text=True).stdout
    order = re.search(r'data-order="([^"]*)"', dom).group(1).split(",")
    assert order == ["model", "vae", "gan", "ddpm", "reference", "train-copy", "gmm"]
    shot = tmp_path / "shot.png"
    subprocess.run(base + [f"--screenshot={shot}", "--window-size=1280,900", f.as_uri()], check=True, timeout=120,
                   capture_output=True)
    from PIL import Image

    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 50, "the screenshot is blank"


def test_summary_of_a_dataset_with_only_reference_points(tmp_path):
    s = ResultsStore(tmp_path, create=True)
    for model, fd in (("train-copy", 2.0), ("gmm", 60.0)):
        s.add_job(model, run_id="r", dataset="mnist", model=model, family="baseline", seed=0, budget="q")
        s.record_job(model, [MetricResult("fd", fd, "", False, "1", PROTO)])
    s.close()
    summ = render(tmp_path, "md").split("## Summary", 1)[1]
    assert "Only reference points (gmm, train-copy) were scored here" in summ and " leads " not in summ
