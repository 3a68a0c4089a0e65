"""The built-in `smoke` suite runs end to end through the command line and records every registered family."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from genbench.results.store import ResultsStore
from genbench.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]


def test_smoke_suite_end_to_end(tmp_path):
    out = tmp_path / "smoke"
    env = dict(os.environ, OMP_NUM_THREADS="1")  # 2 shared cores: one thread avoids OpenMP oversubscription
    r = subprocess.run([sys.executable, "-m", "genbench.cli", "run", "smoke", "--out", str(out), "--quiet"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("results.db", "results.csv", "results.json"):
        assert (out / name).stat().st_size > 0

    from reference_models import get_model_class, list_models

    suite = load_suite("smoke")
    store = ResultsStore(out)
    jobs = store.jobs_frame()
    assert len(jobs) == len(suite.pairs()) * len(suite.seeds)
    assert set(jobs.status) == {"done"}, jobs[jobs.status != "done"][["job_id", "error"]].to_string()
    families = {get_model_class(m).family for m in list_models()}
    csv = pd.read_csv(out / "results.csv")
    for col in ("dataset", "model", "family", "seed", "metric", "value", "ci_low", "ci_high", "unit",
                "higher_is_better", "protocol"):
        assert col in csv.columns
    assert set(csv.family) == families  # every registered family is benchmarked by the smoke suite
    assert set(csv.model) == {m.name for m in suite.models}
    blob = json.loads((out / "results.json").read_text())
    assert len(blob["metrics"]) == len(csv) and blob["runs"][0]["suite_name"] == "smoke"
    # every job has quality numbers and the speed/cost figures
    for job_id, g in store.metrics_frame().groupby("job_id"):
        names = set(g.metric)
        assert {"samples_per_s", "latency_ms", "nfe", "train_seconds", "peak_memory_mb", "num_params"} <= names, job_id
        assert len(names) > 6, (job_id, names)
    # each job's samples preview exists
    arts = store.artifacts()
    prev = arts[arts.kind == "samples_preview"]
    assert len(prev) == len(jobs) and all((out / p).exists() for p in prev.path)
