"""`genbench stats build | list | verify`: the shared reference-statistics cache (genbench/pipeline/refstats.py)."""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    p = sub.add_parser(
        "stats", help="build, list and verify cached reference statistics",
        description="Reference statistics (the real subset's features, float64 mean and covariance, k-NN radii) "
        "are computed once and shared by every run directory and `genbench eval`, in $GENBENCH_STATS_CACHE, else "
        "$GENBENCH_CACHE/refstats (~/.cache/genbench/refstats). An entry is keyed by the split's content hash, "
        "the subset, the extractor's protocol (with its weights hash), the device type and genbench's metric "
        "version; a corrupt or stale one is never used.")
    s = p.add_subparsers(dest="stats_command", metavar="ACTION")
    b = s.add_parser("build", help="compute and cache a dataset's reference statistics now",
                     description="Compute the reference statistics a run or `genbench eval` of DATASET would use "
                     "(the protocol of the first built-in suite that has it: quick, standard, smoke), and cache "
                     "them, with the k-NN radii P/R/D/C uses. Already cached: says so and does nothing.")
    b.add_argument("dataset", metavar="DATASET", help="built-in dataset (genbench data list)")
    b.add_argument("--split", default=None, help="split to take the subset from (default: the protocol's reference, "
                   "usually test)")
    b.add_argument("--extractor", metavar="X", default=None, help="feature extractor (default: the protocol's)")
    b.add_argument("--n", type=int, default=None, metavar="N", help="subset size (default: the protocol's n_samples; "
                   "`genbench eval` of M samples uses N = M)")
    b.add_argument("--k", default="3,5", metavar="K,K", help="k-NN radii to cache (default 3,5: P/R and D/C's k); "
                   "'none' for none")
    b.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="device (part of the key)")
    b.add_argument("--shards", type=int, default=1, metavar="N",
                   help="split the feature pass into N shards run on --executor's workers (batch-aligned: the same "
                   "features as one pass; the shards' float64 sums merge exactly)")
    b.add_argument("--executor", choices=["process", "ray"], default="process",
                   help="where shards run (default: process, --workers worker processes)")
    b.add_argument("--workers", type=int, default=2, metavar="W", help="worker processes for --shards (default 2)")
    b.add_argument("--address", metavar="auto|HOST:PORT", default=None, help="with --executor ray: the cluster")
    b.set_defaults(func=_build)
    ls = s.add_parser("list", help="cached entries: dataset, split, n, extractor, size, status")
    ls.set_defaults(func=_list)
    v = s.add_parser("verify", help="check every entry's seal and recompute its mean and covariance",
                     description="Reads every entry, checks its sha256 seal, that its key hashes to its file name "
                     "and that its mean and covariance are those of its features. Exit status 1 when an entry is "
                     "corrupt (it would be deleted and rebuilt on next use; --delete removes it now).")
    v.add_argument("--delete", action="store_true", help="delete corrupt entries")
    v.set_defaults(func=_verify)
    p.set_defaults(func=lambda a: p.print_help() or 2)


def _build(args) -> int:
    from genbench.data import get_dataset, list_datasets
    from genbench.errors import InvalidInputError
    from genbench.eval_protocol import protocol_for
    from genbench.pipeline.worker import Worker
    from genbench.registry import unknown_name_message

    if args.dataset not in list_datasets():
        raise InvalidInputError(unknown_name_message("dataset", args.dataset, list_datasets()))
    ds = get_dataset(args.dataset)
    ok, why = ds.available()
    if not ok:
        raise InvalidInputError(f"dataset {args.dataset!r} is not available here: {why}")
    spec = protocol_for(args.dataset, ds.info.modality, None, args.extractor, None).spec
    if args.n is not None:
        if args.n < 2:
            raise InvalidInputError(f"--n {args.n}: need at least 2 items for a covariance")
        spec.n_samples = int(args.n)
    which = args.split or spec.reference
    ks = _ks(args.k)
    w = Worker()
    if args.shards < 1:
        raise InvalidInputError(f"--shards {args.shards}: give 1 or more")
    if args.address is not None and args.executor != "ray":
        raise InvalidInputError("--address is for --executor ray (the Ray cluster to join)")
    sharding = None
    if args.shards > 1:
        import torch

        from genbench.pipeline.shards import FeatureSharding

        sharding = FeatureSharding(args.shards, args.executor, workers=max(1, args.workers), address=args.address,
                                   num_gpus=1.0 if args.device == "cuda" else 0.0,
                                   threads=torch.get_num_threads())  # this process's count: the same features
    _, entry = w.reference(spec, which, spec.n_samples, args.device, quiet=False, sharding=sharding)
    if ks and entry.features.shape[0] > max(ks):
        w.stats_cache.radii(entry, ks, entry.features.shape[0], args.device)
    print(f"{args.dataset}/{which} n={entry.features.shape[0]} dim={entry.features.shape[1]} {spec.features}: "
          f"{'already cached' if entry.source == 'cache' else 'built'} ({entry.digest[:12]}) in "
          f"{w.stats_cache.root}")
    return 0


def _ks(text: str) -> tuple:
    from genbench.errors import InvalidInputError

    if text.strip().lower() in ("", "none"):
        return ()
    try:
        ks = tuple(sorted({int(k) for k in text.split(",")}))
    except ValueError:
        raise InvalidInputError(f"--k {text!r}: give comma-separated integers such as 3,5, or 'none'") from None
    if min(ks) < 1:
        raise InvalidInputError(f"--k {text!r}: k must be >= 1")
    return ks


def _rows(check: bool):
    from genbench.pipeline.refstats import StatsCache

    cache = StatsCache()
    return cache, [cache.describe(p, check=check) for p in cache.entries()]


def _list(args) -> int:
    from tabulate import tabulate

    cache, rows = _rows(check=False)
    if not rows:
        print(f"no reference statistics cached in {cache.root}")
        return 0
    print(tabulate([[r["digest"][:12], r.get("dataset", "?"), r.get("split", "?"), r.get("n", "?"), r.get("dim", "?"),
                     r.get("extractor", "?"), r.get("device", "?"), ", ".join(r.get("radii", [])) or "-",
                     f"{r['bytes'] / 2**20:.1f}", r["status"]] for r in rows],
                   headers=["entry", "dataset", "split", "n", "dim", "extractor", "device", "k-NN radii", "MiB",
                            "status"], tablefmt="simple"))
    print(f"({cache.root})")
    return 0


def _verify(args) -> int:
    cache, rows = _rows(check=True)
    bad = [r for r in rows if r["status"].startswith("corrupt")]
    for r in rows:
        print(f"{r['digest'][:12]}  {r.get('dataset', '?')}/{r.get('split', '?')} n={r.get('n', '?')}: {r['status']}")
    if args.delete:
        from pathlib import Path

        for r in bad:
            Path(r["file"]).unlink(missing_ok=True)
            cache.radii_path(r["digest"]).unlink(missing_ok=True)
    print(f"{len(rows)} entries in {cache.root}: {len(rows) - len(bad)} ok, {len(bad)} corrupt"
          + (" (deleted)" if bad and args.delete else ""), file=sys.stderr if bad else sys.stdout)
    return 1 if bad else 0
