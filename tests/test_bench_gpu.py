"""benchmarks/bench_gpu.py --dry-run: the device script's every section runs on the CPU at a tiny scale (slow:
CPU Inception)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_gpu_dry_run(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks/bench_gpu.py"), "--dry-run", "--out", str(tmp_path),
                        "--suite-limit", "900"], capture_output=True, text=True, timeout=1800)
    res = json.loads((tmp_path / "gpu.json").read_text())
    assert set(res) == {"env", "resize", "text", "smoke", "inception", "suite"}, r.stdout[-2000:]
    for name, sec in res.items():
        assert sec["ok"], (name, sec)
    assert res["resize"]["max_abs_diff_28px"] <= 1e-4
    assert all(res["text"]["ids_identical_eager_vs_graphs"].values())
    assert res["smoke"]["rc"] == 0 and res["smoke"]["jobs"]["failed"] == []
    assert res["inception"]["fid_rel_diff"] <= 1e-4
    assert not res["suite"]["timed_out"] and res["suite"]["jobs"]["failed"] == []
    assert (tmp_path / "standard-gpu.tar.gz").stat().st_size > 0 and (tmp_path / "gpu.md").exists()
