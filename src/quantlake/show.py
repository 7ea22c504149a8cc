"""`quantlake show`: one line per symbol of a lakehouse version, from its catalog.

Like freqtrade's `list-data --show-timerange`: status, first and last day, rows, quarantined
bars or values and gaps longer than `data.max_gap_days`, for the workspace or a `--rev`
(read through `quantlake.api`, without a checkout). Reads only `catalog.json`.
"""

from __future__ import annotations

import argparse
import os
import sys

from .contracts import STATUSES

COLUMNS = ("symbol", "status", "first", "last", "rows", "quarantined", "gaps")
NUMERIC = {"rows", "quarantined", "gaps"}


def show_rows(catalog: dict, statuses: set[str] | None = None) -> list[dict]:
    """The table's rows, sorted by symbol (pure)."""
    rows = []
    for sym, e in sorted(catalog["symbols"].items()):
        if statuses is not None and e.get("status") not in statuses:
            continue
        rows.append(
            {
                "symbol": sym,
                "status": e.get("status") or "-",
                "first": e.get("start_date") or "-",
                "last": e.get("end_date") or "-",
                "rows": int(e.get("rows") or 0),
                "quarantined": int(e.get("quarantined") or 0),
                "gaps": len(e.get("gaps") or []),
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    """An aligned text table: text columns left-aligned, counts right-aligned."""
    cells = [list(COLUMNS)] + [[str(r[c]) for c in COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    out = []
    for line in cells:
        out.append("  ".join(v.rjust(w) if c in NUMERIC else v.ljust(w) for c, v, w in zip(COLUMNS, line, widths)).rstrip())
    return "\n".join(out)


def summary_line(catalog: dict, rows: list[dict], label: str) -> str:
    counts = {s: sum(r["status"] == s for r in rows) for s in STATUSES}
    by = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    return f"{label}: as_of {catalog['as_of']}, {len(rows)} of {len(catalog['symbols'])} symbols shown ({by or 'none'})"


def cmd_show(args) -> int:
    from .api import open_lakehouse, status_set

    statuses = status_set([s for item in args.status or [] for s in item.split(",") if s]) if args.status else None
    lake = open_lakehouse(args.repo, rev=args.rev)
    rows = show_rows(lake.catalog, statuses)
    try:
        print(format_table(rows))
        print(summary_line(lake.catalog, rows, f"lakehouse {args.rev or 'workspace'}"))
        sys.stdout.flush()
    except BrokenPipeError:  # `quantlake show | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        lake.close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "show",
        help="list every symbol of the lakehouse: status, first and last day, rows, quarantined, gaps",
        description=__doc__.splitlines()[0],
    )
    s.add_argument("--repo", default=".", help="the repository root (default: .)")
    s.add_argument("--rev", help="a git revision to read (tag, commit, branch) without a checkout; default: the workspace")
    s.add_argument(
        "--status",
        action="append",
        metavar="STATUS[,STATUS]",
        help=f"only these statuses ({', '.join(STATUSES)}); repeat or separate with commas",
    )
    s.set_defaults(func=cmd_show)
