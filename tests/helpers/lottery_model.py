"""A user model whose training outcome is a lottery over seeds, for the gate's confirmation tests
("tests.helpers.lottery_model:lottery").

The factory is called right after genbench seeds the job (`seed_everything(job.seed)`), so `torch.initial_seed()`
is the job's seed. Seeds listed in the environment variable GENBENCH_TEST_BAD_SEEDS (comma-separated) give a
"failed training": every sample near one mode of ring8 (as `collapsed_model.make`); other seeds give draws of
ring8's true mixture. A rare bad seed is what a heavy-tailed training does; every seed bad is a real regression.
"""

from __future__ import annotations

import os

import torch

from tests.helpers.collapsed_model import Collapsed


class TrueRing8:
    family = "toy"

    def __init__(self, info):
        from genbench.data import get_dataset

        self.info = info
        self.mixture = get_dataset("ring8").mixture

    def sample(self, n, seed=0):
        return self.mixture.sample(n, seed=int(seed)).float()


def lottery(info, budget: str = "quick"):
    seed = torch.initial_seed()
    bad = {int(s) for s in os.environ.get("GENBENCH_TEST_BAD_SEEDS", "").split(",") if s.strip()}
    return Collapsed(info, 0, 0.01) if seed in bad else TrueRing8(info)


lottery.modalities = ("points",)
