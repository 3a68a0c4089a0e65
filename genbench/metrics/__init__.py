"""The metric engine: every quality and diversity score genbench reports, with its protocol.

Functions work on float64 torch tensors (numpy arrays accepted), on CPU or GPU. The registry
(`METRICS`, `compute_metrics`) turns an `EvalContext` into `MetricResult`s for the runner."""

from genbench.metrics._util import MetricWarning
from genbench.metrics.base import MetricResult
from genbench.metrics.bootstrap import bootstrap_ci
from genbench.metrics.context import EvalContext
from genbench.metrics.cmmd import rbf_mmd2
from genbench.metrics.diversity import memorisation, vendi_score
from genbench.metrics.frechet import CrossGramFD, fd_route, frechet_distance, frechet_distance_features, trace_sqrt_product
from genbench.metrics.fd_infinity import fd_infinity
from genbench.metrics.inception_score import inception_score
from genbench.metrics.mauve import mauve
from genbench.metrics.kid import kid, kid_subset_indices, polynomial_mmd2
from genbench.metrics.likelihood import (
    bits_per_char,
    bits_per_dim,
    continuous_to_discrete_bits_per_dim,
    nats_to_bits_per_dim,
    perplexity,
)
from genbench.metrics.knn import knn_sq_radii
from genbench.metrics.manifold import prdc
from genbench.metrics.prdc_bootstrap import PrdcResampler, prdc_dedup
from genbench.metrics.modes import class_coverage, mode_coverage
from genbench.metrics.registry import (
    METRICS,
    MetricSpec,
    MetricUnavailable,
    compute_metrics,
    get_metric,
    list_metrics,
    register_metric,
)
from genbench.metrics.stats import StreamingGaussianStats, gaussian_stats

from genbench.metrics import builtin as _builtin  # noqa: E402,F401  (registers the built-in metrics)
from genbench.metrics import conditional as _conditional  # noqa: E402,F401  (conditional_accuracy, intra_fd)
from genbench.metrics.conditional import conditional_accuracy, intra_class_fd  # noqa: E402
from genbench.metrics.text import register_text_metrics  # noqa: E402  (distinct_n, self_bleu, novelty, bits_per_char)
from genbench.metrics import translation as _translation  # noqa: E402,F401  (i2i_fd, content_kept, cycle_l1, ...)
from genbench.metrics import text_prefix as _text_prefix  # noqa: E402,F401  (prefix_bpc, prefix_gain)

register_text_metrics()

__all__ = [
    "METRICS",
    "CrossGramFD",
    "EvalContext",
    "MetricResult",
    "MetricSpec",
    "MetricUnavailable",
    "MetricWarning",
    "PrdcResampler",
    "StreamingGaussianStats",
    "bits_per_char",
    "bits_per_dim",
    "bootstrap_ci",
    "class_coverage",
    "compute_metrics",
    "conditional_accuracy",
    "intra_class_fd",
    "continuous_to_discrete_bits_per_dim",
    "fd_route",
    "fd_infinity",
    "frechet_distance",
    "frechet_distance_features",
    "gaussian_stats",
    "inception_score",
    "get_metric",
    "kid",
    "kid_subset_indices",
    "knn_sq_radii",
    "list_metrics",
    "mauve",
    "memorisation",
    "mode_coverage",
    "nats_to_bits_per_dim",
    "perplexity",
    "polynomial_mmd2",
    "prdc",
    "prdc_dedup",
    "rbf_mmd2",
    "register_metric",
    "trace_sqrt_product",
    "vendi_score",
]
