"""The part of the text-model protocol the harness reads (reference_models/text_base.py builds the models on it):
how a text model's samples are shaped, so real text can be cut the same way for the metrics.

- "line" datasets (short independent lines, e.g. names): one sample = one line;
- "stream" datasets (running text, e.g. shakespeare-char): one sample = `sample_length` characters.
"""

from __future__ import annotations

import math

from genbench.data.base import TextSplit

SAMPLE_MODES = ("auto", "line", "stream")
DEFAULT_SAMPLE_LENGTH = 256  # stream mode: characters per sample (TextConfig.sample_length)


def resolve_sample_mode(split: TextSplit) -> str:
    lines = split.lines
    if not lines:
        return "stream"
    lengths = sorted(len(ln) for ln in lines)
    p95 = lengths[min(len(lengths) - 1, int(math.ceil(0.95 * len(lengths))) - 1)]
    return "line" if p95 <= 32 else "stream"
