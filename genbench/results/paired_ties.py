"""Calling ties between two models of one run with the paired bootstrap (issue 18, item 5): used by
`genbench recommend` (its verdict) and by the report (the leaderboard's tie marks and tie lines).

Two models are compared on a feature metric (FD, KID, precision, recall, density, coverage) only when the run
scored both on the same dataset with the same metric protocol (the seed and the network's arithmetic,
`precision`, left aside) and the same seeds, and stored their features (genbench/results/stored_features.py). The
difference `other - best` then comes from `genbench.results.paired.model_difference`: the same reference rows (and fake
row indices) resampled for both models, `n_boot` replicates, a bias-corrected percentile interval at level
`LEVEL`. The two are *tied* on that metric when the interval contains 0 (identical features give exactly 0 with
an interval of width 0: a tie); otherwise the sign of the difference says which is better.

Every unordered pair is bootstrapped once, in name order (the replicates' seed is fixed by the pair: same run ->
same numbers), and the reversed difference is its exact negation; the bootstrap runs on one thread, so the
numbers do not depend on the machine's thread count either. Where the call cannot be made the reason is kept
(a results file instead of a run directory, no stored features, other seeds or protocols, ...).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from genbench.errors import InvalidInputError
from genbench.results.paired import DEFAULT_PAIRED_BOOT, PAIRED_METRICS, PairedResult

LEVEL = 0.95  # the level of model_difference's interval
# Protocol keys that do not change what a metric measures: the seed (the pairing uses the common seeds) and
# the arithmetic the model's network ran in.
_PROTOCOL_FREE = ("seed", "precision")


@dataclass
class TieCall:
    """The paired call between `best` and `other` on one metric: `diff` is other - best (None with `why`)."""

    metric: str
    best: str
    other: str
    higher_is_better: bool
    diff: Optional[tuple] = None  # (delta, low, high) of other - best
    n_boot: int = DEFAULT_PAIRED_BOOT
    why: str = ""

    @property
    def available(self) -> bool:
        return self.diff is not None

    @property
    def tied(self) -> bool:
        """The interval of the difference contains 0."""
        return self.diff is not None and self.diff[1] <= 0.0 <= self.diff[2]

    @property
    def best_ahead(self) -> bool:
        """Not tied, and the difference says `best` is the better one on this metric."""
        if self.diff is None or self.tied:
            return False
        return (self.diff[0] < 0) if self.higher_is_better else (self.diff[0] > 0)

    def interval_text(self) -> str:
        """'3.1 [-2, 8.4]': the difference other - best and its interval."""
        d, lo, hi = self.diff
        return f"{_num(d)} [{_num(lo)}, {_num(hi)}]"


def _num(v: float) -> str:
    if v == 0:
        return "0"
    s = f"{v:.3g}"
    return s if "e" not in s or abs(v) < 1e-4 else f"{v:.{max(0, 2 - math.floor(math.log10(abs(v))))}f}"


def protocol_text(n_boot: int) -> str:
    """The test in words, for the verdict and the report's legend."""
    return (f"{LEVEL:.0%} interval of the difference from a paired bootstrap over the same reference rows, "
            f"{n_boot} replicates")


class PairedTies:
    """The paired tie calls of one run directory, computed on demand and cached."""

    def __init__(self, path: str | Path, n_boot: int = DEFAULT_PAIRED_BOOT, frame=None):
        """`path`: the run directory (or results.db) the results come from. `n_boot` 0 turns the calls off
        (each then says so). `frame`: the store's metrics frame, when the caller has read it already."""
        self.path = Path(path)
        self.n_boot = int(n_boot)
        self.reason = ""
        self._frame = frame
        self._cache: dict = {}
        if self.n_boot == 0:
            self.reason = "turned off (--paired-boot 0)"
        elif self.n_boot < 2:
            raise InvalidInputError(f"--paired-boot must be 0 (no tie call) or at least 2 replicates, got {n_boot}")
        else:
            db = self.path / "results.db" if self.path.is_dir() else self.path
            if db.suffix != ".db" or not db.exists():
                self.reason = (f"{path} is not a run directory with a results.db (a results.csv / .json keeps no "
                               "features)")
            else:
                from genbench.results.stored_features import feature_index

                idx = feature_index(db, "run")
                if idx.reason:
                    self.reason = idx.reason
                self.db = db

    def protocol(self) -> str:
        return protocol_text(self.n_boot)

    # ----------------------------------------------------------------------------------------------- checks
    def _metrics_frame(self):
        if self._frame is None:
            from genbench.results.store import ResultsStore

            with ResultsStore(self.db) as st:
                self._frame = st.metrics_frame()
        return self._frame

    def _mismatch(self, dataset: str, a: str, b: str, metric: str) -> str:
        """Why a and b cannot be paired on `metric` (other seeds or protocols), or ""."""
        f = self._metrics_frame()
        f = f[(f["dataset"] == dataset) & (f["metric"] == metric) & (f["variant"].fillna("") == "")]
        seeds, protos = {}, {}
        for m in (a, b):
            g = f[f["model"] == m]
            if g.empty:
                return f"{m} has no {metric} in the run's store"
            seeds[m] = sorted(int(s) for s in g["seed"])
            protos[m] = {json.dumps({k: v for k, v in json.loads(p or "{}").items() if k not in _PROTOCOL_FREE},
                                    sort_keys=True) for p in g["protocol"]}
        if seeds[a] != seeds[b]:
            return f"scored with other seeds ({a}: {_seeds(seeds[a])}; {b}: {_seeds(seeds[b])})"
        if protos[a] != protos[b] or len(protos[a]) != 1:
            return f"{metric} was scored under different protocols for {a} and {b}"
        return ""

    # ----------------------------------------------------------------------------------------------- calls
    def calls(self, dataset: str, best: str, other: str, metrics: dict) -> dict[str, TieCall]:
        """{metric: TieCall of other - best} for `metrics` ({metric: higher_is_better}; non-paired ones are
        left out)."""
        todo = [m for m in metrics if m in PAIRED_METRICS]
        if self.reason:
            return {m: TieCall(m, best, other, metrics[m], n_boot=self.n_boot, why=self.reason) for m in todo}
        lo, hi = sorted((best, other))
        missing = [m for m in todo if (dataset, lo, hi, m) not in self._cache]
        if missing:
            self._compute(dataset, lo, hi, missing)
        out = {}
        for m in todo:
            got = self._cache[(dataset, lo, hi, m)]
            if isinstance(got, PairedResult):
                d, (cl, ch) = got.delta, got.ci
                if best != lo:  # cached as hi - lo = best - other: negate
                    d, cl, ch = -d, -ch, -cl
                out[m] = TieCall(m, best, other, metrics[m], (d, cl, ch), self.n_boot)
            else:
                out[m] = TieCall(m, best, other, metrics[m], n_boot=self.n_boot, why=str(got))
        return out

    def _compute(self, dataset: str, lo: str, hi: str, metrics: list) -> None:
        """model_difference(hi - lo) for the metrics not yet known, cached per metric."""
        from genbench.results.paired import model_difference

        want = []
        for m in metrics:
            why = self._mismatch(dataset, lo, hi, m)
            if why:
                self._cache[(dataset, lo, hi, m)] = why
            else:
                want.append(m)
        if not want:
            return
        try:
            res = model_difference(self.db, dataset, lo, hi, metrics=tuple(want), n_boot=self.n_boot)
        except InvalidInputError as e:
            res = {m: str(e) for m in want}
        for m in want:
            self._cache[(dataset, lo, hi, m)] = res.get(m, f"{m} was not scored for both models")


def _seeds(s: list) -> str:
    return ", ".join(str(x) for x in s) or "none"


__all__ = ["LEVEL", "PairedTies", "TieCall", "protocol_text"]
