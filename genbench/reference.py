"""Reference points: the models that bound a leaderboard instead of competing on it.

A model is a reference point when its family is `baseline` (the store's jobs table and metrics frame record each
model's family). The built-in ones are train-copy and text-copy (they replay training data: the *memorisation
ceiling*, unbeatable on sample quality and useless as a generator) and gmm and ngram (the *classical floor*: a
model that cannot beat them has learned nothing a 1990s method could not). To mark a model of your own as a
reference point, give its class `family = "baseline"` (see genbench/models/external.py).

Reports show reference points in their own band under each table, `recommend` leaves them out of its ranking
(unless asked with --include-baselines), and the summary's "leads" sentences and the Pareto fronts ignore them.
"""

from __future__ import annotations

from typing import Iterable, Optional

import pandas as pd

REFERENCE_FAMILY = "baseline"
CEILING, FLOOR, OTHER = "ceiling", "floor", "reference"

# What each built-in reference point bounds.
ROLES: dict[str, str] = {"train-copy": CEILING, "text-copy": CEILING, "gmm": FLOOR, "ngram": FLOOR}
ROLE_LABELS = {CEILING: "memorisation ceiling", FLOOR: "classical floor", OTHER: "reference point"}


def is_reference(family: Optional[str]) -> bool:
    """Is a model of this family a reference point (not a contestant)?"""
    return str(family or "").strip().lower() == REFERENCE_FAMILY


def role_of(model: str) -> str:
    """CEILING, FLOOR or OTHER (a user's own reference point)."""
    return ROLES.get(model, OTHER)


def role_label(model: str, modality: Optional[str] = None) -> str:
    """'memorisation ceiling', 'memorisation ceiling for text', 'classical floor' or 'reference point'."""
    role = role_of(model)
    text = ROLE_LABELS[role]
    return text + " for text" if role == CEILING and modality == "text" else text


def reference_models(frame: pd.DataFrame, dataset: Optional[str] = None) -> set[str]:
    """Models of a long-format metrics frame (or jobs frame) whose family marks them as reference points."""
    if frame is None or frame.empty or "family" not in frame.columns:
        return set()
    f = frame if dataset is None else frame[frame["dataset"] == dataset]
    return {str(m) for m, fam in zip(f["model"], f["family"]) if is_reference(fam)}


def split(models: Iterable[str], references: set) -> tuple[list, list]:
    """(contestants, reference points), each in the given order."""
    ms = list(models)
    return [m for m in ms if m not in references], [m for m in ms if m in references]
