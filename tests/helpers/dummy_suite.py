"""A tiny suite file for runner tests: the `dummy-gauss` model (tests/runner_dummies.py) on ring8, FD only."""

from pathlib import Path

TEMPLATE = """
name = "{name}"
budget = "smoke"
device = "cpu"
seeds = {seeds}
n_bootstrap = 10

[speed]
batch_size = 64
repeats = 1
warmup = 0

[datasets.ring8]
features = "identity"
n_samples = 200
metrics = ["fd"]

[models.dummy-gauss]
{overrides}
"""


def write_dummy_suite(tmp_path: Path, name: str = "t", seeds=(0,), overrides: str = "") -> Path:
    p = Path(tmp_path) / "s.toml"
    p.write_text(TEMPLATE.format(name=name, seeds=list(seeds), overrides=overrides))
    return p
