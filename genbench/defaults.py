"""genbench's defaults, in one place: what a suite, `genbench eval` or the pipeline uses when nothing says
otherwise. Changing a value here changes numbers (a run's jobs are redone: the pipeline's code digest covers
genbench/pipeline/, and these values enter job specs through the suite)."""

from __future__ import annotations

# ---- budgets ---------------------------------------------------------------------------------------------------
BUDGETS = ("smoke", "quick", "standard")  # smoke: seconds (tests); quick: CPU; standard: GPU
DEFAULT_BUDGET = "quick"

# ---- bootstrap resamples for confidence intervals (0: none) ----------------------------------------------------
SUITE_N_BOOTSTRAP = 200  # a suite file without `n_bootstrap`
EVAL_N_BOOTSTRAP = 100  # `genbench eval` on a dataset no suite covers (user data)
CONTEXT_N_BOOTSTRAP = 0  # the metrics library called directly (EvalContext): no intervals unless asked

# ---- batch sizes -----------------------------------------------------------------------------------------------
SPEED_BATCH_SIZE = 256  # [speed] batch_size: samples per timed batch (and per sampling chunk)
SPEED_REPEATS = 5  # [speed] repeats: timed batches (median)
SPEED_WARMUP = 1  # [speed] warmup: untimed batches first
FEATURE_BATCH_SIZE = 256  # items per feature-extractor call (real and generated)

# ---- sizes -----------------------------------------------------------------------------------------------------
EVAL_N_SAMPLES = 2000  # `genbench eval` on a dataset no suite covers
TEXT_LIKELIHOOD_CHARS = 20000  # held-out characters scored for bits/char when a suite gives no n_likelihood
TEXT_SPEED_CHARS = 256  # characters per timed text generation (chars/s)

# ---- seeds -----------------------------------------------------------------------------------------------------
REAL_SUBSET_SEED = 20240601  # the real reference subset is the same for every job and seed
