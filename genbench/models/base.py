"""The protocol every generative model in genbench implements (built-in reference models and users' own).

A model is constructed from a config dataclass and the `DatasetInfo` it will model, then:

    model = create_model("ddpm", data_info, budget="quick")     # config defaults for that budget
    history = model.fit(train_x, budget="quick", seed=0, device="cpu", callbacks=[...])
    x = model.sample(1000, seed=0)                               # CPU tensor in the dataset's value range
    lp = model.log_prob(x)                                       # nats per example (see LOG_PROB_* below)
    model.save(dirpath); same = load_model(dirpath)              # same.sample(n, seed) == model.sample(n, seed)

Log-likelihood conventions (so bits/dim means the same thing for every family):
- points: `log_prob` is the continuous log density in nats.
- images (8-bit data scaled to [0, 1]): `log_prob` is the log *probability of the discrete 8-bit image* in nats
  (continuous models dequantise and subtract D*ln(256)), so bits/dim = -log_prob / (D ln 2).
- `log_prob_kind`: "exact", "bound" (a lower bound on log-likelihood: ELBO, IWAE, diffusion VLB) or "none".

Text models (modality "text"; genbench/models/text.py and reference_models/text_base.py have the details):
- `fit(train_split)` takes the `TextSplit` itself (not encoded ids); the vocabulary is the split's `vocab`.
- `sample(n, seed)` returns a list of n strings: one line each (generated from "\n" up to the next "\n") for
  line datasets such as names, or `sample_length` characters each (from "\n") for running text such as
  shakespeare-char (`config.sample_mode`, resolved at fit time). `sample(n, seed, condition=prefixes)` (n prefix
  strings; transformer, lstm, ngram) returns each prefix followed by its continuation, and
  `continuation_log_prob(prefixes, continuations)` is log P(continuation | "\n" + prefix) (reference_models/text_prefix.py).
- `nll_per_char(text, context, stride) -> (nats per character, n characters)`: exact NLL of a held-out text by
  a sliding window (windows of `context`, advancing by `stride`, every character scored once); `log_prob(lines)`
  is log P(line + "\n" | "\n") in nats per string.

Conditional models (genbench/models/conditions.py): a class with `conditional = True` accepts class labels
0..K-1 (K = `model.condition_classes`, the dataset's `num_classes`; such a model needs a labelled dataset):
- `fit(train_x, ..., labels=train_y)` trains on the labels too;
- `sample(n, seed, condition=y)` draws sample i for class y[i] (y: n integer labels; a label outside 0..K-1, a wrong
  length or a condition given to an unconditional model raise InvalidInputError); `condition=None` leaves the class
  to the model. Subclasses implement `_sample(n, generator, condition=None)` (the labels of that batch, or None).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Optional

import torch

from genbench.data.base import DatasetInfo
from genbench.defaults import BUDGETS
from genbench.models.checkpoint import encode_state, load_weights, read_verified, write_manifest
from genbench.models.precision import precision_label

LOG_PROB_EXACT, LOG_PROB_BOUND, LOG_PROB_NONE = "exact", "bound", "none"


@dataclass
class ModelConfig:
    """Base config. Subclasses add their hyper-parameters with defaults; `for_budget` returns per-budget defaults.

    `steps` and `max_seconds` form the training budget: training stops at whichever comes first.
    """

    steps: int = 1000
    max_seconds: Optional[float] = None
    batch_size: int = 128
    lr: float = 1e-3

    @classmethod
    def for_budget(cls, budget: str, info: DatasetInfo) -> "ModelConfig":
        """Defaults for `budget` ("smoke" tiny, "quick" CPU, "standard" GPU). Subclasses override."""
        check_budget(budget)
        return cls()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}; valid keys: {sorted(names)}")
        return cls(**d)


def check_budget(budget: str) -> str:
    if budget not in BUDGETS:
        from genbench.registry import unknown_name_message

        raise ValueError(unknown_name_message("budget", budget, BUDGETS))
    return budget


# A callback receives (step, logs) where logs holds at least {"loss": float}; it may return "stop" to end training.
Callback = Callable[[int, dict], Optional[str]]


@dataclass
class FitHistory:
    steps: int = 0
    seconds: float = 0.0
    records: list = dataclasses.field(default_factory=list)  # [{"step": s, "loss": l, ...}, ...]
    checkpoints: dict = dataclasses.field(default_factory=dict)  # e.g. {"best": {...}, "last": {...}} for GANs

    def log(self, step: int, **values: float) -> dict:
        rec = {"step": int(step), **{k: float(v) for k, v in values.items()}}
        self.records.append(rec)
        return rec


class GenerativeModel(ABC):
    """Base class. Subclasses set the ClassVars, build every network in `__init__` (from config and info, so
    that `load_model` can restore state into them), and implement `fit`, `_sample`, `modules` and, where
    tractable, `_log_prob`."""

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""  # "gan" | "vae" | "diffusion" | "flow" | "autoregressive" | "baseline"
    modalities: ClassVar[tuple] = ("points", "image")
    log_prob_kind: ClassVar[str] = LOG_PROB_NONE
    Config: ClassVar[type] = ModelConfig
    conditional: ClassVar[bool] = False  # True: sample(n, seed, condition=class labels) (module docstring)

    def __init__(self, config: ModelConfig, info: DatasetInfo):
        if info.modality not in self.modalities:
            raise ValueError(
                f"model {self.name!r} supports {', '.join(self.modalities)} data, "
                f"not {info.modality!r} (dataset {info.name!r})"
            )
        if self.conditional and not info.num_classes:
            from genbench.errors import InvalidInputError

            raise InvalidInputError(f"model {self.name!r} is class-conditional and needs a labelled dataset; "
                                    f"dataset {info.name!r} has no class labels (num_classes is not set)")
        self.config = config
        self.info = info
        self.device = torch.device("cpu")
        self.history = FitHistory()

    # ---- training -------------------------------------------------------------------------------------------
    @abstractmethod
    def fit(
        self,
        train: torch.Tensor,
        budget: Optional[str] = None,
        seed: int = 0,
        device: str | torch.device = "cpu",
        callbacks: Iterable[Callback] = (),
    ) -> FitHistory:
        """Train on `train` (items in the dataset's value range). `budget`, when given, replaces the config's
        step/time budget by that budget's defaults. Deterministic for a given seed on CPU."""

    # ---- sampling -------------------------------------------------------------------------------------------
    @property
    def condition_classes(self) -> Optional[int]:
        """The number K of class labels (0..K-1) the model accepts as conditions; None for an unconditional model."""
        return int(self.info.num_classes) if self.conditional and self.info.num_classes else None

    @torch.inference_mode()
    def sample(self, n: int, seed: int = 0, batch_size: Optional[int] = None, condition=None) -> torch.Tensor:
        """`n` samples as a float32 CPU tensor shaped (n, *info.shape), clamped to the value range.
        The same seed gives the same samples whatever the batch size is not guaranteed; the same
        (seed, batch_size) always gives the same samples. `condition`: n class labels for a conditional model
        (module docstring), checked against the classes it declares."""
        if condition is not None:
            from genbench.models.conditions import check_condition

            condition = check_condition(condition, int(n), self.condition_classes, f"model {self.name!r}")
        bs = int(batch_size or max(1, min(n, 1024)))
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        out = []
        done = 0
        while done < n:
            b = min(bs, n - done)
            if self.conditional:
                part = self._sample(b, gen, condition=None if condition is None else condition[done:done + b])
            else:
                part = self._sample(b, gen)
            out.append(part.detach().float().cpu())
            done += b
        x = torch.cat(out, 0) if out else torch.empty(0, *self.info.shape)
        lo, hi = self.info.value_range
        if self.info.modality == "image":
            x = x.clamp(lo, hi)
        return x

    @abstractmethod
    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """`n` samples; draw all randomness from `generator` (a CPU generator: draw on CPU then move). A conditional
        model's `_sample(n, generator, condition=None)` also receives the batch's labels ((n,) int64, or None)."""

    @property
    def nfe_per_sample(self) -> float:
        """Network evaluations needed to draw one sample (diffusion steps, pixels for PixelCNN)."""
        return 1.0

    # ---- likelihood -----------------------------------------------------------------------------------------
    def log_prob(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Per-example log-likelihood in nats (see module docstring); raises if `log_prob_kind == "none"`."""
        if self.log_prob_kind == LOG_PROB_NONE:
            raise NotImplementedError(f"model {self.name!r} has no tractable likelihood")
        with torch.inference_mode():
            parts = [self._log_prob(x[i : i + batch_size].to(self.device)).double().cpu() for i in range(0, len(x), batch_size)]
        return torch.cat(parts) if parts else torch.empty(0, dtype=torch.float64)

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # ---- bookkeeping ----------------------------------------------------------------------------------------
    def modules(self) -> dict[str, torch.nn.Module]:
        """Named networks whose state is saved; subclasses override."""
        return {}

    @property
    def num_params(self) -> int:
        """Parameters of the networks that define the model (`model_modules`), not of training-only copies."""
        return sum(p.numel() for m in self.model_modules().values() for p in m.parameters())

    def precision(self, device: str | torch.device | None = None) -> str:
        """'bf16-autocast' or 'float32': the arithmetic of this model's networks on `device` (default: its own),
        from the config's `mixed_precision` (or `amp`) and `cpu_bf16` flags (`genbench.models.precision.uses_bf16`)."""
        c = self.config
        enabled = bool(getattr(c, "mixed_precision", getattr(c, "amp", False)))
        return precision_label(torch.device(device) if device is not None else self.device, enabled,
                               bool(getattr(c, "cpu_bf16", False)))

    def model_modules(self) -> dict[str, torch.nn.Module]:
        """The networks that make up the model as a generator/density (what `num_params` counts). By default
        every saved network; a model that also saves training-only networks or copies (a GAN's discriminator and
        its EMA / best-checkpoint generators, diffusion's raw weights beside the EMA ones) returns one copy."""
        return self.modules()

    def memory_format(self, device: torch.device) -> Optional[torch.memory_format]:
        """Layout of the networks' 4-d weights on `device`: channels-last for image models on CUDA (faster with
        cuDNN), else as built. `to` applies it, so a fitted model and the same model loaded from disk and moved
        to the device run the same kernels (and sample the same numbers). A model that trains channels-last on
        every device overrides this."""
        return torch.channels_last if self.info.modality == "image" and device.type == "cuda" else None

    def to(self, device: str | torch.device) -> "GenerativeModel":
        self.device = torch.device(device)
        fmt = self.memory_format(self.device)
        for m in self.modules().values():
            m.to(self.device)
            if fmt is not None:
                m.to(memory_format=fmt)
        return self

    def extra_state(self) -> dict[str, Any]:
        """Non-network state to save (fitted parameters, buffers...): tensors, NumPy arrays, numbers, strings and
        containers of these (`genbench.models.checkpoint.encode_state`); checkpoints never hold other objects."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def save(self, path: str | os.PathLike) -> Path:
        """Write `config.json`, `weights.pt` and their sha256 manifest `checksums.json` into directory `path`
        atomically (temp dir + rename); see genbench/models/checkpoint.py."""
        path = Path(path)
        state = {k: m.state_dict() for k, m in self.modules().items()}
        blob = encode_state({"modules": state, "extra": self.extra_state()}, where=f"model {self.name!r} state")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        meta = {
            "model": self.name,
            "family": self.family,
            "config": self.config.to_dict(),
            "data_info": self.info.to_dict() | {"licence": self.info.licence},
            "history": dataclasses.asdict(self.history),
        }
        (tmp / "config.json").write_text(json.dumps(meta, indent=2, default=str))
        torch.save(blob, tmp / "weights.pt")
        write_manifest(tmp)
        if path.exists():
            old = path.with_name(path.name + f".old-{os.getpid()}-{time.time_ns()}")
            path.rename(old)
            tmp.rename(path)
            import shutil

            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
        return path

    def _load_state(self, path: Path) -> None:
        """Restore networks, extra state and history from a checkpoint whose files match its manifest, loading
        only plain data (`CheckpointError` otherwise; see genbench/models/checkpoint.py)."""
        blob = load_weights(path)
        mods = self.modules()
        for k, sd in blob["modules"].items():
            mods[k].load_state_dict(sd)
        self.load_extra_state(blob.get("extra", {}))
        meta = json.loads(read_verified(path, "config.json"))
        h = meta.get("history") or {}
        self.history = FitHistory(**h) if h else FitHistory()


def info_from_dict(d: dict[str, Any]) -> DatasetInfo:
    return DatasetInfo(
        name=d["name"],
        modality=d["modality"],
        shape=tuple(d["shape"]),
        value_range=tuple(d["value_range"]),
        num_classes=d.get("num_classes"),
        num_modes=d.get("num_modes"),
        licence=d.get("licence", ""),
    )


def image_log_prob_offset(info: DatasetInfo) -> float:
    """D * ln(256): subtract from a continuous [0,1]-scale log density to get the 8-bit discrete log-probability."""
    return info.dim * math.log(256.0)
