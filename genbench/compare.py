"""Regression checks between two result sets (`genbench compare BASELINE NEW`).

For every (dataset, model, metric, variant) present in either set: the change, whether it is beyond noise and
beyond the metric's tolerance, and a verdict. Noise comes from the numbers themselves: the confidence
intervals the metric engine stored (bootstrap over features) or, with several seeds, the spread over seeds —
never a bare percentage. A change is a *regression* only when it goes the wrong way by more than both the
noise and the tolerance. Timing metrics (protocol `"timing": true`) have no CI; they use the tolerance alone.

Exit codes (a contract for CI): 0 no regression, 1 at least one regression, 2 the two sets are not comparable
(a different protocol, dataset or sample count), with the reason.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd

from genbench.errors import InvalidInputError

EXIT_OK, EXIT_REGRESSION, EXIT_NOT_COMPARABLE = 0, 1, 2
DEFAULT_TOLERANCES = Path(__file__).with_name("tolerances.toml")
KEY = ["dataset", "model", "metric", "variant"]
# Protocol entries that legitimately differ between two runs of the same protocol.
_VOLATILE_PROTOCOL_KEYS = {"seed", "timing", "device", "batch_size", "repeats", "warmup"}
# Protocol entries that make two numbers incomparable when they differ; named in the "not comparable" message.
_SAMPLE_COUNT_KEYS = ("n_fake", "n_real", "n_samples", "num_samples")


# ---------------------------------------------------------------------------------------------- loading
def load_results(path: str | Path) -> pd.DataFrame:
    """Long-format metrics of a run directory, `results.db`, `results.csv` or `results.json`."""
    p = Path(path)
    if p.is_dir():
        for name in ("results.db", "results.csv", "results.json"):
            if (p / name).exists():
                return load_results(p / name)
        raise InvalidInputError(f"{p} holds no results.db, results.csv or results.json: is it a `genbench run` output directory?")
    if not p.exists():
        raise InvalidInputError(f"results file {p} does not exist")
    readers = {".db": _read_db, ".csv": _read_csv, ".json": _read_json}
    if p.suffix not in readers:
        raise InvalidInputError(f"{p}: expected a run directory or a results .db/.csv/.json file")
    return _normalise(readers[p.suffix](p), p)


def _read_db(p: Path) -> pd.DataFrame:
    """Metrics of a results.db, validated read-only before it is opened as a store (InvalidInputError if it is not
    a genbench results database)."""
    import sqlite3

    from genbench.store import ResultsStore, check_store_file

    check_store_file(p)
    try:
        with ResultsStore(p) as store:
            return store.metrics_frame()
    except sqlite3.Error as e:
        raise InvalidInputError(f"{p}: cannot read its metrics ({e}); is it an intact genbench results database?") from None


def _read_text(p: Path) -> str:
    """The file as UTF-8 text; InvalidInputError when it cannot be read or is not UTF-8 (e.g. a binary file)."""
    try:
        data = p.read_bytes()
    except OSError as e:
        raise InvalidInputError(f"cannot read {p}: {e.strerror or e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInputError(f"{p} is not UTF-8 text (byte {e.start}): not a genbench results file") from None


def _read_csv(p: Path) -> pd.DataFrame:
    import io

    text = _read_text(p)
    if not text.strip():
        raise InvalidInputError(f"{p} is empty: not a genbench results file")
    if "\x00" in text:
        raise InvalidInputError(f"{p} holds NUL bytes (a binary file?): not a genbench results file")
    try:
        return pd.read_csv(io.StringIO(text), keep_default_na=False,
                           na_values={"value": [""], "ci_low": [""], "ci_high": [""]})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as e:
        raise InvalidInputError(f"{p} is not a readable CSV file ({str(e).strip().splitlines()[0]})") from None


def _read_json(p: Path) -> pd.DataFrame:
    """Metric records of a results.json (`{"metrics": [...]}` or a bare list). Non-finite numbers may be the
    strings "inf" / "-inf" / "nan" (how genbench writes them; `_normalise` reads them as floats) or JSON's
    non-standard Infinity / NaN literals."""
    try:
        blob = json.loads(_read_text(p))
    except json.JSONDecodeError as e:
        raise InvalidInputError(f"{p} is not valid JSON ({e})") from None
    rows = blob.get("metrics") if isinstance(blob, dict) else blob
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        got = type(blob).__name__ if not isinstance(blob, dict) else "an object without a \"metrics\" list"
        raise InvalidInputError(f"{p}: expected a genbench results.json (an object whose \"metrics\" is a list of "
                                f"records), got {got}")
    return pd.DataFrame(rows)


def _normalise(frame: pd.DataFrame, source: Path) -> pd.DataFrame:
    need = {"dataset", "model", "metric", "value", "higher_is_better"}
    missing = need - set(frame.columns)
    if missing:
        raise InvalidInputError(f"{source} lacks the columns {sorted(missing)}; is it a genbench results file?")
    frame = frame.copy()
    for col, default in (("variant", ""), ("seed", 0), ("ci_low", math.nan), ("ci_high", math.nan),
                         ("unit", ""), ("protocol", "{}"), ("family", "")):
        if col not in frame.columns:
            frame[col] = default
    frame["variant"] = frame["variant"].fillna("").astype(str)
    frame["protocol"] = frame["protocol"].fillna("{}").astype(str)
    frame["higher_is_better"] = frame["higher_is_better"].map(_as_bool)
    for col in ("value", "ci_low", "ci_high"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    if "status" in frame.columns:
        frame = frame[frame["status"].fillna("done") == "done"]
    return frame


def _as_bool(v) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes")
    return bool(v)


# ---------------------------------------------------------------------------------------------- tolerances
@dataclass(frozen=True)
class Tolerance:
    amount: float
    relative: bool

    @classmethod
    def parse(cls, raw, metric: str = "?") -> "Tolerance":
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return cls(abs(float(raw)), False)
        if isinstance(raw, str):
            s = raw.strip()
            try:
                if s.endswith("%"):
                    return cls(abs(float(s[:-1])) / 100.0, True)
                return cls(abs(float(s)), False)
            except ValueError:
                pass
        raise InvalidInputError(f"tolerance for {metric!r} must be a number (absolute) or a string like '5%' (relative), got {raw!r}")

    def allowed(self, baseline: float) -> float:
        return self.amount * abs(baseline) if self.relative else self.amount

    def __str__(self) -> str:
        return f"{self.amount * 100:g}%" if self.relative else f"{self.amount:g}"


def load_tolerances(path: Optional[str | Path] = None) -> dict[str, Tolerance]:
    tol = _read_tolerance_file(DEFAULT_TOLERANCES)
    if path is not None:
        tol.update(_read_tolerance_file(Path(path)))
    return tol


def _read_tolerance_file(path: Path) -> dict[str, Tolerance]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidInputError(f"tolerance file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise InvalidInputError(f"tolerance file {path} is not valid TOML: {e}") from None
    table = data.get("tolerances", data)
    if not isinstance(table, dict):
        raise InvalidInputError(f"{path}: expected a [tolerances] table of metric = tolerance")
    return {k: Tolerance.parse(v, k) for k, v in table.items()}


def tolerance_for(metric: str, tolerances: dict[str, Tolerance]) -> Tolerance:
    return tolerances.get(metric) or tolerances.get("default") or Tolerance(0.0, False)


# ---------------------------------------------------------------------------------------------- comparing
@dataclass
class Aggregate:
    """One (dataset, model, metric, variant) in one result set: mean over seeds and its noise half-width."""

    value: float
    half_width: float  # 95% half-width from CIs or the seed spread; 0 when nothing tells
    n_seeds: int
    higher_is_better: bool
    unit: str
    protocol: dict
    timing: bool


def aggregate(frame: pd.DataFrame) -> dict[tuple, Aggregate]:
    out: dict[tuple, Aggregate] = {}
    for key, g in frame.groupby(KEY, sort=True, dropna=False):
        vals = g["value"].astype(float)
        n = int(len(vals))
        proto = _protocol(g["protocol"].iloc[0])
        timing = bool(proto.get("timing", False))
        mean = float(vals.mean())
        ci_hw = ((g["ci_high"] - g["ci_low"]) / 2).dropna()
        hw = 0.0
        if len(ci_hw):
            # CI of a mean of independent estimates: the half-widths add in quadrature, over n.
            hw = float(math.sqrt(float((ci_hw**2).sum())) / n)
        if n >= 2:
            hw = max(hw, 1.96 * float(vals.std(ddof=1)) / math.sqrt(n))
        out[tuple(key)] = Aggregate(mean, hw, n, bool(g["higher_is_better"].iloc[0]), str(g["unit"].iloc[0]), proto, timing)
    return out


def _protocol(raw) -> dict:
    if isinstance(raw, dict):
        return raw
    try:
        d = json.loads(raw) if raw else {}
    except (TypeError, json.JSONDecodeError):
        return {"raw": str(raw)}
    return d if isinstance(d, dict) else {"raw": d}


def _stable_protocol(p: dict) -> dict:
    return {k: v for k, v in p.items() if k not in _VOLATILE_PROTOCOL_KEYS}


@dataclass
class Row:
    dataset: str
    model: str
    metric: str
    variant: str
    baseline: Optional[float]
    new: Optional[float]
    delta: Optional[float]
    noise: float
    tolerance: str
    verdict: str  # "regressed" | "improved" | "unchanged" | "within noise" | "new" | "missing"
    higher_is_better: bool
    unit: str
    detail: str = ""


@dataclass
class Comparison:
    rows: list[Row] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # reasons the sets are not comparable

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == "regressed"]

    @property
    def exit_code(self) -> int:
        if self.problems:
            return EXIT_NOT_COMPARABLE
        return EXIT_REGRESSION if self.regressions else EXIT_OK


def is_timing(frame: pd.DataFrame) -> pd.Series:
    """Rows whose protocol marks them as timing figures (speed, latency, memory): machine-dependent."""
    return frame["protocol"].map(lambda p: bool(_protocol(p).get("timing", False)))


def compare_frames(base: pd.DataFrame, new: pd.DataFrame, tolerances: Optional[dict[str, Tolerance]] = None,
                   timing: bool = True) -> Comparison:
    """`timing=False` leaves the machine-dependent timing metrics out (a quality-only gate)."""
    tolerances = tolerances if tolerances is not None else load_tolerances()
    if not timing:
        base, new = base[~is_timing(base)], new[~is_timing(new)]
    cmp = Comparison()
    base_ds, new_ds = set(base["dataset"]), set(new["dataset"])
    if not base_ds & new_ds:
        cmp.problems.append(f"no dataset in common: baseline has {sorted(base_ds)}, new has {sorted(new_ds)}")
        return cmp
    a, b = aggregate(base), aggregate(new)
    for key in sorted(set(a) | set(b)):
        ds, model, metric, variant = key
        if ds not in base_ds or ds not in new_ds:
            continue  # a dataset only one side ran is reported once, below
        if key not in b:
            x = a[key]
            cmp.rows.append(Row(ds, model, metric, variant, x.value, None, None, x.half_width, "", "missing", x.higher_is_better, x.unit))
            continue
        if key not in a:
            y = b[key]
            cmp.rows.append(Row(ds, model, metric, variant, None, y.value, None, y.half_width, "", "new", y.higher_is_better, y.unit))
            continue
        x, y = a[key], b[key]
        pa, pb = _stable_protocol(x.protocol), _stable_protocol(y.protocol)
        if pa != pb:
            diff = sorted(k for k in set(pa) | set(pb) if pa.get(k) != pb.get(k))
            counts = [k for k in diff if k in _SAMPLE_COUNT_KEYS]
            what = "sample count" if counts else "protocol"
            detail = ", ".join(f"{k}: {pa.get(k)!r} -> {pb.get(k)!r}" for k in diff)
            cmp.problems.append(f"{ds}/{model}/{metric}{'/' + variant if variant else ''}: different {what} ({detail})")
            continue
        cmp.rows.append(_judge(key, x, y, tolerance_for(metric, tolerances)))
    only = sorted(base_ds ^ new_ds)
    for ds in only:
        side = "baseline" if ds in base_ds else "new"
        cmp.rows.append(Row(ds, "*", "*", "", None, None, None, 0.0, "", "missing" if side == "baseline" else "new", True, "",
                            detail=f"dataset only in the {side} run"))
    return cmp


def _judge(key: tuple, x: Aggregate, y: Aggregate, tol: Tolerance) -> Row:
    ds, model, metric, variant = key
    if not (math.isfinite(x.value) and math.isfinite(y.value)):
        # e.g. mode_kl is +inf for a model that covers no mode: equal infinities are unchanged; a move to or
        # from infinity is judged by direction alone.
        if x.value == y.value or (math.isnan(x.value) and math.isnan(y.value)):
            return Row(ds, model, metric, variant, x.value, y.value, 0.0, 0.0, str(tol), "unchanged", x.higher_is_better, x.unit, "both non-finite")
        xv, yv = (-x.value, -y.value) if x.higher_is_better else (x.value, y.value)
        verdict = "regressed" if (math.isnan(yv) or yv > xv) else "improved"
        return Row(ds, model, metric, variant, x.value, y.value, None, 0.0, str(tol), verdict, x.higher_is_better, x.unit, "non-finite value")
    delta = y.value - x.value
    worse = -delta if x.higher_is_better else delta  # > 0 means the new value is worse
    noise = 0.0 if x.timing else math.sqrt(x.half_width**2 + y.half_width**2)
    allowed = tol.allowed(x.value)
    threshold = max(noise, allowed)
    if abs(delta) <= 1e-12 * max(1.0, abs(x.value)):
        verdict = "unchanged"
    elif abs(worse) <= threshold:
        verdict = "within noise" if noise >= allowed else "unchanged"
    else:
        verdict = "regressed" if worse > 0 else "improved"
    detail = f"threshold {threshold:.4g} (noise {noise:.3g}, tolerance {tol})"
    return Row(ds, model, metric, variant, x.value, y.value, delta, noise, str(tol), verdict, x.higher_is_better, x.unit, detail)


def compare_paths(baseline: str | Path, new: str | Path, tolerances_file: Optional[str | Path] = None,
                  timing: bool = True) -> Comparison:
    return compare_frames(load_results(baseline), load_results(new), load_tolerances(tolerances_file), timing=timing)


# ---------------------------------------------------------------------------------------------- output
def to_markdown(cmp: Comparison) -> str:
    from tabulate import tabulate

    lines = []
    if cmp.problems:
        lines.append("**Not comparable** (exit 2):\n")
        lines += [f"- {p}" for p in cmp.problems]
        lines.append("")
    n_reg = len(cmp.regressions)
    lines.append(f"{len(cmp.rows)} metrics compared: {n_reg} regressed, "
                 f"{sum(r.verdict == 'improved' for r in cmp.rows)} improved, "
                 f"{sum(r.verdict in ('unchanged', 'within noise') for r in cmp.rows)} unchanged or within noise, "
                 f"{sum(r.verdict == 'new' for r in cmp.rows)} new, {sum(r.verdict == 'missing' for r in cmp.rows)} missing.\n")
    table = [
        [r.dataset, r.model, r.metric + (f" [{r.variant}]" if r.variant else ""), "↑" if r.higher_is_better else "↓",
         _fmt(r.baseline), _fmt(r.new), _fmt(r.delta, signed=True), _fmt(r.noise), r.tolerance,
         f"**{r.verdict}**" if r.verdict == "regressed" else r.verdict]
        for r in sorted(cmp.rows, key=lambda r: (r.verdict != "regressed", r.dataset, r.model, r.metric, r.variant))
    ]
    headers = ["dataset", "model", "metric", "better", "baseline", "new", "change", "noise (95%)", "tolerance", "verdict"]
    lines.append(tabulate(table, headers=headers, tablefmt="github", disable_numparse=True))
    return "\n".join(lines) + "\n"


def _fmt(v: Optional[float], signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:+.4g}" if signed else f"{v:.4g}"


def to_junit(cmp: Comparison, suite_name: str = "genbench.compare") -> str:
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
            ET.SubElement(tc, "failure", message=f"{name} regressed: {_fmt(r.baseline)} -> {_fmt(r.new)}").text = r.detail
        elif r.verdict in ("new", "missing"):
            ET.SubElement(tc, "skipped", message=f"{r.verdict} {r.detail}".strip())
        else:
            ET.SubElement(tc, "system-out").text = f"{r.verdict}: {_fmt(r.baseline)} -> {_fmt(r.new)}; {r.detail}"
    suite.set("tests", str(len(cmp.rows) + len(cmp.problems)))
    suite.set("failures", str(failures))
    suite.set("errors", str(len(cmp.problems)))
    suite.set("skipped", str(sum(r.verdict in ("new", "missing") for r in cmp.rows)))
    return ET.tostring(suite, encoding="unicode", xml_declaration=True)
