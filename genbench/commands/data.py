"""`genbench data ...` (filled in by the data work)."""


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="list datasets")
    p.set_defaults(func=lambda a: p.print_help() or 2)
