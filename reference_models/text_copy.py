"""The training-set copy baseline for text (family "baseline"): it emits training text verbatim.

Line mode (e.g. names): each sample is a training line drawn uniformly at random (with replacement).
Stream mode (e.g. shakespeare-char): each sample is the `sample_length` characters that follow a randomly
chosen line start of the training text. Its samples look perfect and have zero novelty: the floor of any
novelty / memorisation column. No likelihood (log_prob_kind "none").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genbench.errors import InvalidInputError
from genbench.models import register_model
from genbench.models.base import LOG_PROB_NONE, check_budget
from reference_models.text_base import TextConfig, TextModel


@dataclass
class TextCopyConfig(TextConfig):
    @classmethod
    def for_budget(cls, budget: str, info) -> "TextCopyConfig":
        check_budget(budget)
        return cls(steps=1, sample_length=64 if budget == "smoke" else 256)


@register_model
class TextCopy(TextModel):
    name = "text-copy"
    family = "baseline"
    log_prob_kind = LOG_PROB_NONE
    Config = TextCopyConfig

    def _build(self) -> None:
        self.text_ = ""
        self.lines_: list[str] = []
        self.starts_ = torch.empty(0, dtype=torch.long)

    def _fit_ids(self, ids, seed, callbacks):
        text = self.decode(ids.tolist())
        self._set_text(text)
        self.history.steps = 1
        self.history.log(0, lines=float(len(self.lines_)))
        for cb in callbacks:
            cb(0, {"loss": 0.0})

    def _set_text(self, text: str) -> None:
        self.text_ = text
        self.lines_ = [ln for ln in text.split("\n") if ln]
        L = int(self.config.sample_length)
        starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
        starts = [s for s in starts if s + L <= len(text)] or [0]
        self.starts_ = torch.tensor(starts, dtype=torch.long)

    def _generate(self, n, gen, use_cache=True, length=None, stop_at_newline=None):
        if not self.text_:
            raise InvalidInputError("text-copy has no training text: call fit(train_split) first")
        if self.sample_mode == "line":
            idx = torch.randint(0, len(self.lines_), (n,), generator=gen)
            return [self.lines_[i][: self.config.max_line_length] for i in idx.tolist()]
        L = int(length or self.config.sample_length)
        idx = torch.randint(0, len(self.starts_), (n,), generator=gen)
        return [self.text_[s : s + L] for s in self.starts_[idx].tolist()]

    def extra_state(self):
        return {"text": self.text_}

    def load_extra_state(self, state):
        self._set_text(state.get("text", ""))
