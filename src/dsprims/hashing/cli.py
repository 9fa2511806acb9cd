"""``dsprims ring``: capacity planning for consistent hashing from the command line.

Examples::

    dsprims ring --before a,b,c --after a,b,c,d
    dsprims ring --before a=2,b,c --after a=2,b --algorithm rendezvous --keys 200000
    dsprims ring --before @nodes-now.txt --after @nodes-next.txt --algorithm ketama

Node lists are ``name[=weight]`` separated by commas, or ``@file`` with one ``name[=weight]``
per line (``#`` starts a comment). The command prints each node's share before and after, the
peak/mean ratio, and the fraction of keys that moves (with the least any algorithm could move).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dsprims.errors import ConfigurationError
from dsprims.hashing.plan import ALGORITHMS, CapacityPlan, parse_node_list, plan

__all__ = ["add_parser", "format_plan", "run"]


def _nodes(text: str) -> dict[str, float]:
    if text.startswith("@"):
        text = Path(text[1:]).read_text()
    return parse_node_list(text)


def format_plan(result: CapacityPlan) -> str:
    """The plan as the text table the command prints."""
    how = "exact" if result.exact else f"sampled over {result.keys:,} keys"
    lines = [f"algorithm: {result.algorithm} ({how})", ""]
    header = ("node", "weight before", "share before", "weight after", "share after")
    rows = [
        (
            row.name,
            f"{row.weight_before:g}" if row.weight_before else "-",
            f"{row.share_before:.2%}" if row.weight_before else "-",
            f"{row.weight_after:g}" if row.weight_after else "-",
            f"{row.share_after:.2%}" if row.weight_after else "-",
        )
        for row in result.nodes
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for n, row in enumerate((header, *rows)):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += [
        "",
        f"peak/mean (per unit of weight): before {result.peak_to_mean_before:.3f}, "
        f"after {result.peak_to_mean_after:.3f}",
        f"keys moved: {result.moved:.2%} (the least possible: {result.ideal_moved:.2%})",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Handle ``dsprims ring``; returns a process exit code."""
    try:
        before = _nodes(args.before)
        after = _nodes(args.after) if args.after is not None else None
        result = plan(
            args.algorithm,
            before,
            after,
            keys=args.keys,
            vnodes=args.vnodes,
            table_size=args.table_size,
            load_factor=args.load_factor,
        )
    except (ConfigurationError, OSError, TypeError) as exc:
        print(f"dsprims ring: {exc}", file=sys.stderr)
        return 2
    print(format_plan(result))
    return 0


def add_parser(subparsers: Any) -> None:
    """Register ``dsprims ring`` on the main parser's subparsers."""
    parser = subparsers.add_parser(
        "ring",
        help="capacity planning: key shares and movement between two node lists",
        description=(
            "Compare node lists before and after a change: share of keys per node, peak/mean, "
            "and the fraction of keys that move, for any dsprims hashing algorithm."
        ),
    )
    parser.add_argument("--before", required=True, help="nodes now: a,b=2,c or @file")
    parser.add_argument("--after", help="nodes after the change (default: same as --before)")
    parser.add_argument(
        "--algorithm", choices=ALGORITHMS, default="ring", help="hashing algorithm (default ring)"
    )
    parser.add_argument(
        "--keys", type=int, default=100_000, help="sample keys when shares are not exact"
    )
    parser.add_argument("--vnodes", type=int, default=None, help="HashRing points per node")
    parser.add_argument("--table-size", type=int, default=65537, help="Maglev table size")
    parser.add_argument("--load-factor", type=float, default=1.25, help="bounded-load balancer's c")
    parser.set_defaults(func=run)
