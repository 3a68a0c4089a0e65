"""Backward-compatible name: the model protocol moved to `genbench.models.base` (users' models may subclass
`reference_models.base.GenerativeModel`, as the README says; it is the same class)."""

from genbench.models.base import *  # noqa: F401,F403
from genbench.models.base import (BUDGETS, LOG_PROB_BOUND, LOG_PROB_EXACT, LOG_PROB_NONE, Callback, FitHistory,  # noqa: F401
                                  GenerativeModel, ModelConfig, check_budget, image_log_prob_offset, info_from_dict)
