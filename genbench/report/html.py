"""report.html: one self-contained page (figures embedded as base64 PNG, CSS and a small sorting script inline,
nothing fetched from the network) with the summary, the sortable leaderboards, their protocols and the figures."""

from __future__ import annotations

import base64
import html
import json
import math
from datetime import datetime, timezone
from typing import Optional

import numpy as np

from genbench.report.data import RunData
from genbench.report.figures import FigureFile
from genbench.report.table_formats import skipped_lines, to_html_table
from genbench.report.column_ties import tie_lines, tie_note
from genbench.report.tables import SPREAD_NOTE, Leaderboard

_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d1d1f; margin: 0;
       background: #fafafa; }
main { max-width: 1200px; margin: 0 auto; padding: 24px 28px 60px; background: #fff; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 21px; margin-top: 36px; border-bottom: 2px solid #e3e3e3;
  padding-bottom: 4px; } h3 { font-size: 16px; margin: 18px 0 6px; }
.meta { color: #555; font-size: 13px; } .meta code { background: #f1f1f1; padding: 1px 4px; border-radius: 3px; }
.note { background: #fff7e0; border-left: 4px solid #e0a800; padding: 6px 10px; margin: 6px 0; font-size: 14px; }
.lb { overflow-x: auto; margin: 8px 0; }
.lb table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
.lb th { background: #f0f3f7; cursor: pointer; user-select: none; white-space: nowrap; padding: 6px 10px;
  border-bottom: 2px solid #c8d0da; text-align: left; padding: 5px 8px; }
.lb th:hover { background: #e2e8f0; } .lb th.asc::after { content: " \\25B4"; } .lb th.desc::after { content: " \\25BE"; }
.lb td { padding: 4px 8px; border-bottom: 1px solid #eee; white-space: nowrap; }
.lb td:last-child { white-space: normal; min-width: 10em; max-width: 22em; }
.lb tr:hover td { background: #f8fafc; } .lb td b { color: #0b5394; }
.lb tbody.ref td { color: #555; background: #f7f7f4; font-style: italic; }
.lb tr.band td { font-weight: 600; font-style: normal; color: #6b5d00; border-top: 2px solid #d8cf9a; }
.proto { font-size: 13px; color: #444; margin: 4px 0 0 0; padding-left: 18px; }
.proto li.warn { color: #9a5b00; font-weight: 600; }
.failed { color: #b00020; font-size: 13px; margin: 4px 0; } .skipped { color: #666; font-size: 13px; margin: 4px 0; }
.summary li { margin: 3px 0; }
figure { margin: 18px 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 13px; color: #555; }
pre.samples { background: #f6f6f6; padding: 8px; font-size: 12px; white-space: pre-wrap; }
nav a { margin-right: 12px; }
"""

_JS = """
(function () {
  function key(td) {
    var s = td.textContent.replace(/,/g, '').trim();
    var v = parseFloat(s);
    return isNaN(v) ? null : v;
  }
  function sortBy(table, col, th) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var asc = !th.classList.contains('asc');
    table.querySelectorAll('th').forEach(function (h) { h.classList.remove('asc', 'desc'); });
    th.classList.add(asc ? 'asc' : 'desc');
    rows.sort(function (a, b) {
      var x = key(a.cells[col]), y = key(b.cells[col]);
      if (x === null && y === null) {
        var c = a.cells[col].textContent.localeCompare(b.cells[col].textContent);
        return asc ? c : -c;
      }
      if (x === null) return 1;
      if (y === null) return -1;
      return asc ? x - y : y - x;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll('.lb table').forEach(function (table) {
    table.querySelectorAll('th').forEach(function (th, i) {
      th.title = 'click to sort';
      th.addEventListener('click', function () { sortBy(table, i, th); });
    });
  });
})();
"""


def _img(path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="" src="data:image/png;base64,{data}">'


def _run_meta(data: RunData) -> str:
    bits = []
    if len(data.runs):
        r = data.runs.iloc[-1]
        for key, name in (("suite_name", "suite"), ("run_id", "run"), ("git_commit", "commit"), ("device", "device"),
                          ("torch_version", "torch"), ("genbench_version", "genbench")):
            v = r.get(key) if hasattr(r, "get") else None
            if v is not None and not (isinstance(v, float) and math.isnan(v)) and str(v):
                bits.append(f"{name} <code>{html.escape(str(v))}</code>")
        for key in ("started_at", "finished_at"):
            v = r.get(key)
            if isinstance(v, (int, float)) and math.isfinite(v):
                bits.append(f"{key.split('_')[0]} {datetime.fromtimestamp(v, timezone.utc):%Y-%m-%d %H:%M} UTC")
    sv = data.schema_version
    bits.append(f"results schema <code>{'v' + str(sv) if sv is not None else 'unversioned'}</code> "
                f"read from <code>{html.escape(data.source)}</code>")
    return " · ".join(bits)


def _text_samples(data: RunData, dataset: str) -> str:
    """Text previews (JSON list of strings, or an .npz of strings) shown as text."""
    a = data.artifacts
    if a.empty:
        return ""
    rows = a[(a["dataset"] == dataset) & (a["kind"] == "samples_preview")]
    out = []
    for model, g in rows.groupby("model"):
        p = data.dir / str(g.sort_values("seed")["path"].iloc[0])
        try:
            if p.suffix == ".json":
                items = json.loads(p.read_text(encoding="utf-8"))
            else:
                with np.load(p, allow_pickle=False) as z:
                    x = np.asarray(z["x"])
                items = x.reshape(-1).tolist() if x.dtype.kind in "US" else None
        except Exception:  # missing or unreadable: the figures' notes already say so
            continue
        if isinstance(items, list) and items and all(isinstance(t, str) for t in items):
            text = "\n".join(t if len(t) <= 400 else t[:399] + "…" for t in items[:6])
            out.append(f"<h3>{html.escape(str(model))}: samples</h3><pre class='samples'>{html.escape(text)}</pre>")
    return "".join(out)


def render_html(data: RunData, boards: list, summaries: list, figures: list, notes: Optional[list] = None,
                title: str = "genbench report") -> str:
    notes = list(notes or [])
    parts = [
        "<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{html.escape(title)}</h1>", f"<p class='meta'>{_run_meta(data)}</p>",
    ]
    parts += [f"<div class='note'>{html.escape(n)}</div>" for n in notes]
    if boards:
        parts.append("<nav>" + "".join(f"<a href='#ds-{i}'>{html.escape(b.dataset)}</a>" for i, b in enumerate(boards))
                     + "</nav>")
    parts.append("<h2>Summary</h2><div class='summary'>")
    for s in summaries:
        parts.append(f"<h3>{html.escape(s.dataset)}</h3><ul>")
        for t in s.sentences:
            parts.append(f"<li>{_md_bold(html.escape(t))}</li>")
        parts.append("</ul>")
    parts.append("</div>")
    if not boards:
        parts.append("<p>No results recorded yet.</p>")
    for i, lb in enumerate(boards):
        parts.append(_dataset_section(i, lb, data, [f for f in figures if f.dataset == lb.dataset]))
    legend = SPREAD_NOTE + (f" {tie_note(boards)}" if tie_note(boards) else "")
    parts.append(f"<p class='meta'>{html.escape(legend)} Click a column header to sort.</p>")
    parts.append(f"<script>{_JS}</script></main></body></html>")
    return "\n".join(parts)


def _md_bold(s: str) -> str:
    """`**x**` (from the summary's Markdown) -> <b>x</b>."""
    pieces = s.split("**")
    return "".join(p if k % 2 == 0 else f"<b>{p}</b>" for k, p in enumerate(pieces))


def _dataset_section(i: int, lb: Leaderboard, data: RunData, figures: list) -> str:
    head = html.escape(lb.dataset) + (f" <small>({html.escape(lb.modality)})</small>" if lb.modality else "")
    out = [f"<section id='ds-{i}'><h2>{head}</h2>"]
    if lb.rows:
        out.append(f"<div class='lb'>{to_html_table(lb)}</div>")
        out.append("<ul class='proto'>" + "".join(
            f"<li class='warn'>{html.escape(p)}</li>" if p.startswith("WARNING") else f"<li>{html.escape(p)}</li>"
            for p in lb.protocol) + "</ul>")
        ties = tie_lines(lb)
        if ties:
            out.append("<p class='ties'>Ties (paired):</p><ul class='proto'>"
                       + "".join(f"<li>{html.escape(t)}</li>" for t in ties) + "</ul>")
    for model, seed, err in lb.failures:
        out.append(f"<p class='failed'>Failed: {html.escape(model)} (seed {seed}): {html.escape(err)}</p>")
    for sentence, raw in skipped_lines(lb):
        out.append(f"<p class='skipped' title='{html.escape(raw, quote=True)}'>Not measured: {html.escape(sentence)}."
                   "</p>")
    out.append(_text_samples(data, lb.dataset))
    for f in figures:
        out.append(f"<figure>{_img(f.path)}<figcaption><b>{html.escape(f.title)}.</b> {html.escape(f.caption)}"
                   "</figcaption></figure>")
    out.append("</section>")
    return "\n".join(out)


__all__ = ["render_html", "FigureFile"]
