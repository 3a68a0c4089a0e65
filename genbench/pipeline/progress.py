"""Progress bars (stderr, off with --quiet) and the training monitor that stops a diverging job."""

from __future__ import annotations

import math
import sys

from genbench.pipeline.jobs import JobFailure


def progress_bar(quiet: bool, **kw):
    from tqdm.auto import tqdm

    return tqdm(disable=quiet, leave=False, file=sys.stderr, dynamic_ncols=True, **kw)


class TrainMonitor:
    """Training callback: a progress bar and a divergence check (non-finite loss stops the job)."""

    def __init__(self, total: int, desc: str, quiet: bool):
        self.bar = progress_bar(quiet, total=total, desc=desc, unit="step")
        self.last = 0

    def __call__(self, step: int, logs: dict):
        for k, v in logs.items():
            if isinstance(v, (int, float)) and ("loss" in k) and not math.isfinite(v):
                raise JobFailure(f"training diverged at step {step}: {k} = {v}")
        if step > self.last:
            self.bar.update(step - self.last)
            self.last = step
        loss = logs.get("loss")
        if isinstance(loss, (int, float)):
            self.bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
        return None

    def close(self):
        self.bar.close()
