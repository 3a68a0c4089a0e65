"""Reports from a fixture results store: table values, arrows and bold; summaries; every figure; the HTML in a
real headless browser; older stores; the CLI."""

import base64
import json
import re
import shutil
import math
import sqlite3
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from genbench.cli import main
from genbench.errors import InvalidInputError
from genbench.report import FILE_NAMES, load_run, render, write_report
from genbench.report.figures import pareto_front
from genbench.report.tables import Row, describe_protocol, protocol_lines

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
from report_store import MNIST, RING8, build_fixture, build_old_store  # noqa: E402  (tests/fixtures/report_store.py)

CHROMIUM = shutil.which("chromium") or (Path("/usr/bin/chromium") if Path("/usr/bin/chromium").exists() else None)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = build_fixture(tmp_path_factory.mktemp("run"))
    paths = write_report(d, formats=("md", "html", "latex", "csv"))
    return d, paths


def md_table(md: str, dataset: str) -> tuple[list, dict]:
    """Headers and {model: {header: cell}} of the Markdown table under '## dataset'."""
    sec = md.split(f"## {dataset}", 1)[1]
    block = []
    for ln in sec.splitlines():
        if ln.startswith("|"):
            block.append(ln)
        elif block:
            break
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in block]
    headers, rows = cells[0], cells[2:]
    return headers, {r[0]: dict(zip(headers, r)) for r in rows}


def test_writes_requested_files(run_dir):
    d, paths = run_dir
    for name in FILE_NAMES.values():
        assert d / name in paths and (d / name).stat().st_size > 0


def test_markdown_values_arrows_and_bold(run_dir):
    d, _ = run_dir
    md = (d / "leaderboard.md").read_text()
    headers, rows = md_table(md, "mnist")
    assert headers[:4] == ["model", "FD ↓", "KID ↓", "precision ↑"]
    assert "bits/dim ↓" in headers and "samples/s ↑" in headers and "NFE ↓" in headers and "recall ↑" in headers
    assert list(rows) == ["ddpm", "gan", "vae", "realnvp"]  # best FD first
    # one seed: value ± half the CI width, best (lowest FD) bold
    assert rows["ddpm"]["FD ↓"] == "**12.3 ± 0.45**"
    assert rows["gan"]["FD ↓"] == "20.5 ± 0.7"
    assert rows["vae"]["FD ↓"] == "45 [44, 48]"  # a lopsided CI is shown as the interval, not as ±
    assert rows["gan"]["precision ↑"] == "**0.8**"  # higher is better: the max is bold
    assert rows["ddpm"]["precision ↑"] == "0.7"
    assert rows["realnvp"]["bits/dim ↓"] == "**1.1**" and rows["vae"]["bits/dim ↓"] == "1.5 (bound)"
    assert rows["gan"]["bits/dim ↓"] == "—"  # no likelihood: missing, not zero
    assert rows["vae"]["samples/s ↑"] == "**12,000**" and rows["ddpm"]["NFE ↓"] == "1,000"
    # shares shown as percentages: 0.5 -> 50, best (fewest near copies) bold
    assert rows["vae"]["near copies % ↓"] == "50" and rows["ddpm"]["near copies % ↓"] == "**1**"
    assert rows["gan"]["status"].startswith("1 of 2 seeds failed: RuntimeError: CUDA out of memory")
    for h in headers[1:-1]:  # every metric column has at least one bold cell; single best unless tied
        bold = [m for m, r in rows.items() if r[h].startswith("**")]
        assert bold, h
    assert "Failed: gan (seed 1): `RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB`" in md
    assert "- FD: features classifier:mnist; 1,000 generated vs 1,000 real samples; reference split test" in md
    assert "WARNING" not in md.split("## ring8")[0]  # mnist: one protocol per column (exact vs bound is no mismatch)
    assert "Not measured: gan: no likelihood (GANs define none), so no bits/dim." in md  # plain words, not internals


def test_markdown_seed_aggregation_and_failed_job(run_dir):
    d, _ = run_dir
    md = (d / "leaderboard.md").read_text()
    headers, rows = md_table(md, "ring8")
    assert headers == ["model", "seeds", "modes covered ↑", "high-quality % ↑", "reverse KL ↓", "FD ↓", "bits/dim ↓",
                       "samples/s ↑", "status"]
    # several seeds: mean ± the 95% half-width of the mean (these values have no bootstrap CI, so the seed
    # spread alone): 1.96 * stdev / sqrt(n), the interval compare and recommend judge with
    hw = lambda v: 1.959963984540054 * statistics.stdev(v) / math.sqrt(len(v))  # noqa: E731
    fd = [RING8["gmm"][s][3] for s in (0, 1)]
    expect = f"{statistics.mean(fd):.3g} ± {hw(fd):.2g}"
    assert rows["gmm"]["FD ↓"] == f"**{expect}**" == "**0.011 ± 0.002**"
    assert rows["gmm"]["seeds"] == "2" and rows["vae"]["seeds"] == "1"
    hq = [100 * RING8["gan"][s][1] for s in (0, 1)]
    assert rows["gan"]["high-quality % ↑"] == f"**{statistics.mean(hq):.3g} ± {hw(hq):.2g}**" == "**98.5 ± 0.98**"
    assert rows["gan"]["bits/dim ↓"] == "—"
    # seeds that agree exactly show no ± (spread 0, no CI); large spreads keep two significant digits
    assert rows["gmm"]["modes covered ↑"] == "**8**" and rows["vae"]["modes covered ↑"] == "**8**"
    assert rows["gan"]["samples/s ↑"] == "**500,000**"
    assert rows["gmm"]["samples/s ↑"] == "210,000 ± 20,000"  # 1.96 * 14,142 / sqrt(2) = 19,600
    # the table shows the exception line of the traceback, cut short; the line under the table shows more
    assert rows["ddpm"]["status"] == "failed: RuntimeError: loss became NaN at step 4…"
    assert "Failed: ddpm (seed 0): `RuntimeError: loss became NaN at step 412 (learning rate too high?)`" in md
    assert all(rows["ddpm"][h] == "—" for h in headers[2:-1])
    assert list(rows)[-1] == "ddpm"  # failed models last
    assert ("- WARNING bits/dim: models were scored under different protocols, not comparable: "
            "gmm: 2,500 held-out items; reference split test · vae: 500 held-out items; reference split test") in md


def test_report_and_compare_put_one_interval_on_a_mean_over_seeds(run_dir, tmp_path):
    """One aggregation (issue 16): the leaderboard's ± is the half-width compare and recommend judge with, for
    several seeds (with and without bootstrap CIs) and for one seed (its bootstrap CI)."""
    from genbench.results.compare import aggregate as compare_aggregate
    from genbench.report.data import aggregate as report_aggregate
    from genbench.results.store import ResultsStore

    d, _ = run_dir
    frame = ResultsStore(d).metrics_frame()
    # a two-seed score whose values carry bootstrap CIs: the feature noise, not the seed spread, dominates
    extra = frame[(frame.dataset == "ring8") & (frame.model == "gmm") & (frame.metric == "fd")].copy()
    extra["metric"], extra["ci_low"], extra["ci_high"] = "fd_ci", extra["value"] - 0.01, extra["value"] + 0.01
    frame = pd.concat([frame, extra], ignore_index=True)
    cmp, rep = compare_aggregate(frame), report_aggregate(frame)
    assert len(rep) == len(cmp)
    n_multi = 0
    for key, a in cmp.items():
        cell = rep[tuple(str(k) for k in key[:4])]
        if cell.err is None or not math.isfinite(a.value):
            continue
        assert cell.value == pytest.approx(a.value, rel=1e-12)
        if cell.n_seeds > 1:
            n_multi += 1
            assert cell.err == pytest.approx(a.half_width, rel=1e-12), key
            assert (cell.lo, cell.hi) == pytest.approx((a.value - a.half_width, a.value + a.half_width))
    assert n_multi >= 5
    fd_ci = rep[("ring8", "gmm", "fd_ci", "")]
    assert fd_ci.err == pytest.approx(0.01 / math.sqrt(2))  # 1.96 * (0.01 / 1.96) / sqrt(2): feature noise


def test_report_and_gate_read_a_stored_protocol_the_same_way():
    """One reading of the stored JSON columns: an object as it is, text that is not an object kept under "raw"
    (the report shows what is stored; the gate compares it), nothing at all as {}."""
    from genbench.report.data import aggregate as report_aggregate
    from genbench.results.judge import parse_protocol

    cases = ['{"features": "classifier", "k": 5}', "[1, 2]", "not json", "", {"seed": 3}]
    want = [{"features": "classifier", "k": 5}, {"raw": [1, 2]}, {"raw": "not json"}, {}, {"seed": 3}]
    assert [parse_protocol(c) for c in cases] == want
    frame = pd.DataFrame([{"dataset": "d", "model": f"m{i}", "metric": "fd", "variant": "", "seed": 0, "value": 1.0,
                           "ci_low": float("nan"), "ci_high": float("nan"), "higher_is_better": False, "unit": "",
                           "protocol": c, "extra": c} for i, c in enumerate(cases)])
    cells = report_aggregate(frame)
    assert [cells[("d", f"m{i}", "fd", "")].protocol for i in range(len(cases))] == want
    assert [cells[("d", f"m{i}", "fd", "")].extra for i in range(len(cases))] == want


def test_text_dataset_headline(run_dir):
    d, _ = run_dir
    headers, rows = md_table((d / "leaderboard.md").read_text(), "shakespeare-char")
    assert headers == ["model", "bits/char ↓", "perplexity ↓", "novelty ↑", "distinct-2 ↑", "distinct-4 ↑", "chars/s ↑"]
    assert rows["lstm"]["bits/char ↓"] == "**1.9 ± 0.02**" and rows["ngram"]["chars/s ↑"] == "**50,000**"


def test_latex_html_csv_formats(run_dir):
    d, _ = run_dir
    tex = (d / "leaderboard.tex").read_text()
    assert r"\textbf{12.3 $\pm$ 0.45}" in tex and r"FD $\downarrow$" in tex and r"precision $\uparrow$" in tex
    assert r"\begin{tabular}" in tex and r"shakespeare-char" in tex
    page = (d / "report.html").read_text()
    assert "<b>12.3 ± 0.45</b>" in page and "<th>FD ↓" in page.replace("<th style=\"text-align: left;\">", "<th>")
    csv = pd.read_csv(d / "leaderboard.csv")
    r = csv[(csv.dataset == "mnist") & (csv.model == "ddpm") & (csv.metric == "fd")].iloc[0]
    assert r.value == MNIST["ddpm"][0][0] and r.best and not r.higher_is_better
    assert r.err == pytest.approx((MNIST["ddpm"][0][2] - MNIST["ddpm"][0][1]) / 2)
    assert not csv[(csv.dataset == "mnist") & (csv.model == "gan") & (csv.metric == "fd")].best.item()


def test_summary_sentences(run_dir):
    d, _ = run_dir
    md = (d / "leaderboard.md").read_text()
    summ = md.split("## Summary", 1)[1]
    assert "ddpm leads on FD with 12.3 ± 0.45, ahead of gan (20.5 ± 0.7)" in summ
    # 12,000 / 40 samples/s = 300x
    assert "on speed it is 300× slower than vae (40 vs 12,000 samples/s; rank 4 of 4)" in summ
    assert "ddpm, realnvp and vae tie on classes covered (10 each" in summ
    assert "realnvp leads on bits/dim with 1.1" in summ
    # memorisation is only ever a cost: the fastest model (vae) copies most
    assert "on memorisation it has near copies 50% against 1% for ddpm (rank 4 of 4)" in summ
    assert "leads on near copies" not in summ
    assert "gmm and vae tie on modes covered" in summ
    assert "it has no likelihood number" in summ  # the GAN on ring8


def test_summary_tie_within_ci(tmp_path):
    from genbench.metrics.base import MetricResult
    from genbench.results.store import ResultsStore

    s = ResultsStore(tmp_path, create=True)
    vals = {"a": (10.0, 9.0, 11.0), "b": (10.5, 9.6, 11.4), "c": (20.0, 19.0, 21.0)}
    for m, (v, lo, hi) in vals.items():
        s.add_job(m, run_id="r", dataset="mnist", model=m, family=m, seed=0, budget="q")
        s.record_job(m, [MetricResult("fd", v, "", False, "1", {"features": "x"}, ci_low=lo, ci_high=hi)])
    s.close()
    summ = render(tmp_path, "md").split("## Summary", 1)[1]
    assert "a and b tie on FD (a 10 ± 1, b 10.5 ± 0.9; within their uncertainty)" in summ
    assert "leads on FD" not in summ


def test_every_figure_produced_and_not_blank(run_dir):
    d, paths = run_dir
    figs = {p.name for p in paths if p.suffix == ".png"}
    expected = {f"mnist_{k}.png" for k in ("samples", "quality_speed", "precision_recall", "steps", "modes", "training")}
    expected |= {f"ring8_{k}.png" for k in ("mixture", "quality_speed", "modes", "training")}
    expected |= {"shakespeare-char_quality_speed.png"}
    assert figs == expected
    for name in figs:
        p = d / "figures" / name
        assert p.stat().st_size > 1000
        im = np.asarray(Image.open(p).convert("L"))
        assert im.std() > 5, f"{name} looks blank"


def test_html_is_self_contained(run_dir):
    d, paths = run_dir
    page = (d / "report.html").read_text()
    assert not re.search(r"(src|href)=[\"']https?://", page)
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(imgs) == sum(1 for p in paths if p.suffix == ".png")
    assert all(base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n" for b in imgs)
    assert "<script>" in page and "sortBy" in page
    assert "LSTM: To be, or not to be!" in page  # text previews (JSON) shown as text


def test_pareto_front():
    # (speed, FD): (5, 30) is beaten by (10, 20) on both axes; the rest trade speed for quality
    xs, ys = [1, 10, 5, 100], [10, 20, 30, 50]
    assert pareto_front(xs, ys, x_higher_better=True, y_higher_better=False) == [0, 1, 3]
    # brute force over every pair agrees
    dom = {i for i in range(4) for j in range(4) if xs[j] >= xs[i] and ys[j] <= ys[i] and (xs[j], ys[j]) != (xs[i], ys[i])}
    assert sorted(set(range(4)) - dom) == [0, 1, 3]


def test_describe_protocol_names_the_protocol():
    p = {"features": "inception-v3/clean", "n_fake": 10000, "n_real": 50000, "reference_split": "train", "seed": 0,
         "n_bootstrap": 100, "bootstrap_alpha": 0.05}
    assert describe_protocol(p) == ("features inception-v3/clean; 10,000 generated vs 50,000 real samples; "
                                    "reference split train; 95% bootstrap CI (100 resamples)")
    assert describe_protocol({"timing": True, "device": "cpu", "batch_size": 256, "repeats": 3}) == \
        "timed on cpu, batch 256, median of 3 repeats"
    assert describe_protocol({}) == "protocol not recorded (older store)"


def test_protocol_lines_name_models_run_in_bf16():
    from types import SimpleNamespace as NS

    proto = {"features": "identity", "n_fake": 10, "n_real": 10}
    rows = [Row("ddpm", "diffusion", 1, "", False, {"fd": NS(protocol={**proto, "precision": "bf16-autocast"})}),
            Row("gan", "gan", 1, "", False, {"fd": NS(protocol=dict(proto))})]
    lines = protocol_lines(rows, ["fd"])
    assert "models run in bf16-autocast: ddpm (the others in float32)" in lines
    assert not any("WARNING" in ln for ln in lines)  # a model's precision is not a different metric protocol
    rows[0].cells["fd"].protocol["precision"] = "float32"
    assert not any("bf16" in ln for ln in protocol_lines(rows, ["fd"]))


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/setup.sh installs it as root)")
def test_html_renders_in_headless_chromium(run_dir, tmp_path):
    d, _ = run_dir
    shot = tmp_path / "shot.png"
    base = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}"]
    url = (d / "report.html").resolve().as_uri()
    subprocess.run(base + [f"--screenshot={shot}", "--window-size=1280,2000", url], check=True, timeout=120,
                   capture_output=True)
    im = Image.open(shot).convert("RGB")
    assert im.size == (1280, 2000)
    colours = im.getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 50, "the screenshot is blank"
    # the sorting script ran in the browser: it marks every header as sortable
    dom = subprocess.run(base + ["--dump-dom", url], check=True, timeout=120, capture_output=True, text=True).stdout
    assert dom.count('title="click to sort"') >= 3 * 6
    # clicking headers sorts the rows (numbers with thousands separators and ± parsed as numbers): run the page's
    # own script, click in the browser, and record the row order
    probe = """<script>
      function order() { return Array.from(document.querySelector('.lb table').tBodies[0].rows)
                                  .map(function (r) { return r.cells[0].textContent.trim(); }).join(','); }
      var th = document.querySelector('.lb table').querySelectorAll('th');
      var out = [];
      th[1].click(); out.push(order());   // FD ascending
      th[1].click(); out.push(order());   // FD descending
      Array.from(th).filter(function (h) { return h.textContent.indexOf('samples/s') >= 0; })[0].click();
      out.push(order());                  // samples/s ascending: 40 < 3,000 < 9,000 < 12,000
      document.body.setAttribute('data-orders', out.join('|'));
    </script></body>"""
    page = (d / "report.html").read_text().replace("</body>", probe)
    probe_file = tmp_path / "probe.html"
    probe_file.write_text(page)
    dom = subprocess.run(base + ["--dump-dom", probe_file.as_uri()], check=True, timeout=120, capture_output=True,
                         text=True).stdout
    orders = re.search(r'data-orders="([^"]*)"', dom).group(1).split("|")
    assert orders == ["ddpm,gan,vae,realnvp", "realnvp,vae,gan,ddpm", "ddpm,realnvp,gan,vae"]


def test_old_store_without_schema_version(tmp_path):
    build_old_store(tmp_path)
    data = load_run(tmp_path)
    assert data.schema_version is None
    assert any("without a schema_version" in n for n in data.notes)
    paths = write_report(tmp_path)
    md = (tmp_path / "leaderboard.md").read_text()
    assert "> Note: results store without a schema_version" in md
    assert "lacks variant, unit, protocol, extra, version (protocols are not shown)" in md
    assert "no artifacts table" in md
    headers, rows = md_table(md, "ring8")
    assert rows["gmm"]["FD ↓"] == "**0.02 ± 0.01**" and rows["gan"]["FD ↓"] == "0.3 ± 0.05"
    assert rows["gmm"]["modes covered ↑"] == "**8**"
    assert rows["vae"]["status"] == "failed: ValueError: bad config"
    assert "protocol not recorded (older store)" in md
    assert (tmp_path / "report.html") in paths and "without a schema_version" in (tmp_path / "report.html").read_text()


def test_json_export_alone(tmp_path, run_dir):
    d, _ = run_dir
    only = tmp_path / "jsononly"
    shutil.copytree(d, only, ignore=shutil.ignore_patterns("results.db*", "results.csv", "figures"))
    data = load_run(only)
    assert data.source == "results.json" and data.schema_version == 1
    paths = write_report(only)
    md = (only / "leaderboard.md").read_text()
    assert "read from results.json" in md and "**12.3 ± 0.45**" in md
    assert "Failed: ddpm (seed 0)" in md  # the JSON export carries the job list
    assert (only / "figures" / "mnist_samples.png") in paths  # and the artifacts


def test_csv_only_run_and_newer_schema(tmp_path, run_dir):
    d, _ = run_dir
    only = tmp_path / "csvonly"
    only.mkdir()
    shutil.copy(d / "results.csv", only / "results.csv")
    md = render(only, "md")
    assert "read from results.csv alone" in md and "**12.3 ± 0.45**" in md
    newer = tmp_path / "newer"
    shutil.copytree(d, newer, ignore=shutil.ignore_patterns("*.png", "artifacts"))
    con = sqlite3.connect(newer / "results.db")
    con.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    con.commit()
    con.close()
    with pytest.raises(InvalidInputError, match="newer than this genbench"):
        load_run(newer)


def test_cli(run_dir, tmp_path, capsys):
    d, _ = run_dir
    assert main(["report", str(d), "--format", "md"]) == 0
    assert capsys.readouterr().out.startswith("# Leaderboard")
    out = tmp_path / "board.tex"
    assert main(["report", str(d), "--out", str(out)]) == 0
    assert r"\textbf{12.3 $\pm$ 0.45}" in out.read_text()
    assert main(["report", str(d), "--out", str(tmp_path / "x.weird")]) == 2
    assert "cannot tell the format" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    assert "holds no results.db" in capsys.readouterr().err
