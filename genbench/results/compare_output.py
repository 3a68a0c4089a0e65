"""What `genbench compare` / `check` print: a verdict a person can act on (Markdown), and JUnit XML for CI.

The Markdown starts with the verdict and the two environments, then one paragraph per flagged score (the change
and its 95% interval, the noise it was judged against and what that noise is made of, whether the machines
differ), then the full table. Timing figures measured on different hardware are listed as not compared.
"""

from __future__ import annotations

import math
from typing import Optional

_FLAGGED = ("regressed",)


def _fmt(v: Optional[float], signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:+.4g}" if signed else f"{v:.4g}"


def _name(r) -> str:
    return f"{r.dataset}/{r.model} {r.metric}" + (f" [{r.variant}]" if r.variant else "")


def verdict_line(cmp) -> str:
    if cmp.problems:
        return f"NOT COMPARABLE (exit 2): {len(cmp.problems)} score(s) were measured under different protocols."
    n = len(cmp.regressions)
    if n:
        return f"REGRESSION (exit 1): {n} score(s) got worse beyond tolerance and noise."
    return "no regression (exit 0)."


def _environment_lines(cmp) -> list[str]:
    env = cmp.env or {}
    if not env:
        return []
    lines = [f"- baseline measured on: {env.get('baseline', 'unknown')}", f"- new measured on: {env.get('new', 'unknown')}"]
    not_compared = [r for r in cmp.rows if r.verdict == "not compared"]
    if env.get("differs"):
        lines.append(f"- the environments differ: training noise from the seed spread covers it for quality scores; "
                     f"{len(not_compared)} timing figure(s) not compared")
    return lines


def explain(r) -> str:
    """One flagged score, in words: change, interval, noise and its make-up, environment."""
    better = "higher" if r.higher_is_better else "lower"
    s = f"**{_name(r)}** ({better} is better): {_fmt(r.baseline)} -> {_fmt(r.new)}, change {_fmt(r.delta, True)}"
    if r.ci is not None:
        s += f" (95% CI {_fmt(r.ci[0], True)} .. {_fmt(r.ci[1], True)})"
    s += f"; seeds {r.seeds[0]} baseline / {r.seeds[1]} new. {r.detail}."
    return s


def to_markdown(cmp) -> str:
    from tabulate import tabulate

    lines = [f"**Verdict: {verdict_line(cmp)}**", ""]
    env = _environment_lines(cmp)
    if env:
        lines += env + [""]
    if cmp.problems:
        lines.append("**Not comparable** (exit 2):\n")
        lines += [f"- {p}" for p in cmp.problems]
        lines.append("")
    for note in cmp.notes:
        lines += [f"Note: {note}", ""]
    flagged = [r for r in cmp.rows if r.verdict in _FLAGGED]
    if flagged:
        lines.append("Regressions:\n")
        lines += [f"- {explain(r)}" for r in flagged]
        lines.append("")
    count = {v: sum(r.verdict == v for r in cmp.rows) for v in
             ("regressed", "improved", "unchanged", "within noise", "not compared", "new", "missing")}
    lines.append(f"{len(cmp.rows)} scores: {count['regressed']} regressed, {count['improved']} improved, "
                 f"{count['unchanged'] + count['within noise']} unchanged or within noise, {count['not compared']} not "
                 f"compared (timing on other hardware), {count['new']} new, {count['missing']} missing. Noise model: "
                 f"sampling (paired bootstrap where both runs stored features, else the stored bootstrap intervals) + training "
                 f"(seed spread; calibration: {cmp.calibration or 'none'}); "
                 f"family-wise alpha {cmp.alpha:g}.\n")
    table = [
        [r.dataset, r.model, r.metric + (f" [{r.variant}]" if r.variant else ""), "↑" if r.higher_is_better else "↓",
         _fmt(r.baseline), _fmt(r.new), _fmt(r.delta, signed=True),
         f"{_fmt(r.ci[0], True)} .. {_fmt(r.ci[1], True)}" if r.ci else "—", _fmt(r.noise) if r.noise else "—",
         r.noise_source or "—", r.tolerance, f"**{r.verdict}**" if r.verdict == "regressed" else r.verdict]
        for r in sorted(cmp.rows, key=lambda r: (r.verdict != "regressed", r.verdict == "not compared", r.dataset,
                                                 r.model, r.metric, r.variant))
    ]
    headers = ["dataset", "model", "metric", "better", "baseline", "new", "change", "95% CI of change", "noise (se)",
               "noise from", "tolerance", "verdict"]
    lines.append(tabulate(table, headers=headers, tablefmt="github", disable_numparse=True))
    return "\n".join(lines) + "\n"


def to_junit(cmp, suite_name: str = "genbench.results.compare") -> str:
    import xml.etree.ElementTree as ET

    suite = ET.Element("testsuite", name=suite_name)
    failures = 0
    for p in cmp.problems:
        tc = ET.SubElement(suite, "testcase", classname="comparability", name=p.split(":")[0])
        ET.SubElement(tc, "error", message="not comparable").text = p
    for r in cmp.rows:
        name = f"{r.metric}[{r.variant}]" if r.variant else r.metric
        tc = ET.SubElement(suite, "testcase", classname=f"{r.dataset}.{r.model}", name=name)
        if r.verdict == "regressed":
            failures += 1
            ET.SubElement(tc, "failure", message=f"{name} regressed: {_fmt(r.baseline)} -> {_fmt(r.new)}").text = explain(r)
        elif r.verdict in ("new", "missing", "not compared"):
            ET.SubElement(tc, "skipped", message=f"{r.verdict} {r.detail}".strip())
        else:
            ET.SubElement(tc, "system-out").text = f"{r.verdict}: {_fmt(r.baseline)} -> {_fmt(r.new)}; {r.detail}"
    suite.set("tests", str(len(cmp.rows) + len(cmp.problems)))
    suite.set("failures", str(failures))
    suite.set("errors", str(len(cmp.problems)))
    suite.set("skipped", str(sum(r.verdict in ("new", "missing", "not compared") for r in cmp.rows)))
    return ET.tostring(suite, encoding="unicode", xml_declaration=True)
