"""`genbench data list` and `genbench data show NAME`."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="list datasets", description="Built-in datasets and whether they can load here.")
    s = p.add_subparsers(dest="data_command", metavar="ACTION")
    ls = s.add_parser("list", help="each dataset: modality, shape, size, available here?")
    ls.set_defaults(func=_list)
    sh = s.add_parser("show", help="one dataset: what it is, where it loads from, its recipe and content hashes",
                      description="Describes one dataset: its info, whether and where it loads here, and per split "
                                  "the number of items, the source, the recipe and variant (`meta`), and the "
                                  "sha256 of the bytes genbench reads (the data part of the reference-statistics "
                                  "cache key). Loads the splits, so it takes a few seconds for a built dataset.")
    sh.add_argument("name", help="a dataset of `genbench data list`")
    sh.add_argument("--split", choices=("train", "test"), action="append",
                    help="only this split (repeatable; default both)")
    sh.set_defaults(func=_show)
    p.set_defaults(func=lambda a: p.print_help() or 2)


def _list(args) -> int:
    from tabulate import tabulate

    from genbench.data import get_dataset, list_datasets

    rows = []
    for name in list_datasets():
        ds = get_dataset(name)
        i = ds.info
        ok, why = ds.available()
        sz = ds.sizes or {}
        unit = "" if ds.size_unit == "items" else f" {ds.size_unit}"
        size = f"{sz.get('train')}/{sz.get('test')}{unit}" if sz else "?"
        k = i.num_modes or i.num_classes
        rows.append([name, i.modality, "x".join(map(str, i.shape)) or "-", size, k if k else "-",
                     "yes" if ok else "no", why])
    print(tabulate(rows, headers=["dataset", "modality", "shape", "train/test", "classes/modes", "available",
                                  "where / why"], tablefmt="simple"))
    return 0


def _show(args) -> int:
    import hashlib

    from genbench.data import get_dataset
    from genbench.pipeline.scorers import scorer_for

    ds = get_dataset(args.name)  # an unknown name: the registry's error, with "did you mean"
    i = ds.info
    ok, why = ds.available()
    k = i.num_modes or i.num_classes
    print(f"{i.name}: {i.description}")
    print(f"  modality {i.modality}, item shape {'x'.join(map(str, i.shape)) or '-'}, values {i.value_range}, "
          f"classes/modes {k or '-'}, licence {i.licence}")
    domains = getattr(ds, "domains", None)
    if domains:
        print("  domains: " + ", ".join(f"{w} = {d}" for w, d in domains.items()))
    print(f"  available here: {'yes' if ok else 'no'} ({why})")
    if not ok:
        return 1
    for split in args.split or ("train", "test"):
        sp = ds.load(split)
        n = len(sp.text) if hasattr(sp, "text") else len(sp)
        unit = "characters" if hasattr(sp, "text") else ds.size_unit
        digest = hashlib.sha256(scorer_for(i.modality).data_bytes(sp)).hexdigest()
        print(f"  {split}: {n} {unit}{', paired' if getattr(sp, 'paired', False) else ''}; source: {sp.source}")
        for key, value in (sp.meta or {}).items():
            print(f"    {key}: {value}")
        print(f"    content sha256 (the bytes genbench reads): {digest}")
    return 0
