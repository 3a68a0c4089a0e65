"""`genbench assets ...` (filled in by the assets work)."""


def add_parser(sub) -> None:
    p = sub.add_parser("assets", help="list, fetch and verify data and weight assets")
    p.set_defaults(func=lambda a: p.print_help() or 2)
