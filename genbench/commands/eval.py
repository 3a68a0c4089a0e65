"""`genbench eval --samples PATH --dataset NAME [--out DIR]`: score your own samples with the leaderboard's
protocol, optionally adding them to a run's leaderboard as model "user:<name>"."""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    p = sub.add_parser(
        "eval", help="score your own samples (image folder, .npz/.npy, text file) against a dataset",
        description="Score a folder of images, an .npz/.npy array or a text file of samples against a built-in "
        "dataset (or a path to your own reference data) with the same metrics and protocol as the leaderboard: "
        "the protocol of the run given with --out, else of the first built-in suite (quick, standard, smoke) "
        "that has the dataset. With --out DIR (a `genbench run` directory) the result is recorded there as model "
        "'user:NAME' (family 'user') and appears in that run's leaderboard. Without --out, the scores are placed "
        "on the committed reference leaderboard of the dataset (reports/quick, ...) when the protocols match: "
        "e.g. 'would rank 3rd of 6 models on FD'.")
    p.add_argument("--samples", required=True, metavar="PATH", help="folder of images, .npz/.npy array or text file")
    p.add_argument("--dataset", required=True, metavar="NAME",
                   help="built-in dataset (genbench data list) or a path to reference data")
    p.add_argument("--out", metavar="DIR", help="record the result into this existing run directory")
    p.add_argument("--name", metavar="NAME", help="name on the leaderboard, recorded as 'user:NAME' "
                   "(default: the samples file's name)")
    p.add_argument("--extractor", metavar="X", help="feature extractor instead of the protocol's (changes the protocol)")
    p.add_argument("--metrics", metavar="A,B", help="metrics instead of the protocol's (genbench list metrics)")
    p.add_argument("--class-folders", action="store_true",
                   help="conditional samples laid out as PATH/<class>/*.png, one subfolder per class label 0..K-1: "
                   "each image is scored as generated for its folder's class (adds conditional_accuracy, intra_fd, "
                   "intra_recall_coverage, cas); an .npz gives the labels as 'y' instead")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap intervals (default 0)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu", help="device for feature extraction")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--shards", type=int, default=1, metavar="N",
                   help="split the feature passes (the samples, and the reference when it is not cached yet) into N "
                   "batch-aligned shards on --executor's workers; the scores do not change (default 1: one pass)")
    p.add_argument("--executor", choices=["local", "process", "ray"], default="process",
                   help="where shards run (default process: --workers spawned processes)")
    p.add_argument("--workers", type=int, default=2, metavar="W",
                   help="worker processes for --shards (default 2; with ray and no --address: the local instance's CPUs)")
    p.add_argument("--address", metavar="auto|HOST:PORT", default=None, help="with --executor ray: the cluster")
    p.set_defaults(func=run)


def run(args) -> int:
    from genbench.device import resolve_device
    from genbench.evaluate import evaluate_samples, format_eval

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    device = str(resolve_device(args.device, flag="--device"))
    result = evaluate_samples(args.samples, args.dataset, out=args.out, name=args.name, extractor=args.extractor,
                              metrics=metrics, seed=args.seed, device=device, quiet=args.quiet,
                              class_folders=args.class_folders, sharding=_sharding(args, device))
    sys.stdout.write(format_eval(result))
    if args.out is None:
        from genbench.eval_rank import placement_lines

        lines = placement_lines(result) or [
            f"No committed reference leaderboard covers {result.dataset} (reports/quick, standard, smoke): to see "
            "these samples beside models, add them to a run with --out DIR."]
        sys.stdout.write("\n" + "\n".join(lines) + "\n")
    return 0


def _sharding(args, device: str):
    """The FeatureSharding --shards asks for (None for one pass)."""
    from genbench.errors import InvalidInputError
    from genbench.pipeline.shards import FeatureSharding

    if args.shards < 1:
        raise InvalidInputError(f"--shards {args.shards}: give 1 or more (1: one pass)")
    if args.address is not None and args.executor != "ray":
        raise InvalidInputError("--address is for --executor ray (the Ray cluster to join)")
    if args.shards == 1:
        return None
    import torch

    return FeatureSharding(args.shards, args.executor, workers=args.workers, address=args.address,
                           num_gpus=1.0 if device.startswith("cuda") else 0.0,
                           threads=torch.get_num_threads())  # this process's count: the same features as one pass
