"""`genbench assets list | fetch [NAME ...|--all] | verify [NAME ...] | build classifier:DATASET`."""

from __future__ import annotations

import sys

from genbench.errors import AssetNotFoundError, InvalidInputError


def add_parser(sub) -> None:
    p = sub.add_parser("assets", help="list, fetch and verify data and weight assets",
                       description="Data and weight files genbench uses, kept verified in $GENBENCH_CACHE "
                                   "(default ~/.cache/genbench).")
    s = p.add_subparsers(dest="assets_command", metavar="ACTION")
    ls = s.add_parser("list", help="what is in the cache, where it came from, whether it is verified",
                      description="Each asset: whether it is cached, and 'verified' only when its files were hashed "
                                  "by this command (a file changed since it was last verified is always re-hashed; "
                                  "an unchanged-looking one is 'not re-hashed' unless --verify is given).")
    ls.add_argument("--verify", action="store_true", help="re-hash every cached file (as `assets verify`)")
    ls.set_defaults(func=_list)
    f = s.add_parser("fetch", help="bring assets into the cache (from local copies, registries or the network)")
    f.add_argument("names", nargs="*", metavar="NAME")
    f.add_argument("--all", action="store_true", help="every known asset")
    f.add_argument("--keep-going", action="store_true", help="report failures but continue with the others")
    f.add_argument("-q", "--quiet", action="store_true", help="print only what had to be fetched or failed")
    f.set_defaults(func=_fetch)
    v = s.add_parser("verify", help="re-hash cached assets (all present ones unless names are given)")
    v.add_argument("names", nargs="*", metavar="NAME")
    v.set_defaults(func=_verify)
    b = s.add_parser("build", help="train a built-in instrument here with its recipe (classifier:<dataset>) and "
                     "compare it with the weights genbench ships",
                     description="Runs the training recipe of classifier:<dataset> on this machine and reports its "
                     "held-out accuracy and weights hash next to the shipped weights'. Runs keep using the shipped "
                     "weights where they exist (a rebuild on another CPU kind gives other weights, so another "
                     "protocol id); for datasets without shipped weights the build is what runs use here.")
    b.add_argument("name", metavar="classifier:DATASET")
    b.add_argument("--seed", type=int, default=0, help="training seed (shipped weights use 0)")
    b.add_argument("--ship", action="store_true", help="maintainers: write the weights into the package and "
                   "record their sha256 in genbench/features/weights/classifiers.json")
    b.set_defaults(func=_build)
    p.set_defaults(func=lambda a: p.print_help() or 2)


def _build(args) -> int:
    from genbench.features import get_extractor  # noqa: F401  (validates the name below)
    from genbench.features.classifier_build import build, ship

    base, _, dataset = args.name.partition(":")
    if base != "classifier" or not dataset:
        raise InvalidInputError(f"cannot build {args.name!r}: only classifier:<dataset> instruments are built "
                                "(data and the Inception weights are fetched: `genbench assets fetch NAME`)")
    from genbench.features import _classifier_datasets

    if dataset not in _classifier_datasets():
        from genbench.registry import unknown_name_message

        raise InvalidInputError(unknown_name_message("classifier dataset", dataset, _classifier_datasets()))
    res = build(dataset, seed=args.seed)
    print(res.summary())
    if args.ship:
        path = ship(res, command=" ".join(["genbench", "assets", "build", args.name, "--seed", str(args.seed),
                                            "--ship"]))
        print(f"shipped: {path} (recorded in classifiers.json)")
    return 0


def _table(rows, headers) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=headers, tablefmt="simple")


def _list(args) -> int:
    from genbench.assets import ASSETS, cache_dir, probe, status

    rows = []
    for name, a in ASSETS.items():
        st = status(name, full_verify=args.verify)
        if st.present:
            state = _state_label(st.verified)
            where = "; ".join(st.sources) or str(st.path)
        else:
            ok, why = probe(name)
            state = "no"
            where = why
        rows.append([name, f"{a.size / 1e6:.1f} MB" if a.size else "?", state, where])
    print(f"cache: {cache_dir()}")
    print(_table(rows, ["asset", "size", "cached", "from / how"]))
    if any(r[2] == "yes, not re-hashed" for r in rows):
        print("(not re-hashed: unchanged in size and mtime since last verified; `genbench assets list --verify` "
              "re-hashes, and every run hashes the files it uses)")
    return 0


def _state_label(verified) -> str:
    """'verified' only for files hashed by this command (see `genbench.assets.status`)."""
    if verified is None:
        return "yes, not re-hashed"
    return "yes, verified" if verified else "CORRUPT"


def _fetch(args) -> int:
    from genbench.assets import ASSETS, fetch

    names = ASSETS.names() if args.all else args.names
    if not names:
        raise InvalidInputError("name the assets to fetch, or --all. Known: " + ", ".join(ASSETS.names()))
    for n in names:
        ASSETS.get(n)  # unknown names fail before anything is fetched
    from genbench.assets import status

    failed = []
    for n in names:
        try:
            cached = status(n).verified is not False  # present and not visibly corrupt; fetch() hashes it
            p = fetch(n, quiet=False)
            if not (args.quiet and cached):
                print(f"{n}: ok  {p}" + ("" if cached else "  (fetched and verified)"))
        except AssetNotFoundError as e:
            if not (args.keep_going or args.all):
                raise
            failed.append(n)
            print(f"{n}: NOT AVAILABLE\n{e}\n", file=sys.stderr)
    if failed:
        print(f"not available: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _verify(args) -> int:
    from genbench.assets import ASSETS, status

    names = args.names or ASSETS.names()
    bad = 0
    for n in names:
        st = status(n, full_verify=True)
        if not st.present:
            if args.names:
                print(f"{n}: not in cache ({st.detail})")
                bad += 1
            continue
        if st.verified:
            print(f"{n}: verified  {st.path}")
        else:
            print(f"{n}: FAILED  {st.detail}  (`genbench assets fetch {n}` fetches it again)")
            bad += 1
    return 1 if bad else 0
