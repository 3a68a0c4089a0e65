"""`genbench data list`."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="list datasets", description="Built-in datasets and whether they can load here.")
    s = p.add_subparsers(dest="data_command", metavar="ACTION")
    ls = s.add_parser("list", help="each dataset: modality, shape, size, available here?")
    ls.set_defaults(func=_list)
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
