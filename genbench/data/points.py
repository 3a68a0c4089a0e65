"""2D toy mixtures as datasets: ring8 and grid25 (PacGAN / VEEGAN protocol, parameters in mixtures.py).

train = 10000 points drawn with seed TRAIN_SEED, test = 2500 points (the VEEGAN evaluation count) drawn
with seed TEST_SEED; `y` is the generating component. The true mixture is `.mixture` (exact log_prob).
"""

from __future__ import annotations

from genbench.data.base import DataSplit, Dataset, DatasetInfo
from genbench.data.mixtures import GaussianMixture2D, grid25, ring8

TRAIN_SEED = 1234
TEST_SEED = 5678
N_TRAIN = 10000
N_TEST = 2500


class MixtureDataset(Dataset):
    def __init__(self, mixture: GaussianMixture2D, n_train: int = N_TRAIN, n_test: int = N_TEST):
        self.mixture = mixture
        lo = float(mixture.means.min()) - 5 * mixture.std
        hi = float(mixture.means.max()) + 5 * mixture.std
        self.n = {"train": int(n_train), "test": int(n_test)}
        self.sizes = dict(self.n)
        self.info = DatasetInfo(
            name=mixture.name, modality="points", shape=(2,), value_range=(lo, hi), num_classes=None,
            num_modes=mixture.num_modes, licence="synthetic (no licence needed)",
            description=f"{mixture.num_modes} isotropic Gaussians, std {mixture.std} (PacGAN toy protocol)",
        )

    def _load(self, split):
        seed = TRAIN_SEED if split == "train" else TEST_SEED
        x, y = self.mixture.sample_with_labels(self.n[split], seed)
        return DataSplit(x, y, self.info, split, source=f"generated(seed={seed})",
                         meta={"seed": seed, "n": self.n[split], "variant": "exact-mixture"})


def make_ring8(**kw) -> MixtureDataset:
    return MixtureDataset(ring8(), **kw)


def make_grid25(**kw) -> MixtureDataset:
    return MixtureDataset(grid25(), **kw)
