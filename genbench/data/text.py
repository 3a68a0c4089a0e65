"""Text datasets for character-level models: shakespeare-char and names.

shakespeare-char: the 42 works of the `shakespeare` asset (Project Gutenberg text, modern spelling), used
as is (no normalisation: case, punctuation, blank lines kept; the text is ASCII). Held-out split by
contiguous blocks: in every work the last 10% of its lines (cut at a line boundary) is test, the rest train;
the works are concatenated in file-name order. So every work appears in both splits but no line is in both.
The vocabulary is the sorted set of characters of the whole corpus (train and test agree on ids).

names: the 88,799 US-census surnames (`names` asset, first column of dist.all.last), lower-cased, one per
line, each line ending in "\n" (the end-of-name token). Split by line with seed SPLIT_SEED: 10% test.
"""

from __future__ import annotations

import torch

from genbench.assets import ASSETS, fetch, probe, status
from genbench.data.base import Dataset, DatasetInfo, TextSplit

SPLIT_SEED = 0
TEST_FRACTION = 0.1


def _origin(asset_name: str) -> str:
    return "; ".join(status(asset_name).sources) or "genbench cache"


def split_work(text: str, test_fraction: float = TEST_FRACTION) -> tuple[str, str]:
    """(train, test) of one work: test is the last `test_fraction` of its lines (whole lines)."""
    lines = text.splitlines(keepends=True)
    k = int(round(len(lines) * (1.0 - test_fraction)))
    return "".join(lines[:k]), "".join(lines[k:])


class ShakespeareChar(Dataset):
    def __init__(self):
        self.sizes = {"train": 4554055, "test": 503184}
        self.size_unit = "chars"
        self.info = DatasetInfo(
            name="shakespeare-char", modality="text", shape=(), value_range=(0, 0), licence="public domain",
            description="Shakespeare's 42 works (Gutenberg), characters; test = last 10% of each work's lines")
        self._cache = None

    def available(self):
        return probe("shakespeare")

    def _splits(self):
        if self._cache is None:
            d = fetch("shakespeare")
            works = sorted(m.name for m in ASSETS.get("shakespeare").members)
            tr, te = [], []
            for w in works:
                text = (d / w).read_text(encoding="utf-8")
                a, b = split_work(text)
                tr.append(a if a.endswith("\n") else a + "\n")
                te.append(b if b.endswith("\n") else b + "\n")
            train, test = "".join(tr), "".join(te)
            vocab = sorted(set(train) | set(test))
            self._cache = {"train": train, "test": test, "vocab": vocab, "works": works}
        return self._cache

    def _load(self, split):
        c = self._splits()
        a = ASSETS.get("shakespeare")
        return TextSplit(c[split], list(c["vocab"]), self.info, split,
                         source=f"asset shakespeare ({_origin('shakespeare')})",
                         meta={"variant": "gutenberg-42-works", "asset_sha256": a.sha256, "works": len(c["works"]),
                               "split": "last 10% of the lines of every work is test"})


class Names(Dataset):
    def __init__(self, lowercase: bool = True):
        self.lowercase = lowercase
        self.sizes = {"train": 79919, "test": 8880}
        self.size_unit = "lines"
        self.info = DatasetInfo(
            name="names", modality="text", shape=(), value_range=(0, 0), licence="public domain (US Census)",
            description="88,799 US census surnames, lower-cased, one per line; seeded 90/10 split by line")
        self._cache = None

    def available(self):
        return probe("names")

    def _splits(self):
        if self._cache is None:
            p = fetch("names")
            names = [ln.split()[0] for ln in p.read_text(encoding="ascii").splitlines() if ln.strip()]
            if self.lowercase:
                names = [n.lower() for n in names]
            g = torch.Generator().manual_seed(SPLIT_SEED)
            perm = torch.randperm(len(names), generator=g).tolist()
            k = int(round(TEST_FRACTION * len(names)))
            test_idx, train_idx = sorted(perm[:k]), sorted(perm[k:])
            train = "".join(names[i] + "\n" for i in train_idx)
            test = "".join(names[i] + "\n" for i in test_idx)
            self._cache = {"train": train, "test": test, "vocab": sorted(set(train) | set(test))}
        return self._cache

    def _load(self, split):
        c = self._splits()
        return TextSplit(c[split], list(c["vocab"]), self.info, split, source=f"asset names ({_origin('names')})",
                         meta={"variant": "census-1990-surnames" + ("-lower" if self.lowercase else ""),
                               "asset_sha256": ASSETS.get("names").sha256, "split_seed": SPLIT_SEED})
