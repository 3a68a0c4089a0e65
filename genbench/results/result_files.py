"""Reading one result set for comparison: a run directory, or its `results.db`, `results.csv` or `results.json`,
as long-format metrics (one row per score: dataset, model, metric, variant, seed, value, CI, unit, direction,
protocol). Bad input (a missing file, a non-genbench file, a record without its dataset/model/metric) raises
InvalidInputError saying what was wrong.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from genbench.errors import InvalidInputError


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

    from genbench.results.store import ResultsStore, check_store_file

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
    for col in ("dataset", "model", "metric"):
        blank = frame[col].isna()
        if blank.any():
            raise InvalidInputError(f"{source}: {int(blank.sum())} record(s) have no {col} (the first is record "
                                    f"{int(blank.to_numpy().nonzero()[0][0]) + 1}); every score needs its dataset, "
                                    "model and metric")
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
        status = frame["status"].fillna("").astype(str).str.strip()
        frame = frame[status.isin(("done", ""))]  # blank or missing: a finished row of a file without statuses
    return frame


def _as_bool(v) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes")
    return bool(v)
