"""The leaderboard tables rendered (genbench/report/tables.py builds them): GitHub Markdown, LaTeX and HTML through
tabulate, and a plain numeric CSV. Every rendering carries the arrows, the bold best values, the reference-points
band and the protocol lines under each table.
"""

from __future__ import annotations

import html as _html
import io
from typing import Optional

import pandas as pd
from tabulate import tabulate

from genbench.report.headline import label
from genbench.report.words import grouped

from genbench.report.column_ties import tie_lines, tie_note
from genbench.report.tables import BAND, DOWN, SPREAD_NOTE, UP, Leaderboard, Row, _headers, _row_cells


def to_markdown(boards: list, notes: Optional[list] = None, title: str = "Leaderboard") -> str:
    esc = _md_escape
    out = [f"# {title}", ""]
    for n in notes or []:
        out += [f"> Note: {n}", ""]
    if not boards:
        out += ["No results recorded yet.", ""]
    for lb in boards:
        out += [f"## {lb.dataset}" + (f" ({lb.modality})" if lb.modality else ""), ""]
        if not lb.columns and not lb.rows:
            out += ["No metrics recorded.", ""]
            continue
        rows = _with_band(lb, [_row_cells(lb, r, lambda s: f"**{s}**", esc) for r in lb.rows], f"*{BAND}*")
        out.append(tabulate(rows, headers=_headers(lb), tablefmt="github", disable_numparse=True))
        out.append("")
        if lb.protocol:
            out.append("Protocol:")
            out += [f"- {esc(p)}" for p in lb.protocol]
            out.append("")
        ties = tie_lines(lb)
        if len(ties) == 1 and lb.tie_note.startswith("unavailable"):
            out += [esc(ties[0]), ""]
        elif ties:
            out.append("Ties (paired):")
            out += [f"- {esc(t)}" for t in ties]
            out.append("")
        for model, seed, err in lb.failures:
            out.append(f"Failed: {esc(model)} (seed {seed}): `{err.replace('`', chr(39))}`  ")
        if lb.failures:
            out.append("")
        for sentence, _raw in skipped_lines(lb):
            out.append(f"Not measured: {esc(sentence)}.  ")
        if lb.skipped:
            out.append("")
    if boards:
        out += [f"_{SPREAD_NOTE}_", ""]
        if tie_note(boards):
            out += [f"_{tie_note(boards)}_", ""]
    return "\n".join(out)


def _with_band(lb: Leaderboard, rows: list, band: str) -> list:
    """The table rows with the reference points' band row inserted above them (rows as `lb.rows`: models first)."""
    n_ref = sum(1 for r in lb.rows if r.reference)
    if n_ref:
        rows.insert(len(rows) - n_ref, [band] + [""] * (len(rows[0]) - 1))
    return rows


def _md_escape(s: str) -> str:
    return str(s).replace("|", "\\|")


def to_latex(boards: list, notes: Optional[list] = None) -> str:
    esc = latex_escape
    out = ["% genbench leaderboard (needs no package beyond LaTeX itself)"]
    for n in notes or []:
        out.append(f"% Note: {n}")
    for lb in boards:
        if not lb.rows:
            continue
        rows = _with_band(lb, [_row_cells(lb, r, lambda s: f"\\textbf{{{s}}}", esc) for r in lb.rows],
                          f"\\textit{{{esc(BAND)}}}")
        heads = [_latex_header(h) for h in _headers(lb, esc)]
        out += ["\\begin{table}[ht]", "\\centering", "\\small",
                tabulate(rows, headers=heads, tablefmt="latex_raw", disable_numparse=True),
                f"\\caption{{{esc(lb.dataset)}. " + esc(" ".join(p + "." for p in lb.protocol)) + "}",
                "\\end{table}", ""]
    return "\n".join(out)


def _latex_header(h: str) -> str:
    return h.replace(UP, "$\\uparrow$").replace(DOWN, "$\\downarrow$")


def latex_escape(s: str) -> str:
    rep = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
           "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "—": "--",
           "∞": r"$\infty$", "…": r"\dots{}", "≈": r"$\approx$"}
    return "".join(rep.get(ch, ch) for ch in str(s))


def skipped_lines(lb: Leaderboard) -> list[tuple[str, str]]:
    """The board's skipped metrics as (plain sentence, raw reasons), by each model's family."""
    return grouped(lb.skipped, {r.model: r.family for r in lb.rows})


def to_html_table(lb: Leaderboard) -> str:
    """One leaderboard as an HTML table, sortable by the report's script (which sorts the first <tbody>, the ranked
    models); the reference points sit in a second <tbody> under a band row, so sorting never mixes them in."""
    def tr(r: Row) -> str:
        cells = _row_cells(lb, r, lambda s: f"<b>{s}</b>", _html.escape)
        return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"

    heads = _headers(lb, _html.escape)
    out = ["<table>", "<thead>", "<tr>" + "".join(f"<th>{h}</th>" for h in heads) + "</tr>", "</thead>", "<tbody>"]
    out += [tr(r) for r in lb.rows if not r.reference]
    out.append("</tbody>")
    refs = [r for r in lb.rows if r.reference]
    if refs:
        out += ["<tbody class='ref'>", f"<tr class='band'><td colspan='{len(heads)}'>{_html.escape(BAND)}</td></tr>"]
        out += [tr(r) for r in refs] + ["</tbody>"]
    return "\n".join(out + ["</table>"])


def to_csv(boards: list) -> str:
    """Numbers behind the tables: one line per (dataset, model, headline metric)."""
    recs = []
    for lb in boards:
        for r in lb.rows:
            for c in lb.columns:
                cell = r.cells.get(c)
                recs.append({
                    "dataset": lb.dataset, "model": r.model, "family": r.family, "metric": c, "label": label(c),
                    "value": None if cell is None else cell.value,
                    "err": None if cell is None else cell.err,
                    "low": None if cell is None else cell.lo, "high": None if cell is None else cell.hi,
                    "seeds": r.n_seeds, "higher_is_better": lb.directions[c],
                    "unit": "" if cell is None else cell.unit, "best": r.model in lb.best[c],
                    "status": r.status or "ok", "reference": r.reference,
                })
    buf = io.StringIO()
    cols = ["dataset", "model", "family", "metric", "label", "value", "err", "low", "high", "seeds",
            "higher_is_better", "unit", "best", "status", "reference"]
    pd.DataFrame(recs, columns=cols).to_csv(buf, index=False)
    return buf.getvalue()
