"""The regression gate's noise model: how far a score moves when nothing but chance changed.

A score of a trained model moves for two reasons that have nothing to do with the code under test:
- **sampling noise**: another draw of generated (and reference) samples. The metric engine measures it per
  value with a bootstrap over features (the stored 95% CI, `ci_low`..`ci_high`).
- **training noise**: another seed, another thread count, another CPU kind, which trains another network. Only
  a spread over seeds measures it. Reruns on other hardware are, for a score, another draw of the same kind:
  the gate's benchmark (reports/benchmarks/gate.md) checks that the seed spread covers them.

For one (dataset, model, metric, variant) the gate compares the mean over seeds of the new run with the
baseline's. Per run, the standard deviation it assumes is

    sd_run = max(seed spread, feature noise)

where the seed spread is the pooled sample standard deviation over the seeds of both sides (a run with several
seeds measures it), pooled with the committed calibration for that score when one applies (a seed sweep of the
suite, `genbench calibrate`), and the feature noise is the bootstrap's (CI half-width / 1.96). The standard
error of the difference is sd_run * sqrt(1/n_base + 1/n_new); with a seed spread it has that spread's degrees of
freedom (a t test on seed means), with only feature noise it is a z test. Where both runs stored their features and
scored the same reference features, the sampling part is instead the standard deviation of the change over a
paired bootstrap (genbench/results/paired.py: the same real and fake rows resampled in both runs), and
se = max(seed spread * sqrt(1/n_base + 1/n_new), paired sd). When neither side has several seeds and
no calibration applies, training noise is unknown, and the verdict says so.

A change is a regression when it is worse than the metric's tolerance (the smallest change that counts) *and*
significantly worse than zero: its one-sided p-value passes the Holm-Bonferroni procedure at family-wise level
`alpha` over every score compared, so that a clean rerun raises no false alarm with probability >= 1 - alpha.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd

from genbench.errors import InvalidInputError

CALIBRATION_DIR = Path(__file__).with_name("calibration")
Z95 = 1.959963984540054


# ---------------------------------------------------------------------------------------------- one side
@dataclass
class SideStats:
    """One result set's values of one score: one per seed, with the bootstrap CI half-width of each."""

    values: list
    half_widths: list  # NaN where a value has no CI
    seeds: list

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def feature_sd(self) -> float:
        """Sampling noise of one value: the root mean square of the CI half-widths / 1.96 (0 when none)."""
        hw = [h for h in self.half_widths if h is not None and math.isfinite(h)]
        return math.sqrt(sum(h * h for h in hw) / len(hw)) / Z95 if hw else 0.0

    def sum_sq(self) -> float:
        m = self.mean
        return sum((v - m) ** 2 for v in self.values)


def mean_half_width(st: SideStats) -> float:
    """The one interval genbench puts on a mean over seeds (report, compare, recommend): the 95% half-width of the
    mean, Z95 * max(feature noise, seed spread) / sqrt(n), with this side's own seeds only (no calibration). One
    seed: its bootstrap CI half-width. Non-finite values leave the seed spread at 0."""
    finite = all(math.isfinite(v) for v in st.values)
    seed_sd = math.sqrt(st.sum_sq() / (st.n - 1)) if st.n >= 2 and finite else 0.0
    return Z95 * max(st.feature_sd, seed_sd) / math.sqrt(st.n)


def side_stats(group: pd.DataFrame) -> SideStats:
    hw = ((group["ci_high"] - group["ci_low"]) / 2).astype(float).tolist()
    return SideStats(group["value"].astype(float).tolist(), hw, group["seed"].tolist() if "seed" in group else [])


# ---------------------------------------------------------------------------------------------- calibration
@dataclass(frozen=True)
class CalibrationEntry:
    sd: float
    n_seeds: int
    protocol: str  # fingerprint of the stable protocol the spread was measured under

    @property
    def df(self) -> int:
        return self.n_seeds - 1


@dataclass
class Calibration:
    """Per-score seed spreads measured once (`genbench calibrate`), keyed by (budget, dataset, model, metric,
    variant)."""

    entries: dict = field(default_factory=dict)
    sources: list = field(default_factory=list)  # (path, made_by dict)

    def add(self, rows: list, source: str, made_by: dict) -> None:
        """Take the `spreads` rows of a calibration (`make_calibration`'s layout); later rows win."""
        for r in rows:
            key = (str(r["budget"]), r["dataset"], r["model"], r["metric"], r.get("variant", ""))
            self.entries[key] = CalibrationEntry(float(r["sd"]), int(r["n_seeds"]), str(r["protocol"]))
        self.sources.append((source, made_by))

    def get(self, budget: str, key: tuple, protocol_fp: str) -> tuple[Optional[CalibrationEntry], str]:
        """(entry, "") when a spread applies; (None, why not) otherwise."""
        e = self.entries.get((str(budget), *key))
        if e is None:
            return None, "no calibration for this score"
        if e.protocol != protocol_fp:
            return None, "the calibration was measured under another protocol"
        return e, ""

    def describe(self) -> str:
        if not self.sources:
            return "none"
        parts = []
        for path, made in self.sources:
            seeds = made.get("seeds")
            parts.append(f"{Path(path).name} ({len(seeds) if seeds else '?'} seeds of suite {made.get('suite', '?')!r}"
                         f" on {made.get('machine', '?')}, {made.get('date', '?')})")
        return "; ".join(parts)


def load_calibration(paths: Optional[Iterable[str | Path]] = None, builtin: bool = True) -> Calibration:
    """The built-in calibration files (genbench/results/calibration/*.json) and any given ones (later ones win)."""
    files = sorted(CALIBRATION_DIR.glob("*.json")) if builtin else []
    files += [Path(p) for p in (paths or [])]
    cal = Calibration()
    for f in files:
        try:
            blob = json.loads(Path(f).read_text(encoding="utf-8"))
            rows = blob["spreads"]
            made = dict(blob.get("made_by") or {})
        except FileNotFoundError:
            raise InvalidInputError(f"calibration file {f} does not exist") from None
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise InvalidInputError(f"calibration file {f} is not a genbench calibration ({type(e).__name__}: {e}); "
                                    "write one with `genbench calibrate RUN_DIR --out FILE`") from None
        cal.add(rows, str(f), made)
    return cal


def make_calibration(frame: pd.DataFrame, made_by: dict, stable_protocol) -> dict:
    """A calibration (JSON-able dict) from a long-format metrics frame holding several seeds per job:
    the sample standard deviation over seeds of every non-timing score. `stable_protocol(raw) -> str` gives the
    protocol fingerprint (genbench.results.compare.protocol_fingerprint)."""
    rows = []
    seeds = sorted({int(s) for s in frame["seed"]}) if len(frame) else []
    if len(seeds) < 3:
        raise InvalidInputError(f"a calibration needs a run with at least 3 seeds per job (this one has "
                                f"{len(seeds)}: {seeds}); run e.g. `genbench run SUITE --seeds 0,1,2,3,4,5 --out DIR`")
    for key, g in frame.groupby(["budget", "dataset", "model", "metric", "variant"], sort=True, dropna=False):
        fps = {stable_protocol(p) for p in g["protocol"]}
        if len(fps) != 1 or len(g) < 3:
            continue
        vals = g["value"].astype(float)
        if not all(math.isfinite(v) for v in vals):
            continue
        fp = fps.pop()
        if json.loads(fp).get("timing"):
            continue
        sd = float(vals.std(ddof=1))
        variant = "" if pd.isna(key[4]) else key[4]  # a missing variant (NaN / None) is the plain score
        rows.append({"budget": str(key[0]), "dataset": key[1], "model": key[2], "metric": key[3],
                     "variant": variant, "sd": sd, "n_seeds": int(len(g)), "mean": float(vals.mean()), "protocol": fp})
    return {"about": "Seed spreads of genbench scores: the per-run standard deviation over training seeds of each "
                     "(budget, dataset, model, metric, variant), used by `genbench compare` / `check` as training "
                     "noise when a result set has one seed. Written by `genbench calibrate`.",
            "made_by": {**made_by, "seeds": seeds, "date": made_by.get("date") or time.strftime("%Y-%m-%d")},
            "spreads": rows}


# ---------------------------------------------------------------------------------------------- the test
@dataclass
class Noise:
    """The noise a change is judged against."""

    se: float  # standard error of (new mean - baseline mean)
    df: float  # degrees of freedom of `se` (inf: feature noise only, a z test)
    sd_run: float
    feature_sd: float
    seed_sd: Optional[float]  # None: training noise unknown
    seed_source: str  # "seeds (3 + 1)", "calibration (6 seeds)", "unknown"
    paired_sd: Optional[float] = None  # sd of the change from the paired bootstrap; None: unpaired (stored CIs)
    hardware: str = ""  # "same" | "differs" | "" (unknown): what the seed spread has to cover

    @property
    def sampling(self) -> str:
        return "paired bootstrap" if self.paired_sd is not None else "bootstrap CIs"

    @property
    def source(self) -> str:
        """What the noise is made of, in a few words (the report's "noise from" column)."""
        parts = [f"features ({self.sampling})",
                 "training unknown" if self.seed_sd is None else self.seed_source]
        if self.hardware == "differs":
            parts.append("hardware differs")
        return " + ".join(parts)

    def describe(self) -> str:
        if self.paired_sd is not None:
            parts = [f"features: paired bootstrap sd of the change {self.paired_sd:.3g} (shared reference features)"]
        else:
            parts = [f"features sd {self.feature_sd:.3g}"]
        if self.seed_sd is None:
            parts.append("training noise unknown (one seed per side and no calibration)")
        else:
            parts.append(f"seeds sd {self.seed_sd:.3g} from {self.seed_source}")
        if self.hardware == "differs":
            parts.append("hardware: the environments differ (another draw of training, covered by the seed spread)")
        elif self.hardware == "same":
            parts.append("hardware: same environment")
        return "; ".join(parts)


def noise_for(x: SideStats, y: SideStats, cal: Optional[CalibrationEntry], paired_sd: Optional[float] = None,
              hardware: str = "") -> Noise:
    """Noise of the difference of the seed means of `y` (new) and `x` (baseline): see the module docstring.
    `paired_sd`: the standard deviation of the change over a paired bootstrap (genbench/results/paired.py); it replaces
    the sampling noise the two runs' stored intervals give when taken as independent:
    se = max(seed sd * sqrt(1/n_base + 1/n_new), paired_sd)."""
    ss, df = 0.0, 0
    src = []
    if x.n >= 2 or y.n >= 2:
        ss += x.sum_sq() + y.sum_sq()
        df += max(0, x.n - 1) + max(0, y.n - 1)
        src.append(f"seeds ({x.n} + {y.n})")
    if cal is not None and cal.df >= 1:
        ss += cal.sd ** 2 * cal.df
        df += cal.df
        src.append(f"calibration ({cal.n_seeds} seeds)")
    feat = math.sqrt((x.feature_sd ** 2 + y.feature_sd ** 2) / 2)
    seed_sd = math.sqrt(ss / df) if df > 0 else None
    k = math.sqrt(1.0 / x.n + 1.0 / y.n)
    if paired_sd is None:
        sd_run = max(feat, seed_sd or 0.0)
        use_df = float(df) if seed_sd is not None and seed_sd >= feat else math.inf
        se = sd_run * k
    else:
        seed_se = (seed_sd or 0.0) * k
        se = max(seed_se, float(paired_sd))
        use_df = float(df) if seed_sd is not None and seed_se >= paired_sd else math.inf
        sd_run = se / k
    return Noise(se, use_df, sd_run, feat, seed_sd, " + ".join(src) or "unknown", paired_sd, hardware)


def p_greater(effect: float, se: float, df: float) -> float:
    """One-sided p-value of H0 `true effect <= 0` given an observed `effect` with standard error `se`."""
    if se <= 0:
        return 0.0 if effect > 0 else 1.0
    t = effect / se
    from scipy import stats

    return float(stats.norm.sf(t) if math.isinf(df) else stats.t.sf(t, df))


def interval(effect: float, se: float, df: float, level: float = 0.95) -> tuple[float, float]:
    """Two-sided `level` confidence interval of a difference."""
    if se <= 0:
        return effect, effect
    from scipy import stats

    q = stats.norm.ppf(0.5 + level / 2) if math.isinf(df) else stats.t.ppf(0.5 + level / 2, df)
    return effect - q * se, effect + q * se


def holm(pvalues: list[float], alpha: float) -> list[bool]:
    """Holm-Bonferroni: which hypotheses are rejected at family-wise error `alpha`."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    rejected = [False] * m
    for rank, i in enumerate(order):
        if pvalues[i] <= alpha / (m - rank):
            rejected[i] = True
        else:
            break
    return rejected


__all__ = ["Calibration", "CalibrationEntry", "Noise", "SideStats", "holm", "interval", "load_calibration",
           "make_calibration", "noise_for", "p_greater", "side_stats"]
