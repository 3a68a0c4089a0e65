"""`genbench list [models|datasets|metrics|suites|extractors]`."""

from __future__ import annotations

from genbench.errors import GenbenchError, UnknownNameError
from genbench.registry import unknown_name_message

KINDS = ("models", "datasets", "metrics", "suites", "extractors")


def add_parser(sub) -> None:
    p = sub.add_parser("list", help="list models, datasets, metrics, suites or feature extractors",
                       description="List what genbench can run: " + ", ".join(KINDS) + " (default: all).")
    p.add_argument("what", nargs="?", help="one of " + ", ".join(KINDS))
    p.set_defaults(func=run)


def run(args) -> int:
    from tabulate import tabulate

    kinds = KINDS
    if args.what:
        if args.what not in KINDS:
            singular = {k[:-1]: k for k in KINDS}
            if args.what in singular:
                kinds = (singular[args.what],)
            else:
                raise UnknownNameError(unknown_name_message("list kind", args.what, KINDS))
        else:
            kinds = (args.what,)
    for i, kind in enumerate(kinds):
        rows, headers = _ROWS[kind]()
        if len(kinds) > 1:
            print(("\n" if i else "") + f"{kind}:")
        print(tabulate(rows, headers=headers, tablefmt="simple") if rows else "(none)")
    return 0


def _models():
    from genbench.models import get_model_class, list_models

    rows = []
    for n in list_models():
        c = get_model_class(n)
        rows.append([n, c.family, ", ".join(c.modalities), c.log_prob_kind])
    return rows, ["model", "family", "modalities", "likelihood"]


def _datasets():
    from genbench.data import get_dataset, list_datasets

    rows = []
    for n in list_datasets():
        i = get_dataset(n).info
        rows.append([n, i.modality, "x".join(map(str, i.shape)) or "-", i.description])
    return rows, ["dataset", "modality", "shape", "description"]


def _metrics():
    from genbench.metrics import METRICS

    rows = []
    for n in METRICS.names():
        s = METRICS.get(n)
        rows.append([n, getattr(s, "unit", ""), "higher" if getattr(s, "higher_is_better", True) else "lower",
                     getattr(s, "version", ""), ", ".join(getattr(s, "requires", ()) or ())])
    from genbench.metrics.registry import recorded_outputs

    for n, (o, source) in recorded_outputs().items():
        rows.append([n, o.unit, "higher" if o.higher_is_better else "lower", "1", source])
    return rows, ["metric", "unit", "better", "version", "requires"]


def _suites():
    from genbench.suite import list_suites, load_suite

    rows = []
    for n in list_suites():
        try:
            s = load_suite(n)
        except GenbenchError as e:
            rows.append([n, "-", "-", "-", "-", "-", f"(cannot load here: {e})"])
            continue
        rows.append([n, s.budget, s.device, ",".join(map(str, s.seeds)), ", ".join(d.name for d in s.datasets),
                     len(s.models), s.description])
    return rows, ["suite", "budget", "device", "seeds", "datasets", "models", "description"]


def _extractors():
    from genbench.features import list_extractors
    from genbench.suite import extractor_modalities

    return [[n, ", ".join(extractor_modalities(n))] for n in list_extractors()], ["extractor", "modalities"]


_ROWS = {"models": _models, "datasets": _datasets, "metrics": _metrics, "suites": _suites, "extractors": _extractors}
