"""Regression checks between two result sets (`genbench compare BASELINE NEW`, and `genbench check`).

For every (dataset, model, metric, variant) present in either set: the change of the mean over seeds, its 95%
confidence interval, the noise it was judged against and what that noise is made of, and a verdict.

- **Quality scores** are judged by `genbench.results.noise`: the noise includes sampling noise (the stored bootstrap CIs)
  *and* training noise (the spread over seeds of either side, pooled with the committed calibration of seed
  spreads); for FD, KID and P/R/D/C the sampling part comes from a paired bootstrap of the change
  (genbench/results/paired.py) where both sets stored their features and scored the same reference features, else the
  report says why not ("paired test unavailable: ..."). A change is a regression when it is worse than the metric's tolerance (`tolerances.toml`: the smallest
  change that counts) and significantly worse, by a one-sided test on the difference of seed means that is
  Holm-Bonferroni-corrected over all scores at family-wise level `alpha` (default 0.05).
- **Timing scores** (protocol `"timing": true`) are compared only when both were measured on the same hardware
  (CPU model and extensions or GPU, torch version) with the same threads; otherwise they are listed as "not
  compared: different hardware (A vs B)" and neither fail the gate nor make the runs incomparable. On the same
  hardware a timing change counts when it exceeds its (relative) tolerance *and* the timed call (one sample, one
  batch, one fit: `call_ms`) moved by more than an absolute floor (`[timing_floor_ms]` in tolerances.toml).
- **Comparability** is decided by the measurement's protocol (feature network *with its weights hash*, sample
  counts, reference split, k...) and the metric's definition version where both sets record it, not by
  entries that describe the machine (`classifier_accuracy`, the model's arithmetic `precision`).

Exit codes (a contract for CI): 0 no regression, 1 at least one regression, 2 the two sets are not comparable
(a different protocol, dataset or sample count, or no job in common), with the reason; 2 wins over 1.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd

from genbench.errors import InvalidInputError
from genbench.results.judge import KEY, Row, decide, judge, judge_timing, paired_result, parse_protocol, sides
from genbench.results.noise import Calibration, load_calibration, mean_half_width, side_stats
from genbench.results.paired import DEFAULT_PAIRED_BOOT, PAIRED_METRICS
from genbench.results.result_files import load_results
from genbench.results.tolerance import Tolerance, load_tolerances, timing_floor_ms, tolerance_for

EXIT_OK, EXIT_REGRESSION, EXIT_NOT_COMPARABLE = 0, 1, 2
DEFAULT_ALPHA = 0.05  # family-wise false-alarm rate of one comparison (Holm-Bonferroni over its scores)
# Protocol entries that legitimately differ between two runs of the same protocol.
_VOLATILE_PROTOCOL_KEYS = {"seed", "timing", "device", "batch_size", "repeats", "warmup", "hardware",
                           "torch_threads", "device_name"}
# Entries that describe the machine or the model's arithmetic, not the measurement: shown, never what decides
# comparability (the instrument's id, which carries its weights hash, decides that).
_DESCRIPTIVE_PROTOCOL_KEYS = {"classifier_accuracy", "precision", "features_pinned"}
# Protocol entries that make two numbers incomparable when they differ; named in the "not comparable" message.
_SAMPLE_COUNT_KEYS = ("n_fake", "n_real", "n_samples", "num_samples")


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
    """Per score: the mean over seeds and a 95% half-width of that mean (noise model of genbench.results.noise with
    no calibration: max of the feature noise and the seed spread)."""
    out: dict[tuple, Aggregate] = {}
    for key, g in frame.groupby(KEY, sort=True, dropna=False):
        st = side_stats(g)
        proto = parse_protocol(g["protocol"].iloc[0])
        timing = bool(proto.get("timing", False))
        hw = mean_half_width(st)
        out[tuple(key)] = Aggregate(st.mean, hw, st.n, bool(g["higher_is_better"].iloc[0]), str(g["unit"].iloc[0]),
                                    proto, timing)
    return out


def _stable_protocol(p: dict) -> dict:
    return {k: v for k, v in p.items() if k not in _VOLATILE_PROTOCOL_KEYS and k not in _DESCRIPTIVE_PROTOCOL_KEYS}


def protocol_fingerprint(raw) -> str:
    """The protocol entries that decide comparability, as canonical JSON (calibration files key on it)."""
    p = _stable_protocol(parse_protocol(raw))
    if parse_protocol(raw).get("timing"):
        p["timing"] = True
    return json.dumps(p, sort_keys=True, default=str)


@dataclass
class Comparison:
    rows: list[Row] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # reasons the sets are not comparable
    notes: list[str] = field(default_factory=list)  # things a reader must know (unknown training noise...)
    env: dict = field(default_factory=dict)  # {"baseline": str, "new": str, "differs": bool}
    alpha: float = DEFAULT_ALPHA
    calibration: str = ""

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == "regressed"]

    @property
    def exit_code(self) -> int:
        if self.problems:  # the gate cannot be trusted: not comparable wins over a regression
            return EXIT_NOT_COMPARABLE
        return EXIT_REGRESSION if self.regressions else EXIT_OK


def is_timing(frame: pd.DataFrame) -> pd.Series:
    """Rows whose protocol marks them as timing figures (speed, latency, memory): machine-dependent."""
    return frame["protocol"].map(lambda p: bool(parse_protocol(p).get("timing", False)))


def compare_frames(base: pd.DataFrame, new: pd.DataFrame, tolerances: Optional[dict[str, Tolerance]] = None,
                   timing: bool = True, alpha: float = DEFAULT_ALPHA, calibration: Optional[Calibration] = None,
                   env: Optional[dict] = None, paired: Optional["PairedInputs"] = None) -> Comparison:
    """Judge every score of `new` against `base` (see the module docstring and genbench.results.noise). `timing=False`
    leaves the machine-dependent timing metrics out; otherwise they are compared only on the same hardware.
    `calibration` defaults to the built-in seed spreads (genbench/results/calibration/). `paired`: both sets' stored
    features (genbench.results.paired.PairedInputs): FD, KID and P/R/D/C changes are then judged with the paired
    bootstrap where both scored the same reference features; None: the stored intervals, taken as independent."""
    tolerances = tolerances if tolerances is not None else load_tolerances()
    calibration = calibration if calibration is not None else load_calibration()
    if not 0 < alpha < 1:
        raise InvalidInputError(f"alpha must be between 0 and 1, got {alpha}")
    if not timing:
        base, new = base[~is_timing(base)], new[~is_timing(new)]
    cmp = Comparison(alpha=alpha, calibration=calibration.describe(), env=dict(env or {}))
    base_ds, new_ds = set(base["dataset"]), set(new["dataset"])
    if not base_ds & new_ds:
        cmp.problems.append(f"no dataset in common: baseline has {sorted(base_ds)}, new has {sorted(new_ds)}")
        return cmp
    base_jobs, new_jobs = set(zip(base["dataset"], base["model"])), set(zip(new["dataset"], new["model"]))
    if not base_jobs & new_jobs:
        cmp.problems.append("no (dataset, model) in common: the two runs share datasets but scored different models "
                            f"(baseline: {_jobs(base_jobs)}; new: {_jobs(new_jobs)})")
        return cmp
    a, b = sides(base), sides(new)
    pending = []  # quality rows awaiting the multiple-testing decision
    unknown_noise = set()
    unpaired: dict[str, int] = {}  # why the paired test was unavailable -> scores
    n_paired = 0
    hardware = "" if not cmp.env or "differs" not in cmp.env else ("differs" if cmp.env["differs"] else "same")
    for key in sorted(set(a) | set(b)):
        ds, model, metric, variant = key
        if ds not in base_ds or ds not in new_ds:
            continue  # a dataset only one side ran is reported once, below
        if key not in b or key not in a:
            x = a.get(key) or b.get(key)
            cmp.rows.append(Row(ds, model, metric, variant, x.stats.mean if key in a else None,
                                x.stats.mean if key in b else None, None, 0.0, "", "missing" if key in a else "new",
                                x.higher_is_better, x.unit,
                                seeds=(x.stats.n, 0) if key in a else (0, x.stats.n)))
            continue
        x, y = a[key], b[key]
        if x.timing or y.timing:
            cmp.rows.append(judge_timing(key, x, y, tolerance_for(metric, tolerances, timing=True),
                                         timing_floor_ms(metric, tolerances)))
            continue
        pa, pb = _stable_protocol(x.protocol), _stable_protocol(y.protocol)
        if x.version and y.version and x.version != y.version:  # the metric's definition changed
            pa, pb = {**pa, "metric version": x.version}, {**pb, "metric version": y.version}
        if pa != pb:
            diff = sorted(k for k in set(pa) | set(pb) if pa.get(k) != pb.get(k))
            counts = [k for k in diff if k in _SAMPLE_COUNT_KEYS]
            what = ("sample count" if counts else "feature network" if "features" in diff or "classifier" in diff
                    else "metric definition" if diff == ["metric version"] else "protocol")
            detail = ", ".join(f"{k}: {pa.get(k)!r} -> {pb.get(k)!r}" for k in diff)
            cmp.problems.append(f"{ds}/{model}/{metric}{'/' + variant if variant else ''}: different {what} ({detail})")
            continue
        cal, _ = calibration.get(x.budget, key, protocol_fingerprint(x.protocol))
        pr = None
        if (paired is not None and metric in PAIRED_METRICS and math.isfinite(x.stats.mean)
                and math.isfinite(y.stats.mean)):
            pr = paired_result(paired, key, a, b)
            if isinstance(pr, str):
                unpaired[pr] = unpaired.get(pr, 0) + 1
            else:
                n_paired += 1
        row = judge(key, x, y, tolerance_for(metric, tolerances), cal, pr, hardware)
        if "training unknown" in row.noise_source:
            unknown_noise.add((ds, model))
        if x.protocol.get("features_pinned") is False:
            row.detail += "; unpinned feature network: numbers may differ between machines"
        cmp.rows.append(row)
        if row.verdict == "pending":
            pending.append(row)
    decide(pending, alpha)
    for ds in sorted(base_ds ^ new_ds):
        side = "baseline" if ds in base_ds else "new"
        cmp.rows.append(Row(ds, "*", "*", "", None, None, None, 0.0, "", "missing" if side == "baseline" else "new", True, "",
                            detail=f"dataset only in the {side} run"))
    if unknown_noise:
        cmp.notes.append(f"training noise unknown for {len(unknown_noise)} job(s) ({_jobs(unknown_noise)}): each side "
                         "has one seed and no calibration applies, so only sampling noise was allowed for. Run more "
                         "seeds (--seeds 0,1,2) or provide a calibration (genbench calibrate).")
    if n_paired:
        cmp.notes.append(f"{n_paired} feature score(s) judged with the paired bootstrap over shared reference features "
                         f"({paired.n_boot} replicates; docs/gate.md, *Paired bootstrap*).")
    for why, n in sorted(unpaired.items()):
        cmp.notes.append(f"paired test unavailable for {n} feature score(s): {why}; judged with the stored "
                         "bootstrap intervals taken as independent.")
    return cmp


def _jobs(pairs) -> str:
    pairs = sorted(pairs)
    s = ", ".join(f"{d}/{m}" for d, m in pairs[:6])
    return s + (f" and {len(pairs) - 6} more" if len(pairs) > 6 else "")


def compare_paths(baseline: str | Path, new: str | Path, tolerances_file: Optional[str | Path] = None,
                  timing: bool = True, alpha: float = DEFAULT_ALPHA,
                  calibration_files: Optional[list] = None, paired_boot: int = DEFAULT_PAIRED_BOOT) -> Comparison:
    """`compare_frames` on two result sets read from disk; `paired_boot` replicates of the paired bootstrap
    where both stored their features (0: none)."""
    base, new_f = load_results(baseline), load_results(new)
    env = {"baseline": environment_of(baseline, base), "new": environment_of(new, new_f)}
    env["differs"] = env["baseline"] != env["new"]
    return compare_frames(base, new_f, load_tolerances(tolerances_file), timing=timing, alpha=alpha,
                          calibration=load_calibration(calibration_files), env=env,
                          paired=paired_inputs(baseline, new, paired_boot))


def paired_inputs(baseline: str | Path, new: str | Path, paired_boot: int = DEFAULT_PAIRED_BOOT):
    """The stored features of both result sets for the paired test (None when `paired_boot` is 0)."""
    from genbench.results.paired import PairedInputs
    from genbench.results.stored_features import feature_index

    if paired_boot == 0:
        return None
    if paired_boot < 2:
        raise InvalidInputError(f"--paired-boot must be 0 (no paired test) or at least 2 replicates, got {paired_boot}")
    return PairedInputs(feature_index(baseline, "baseline"), feature_index(new, "new run"), int(paired_boot))


def environment_of(path: str | Path, frame: pd.DataFrame) -> str:
    """Where a result set was measured: the `hardware` its timing rows recorded (else 'unknown')."""
    if frame is None or frame.empty or "protocol" not in frame.columns:
        return "unknown"
    hw = {parse_protocol(p).get("hardware") for p in frame["protocol"]} - {None}
    if not hw:
        return "unknown (no hardware recorded: a result set from an older genbench)"
    return "; ".join(sorted(hw))


from genbench.results.compare_output import to_junit, to_markdown  # noqa: E402  (re-exported: the public API)
