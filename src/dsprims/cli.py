"""The ``dsprims`` command: a guided demo, and tools built on the primitives.

``dsprims demo [--backend URL] [--zookeeper HOSTS]`` runs every demo section in order. Each
primitive package contributes one section as a module with ``TITLE`` and
``run(out: DemoOutput, options: DemoOptions) -> None``; sections are listed in ``DEMO_SECTIONS``.
Packages may also add subcommands through ``COMMANDS`` (``add_parser(subparsers)`` functions).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

__all__ = ["DEMO_SECTIONS", "DemoOptions", "DemoOutput", "main"]

#: Modules that each provide one demo section, in the order the tour shows them.
DEMO_SECTIONS: list[str] = [
    "dsprims.backends.demo",
    # -- consistent hashing --
    "dsprims.hashing.demo",
    # -- rate limiting --
    "dsprims.ratelimit.demo",
    # -- circuit breaking --
    "dsprims.breaker.demo",
    # -- logical clocks --
    "dsprims.clocks.demo",
    # -- locks and fencing --
    "dsprims.locks.demo",
    "dsprims.locks.demo_zookeeper",
]

#: Callables ``add_parser(subparsers) -> None`` that register further subcommands; each parser
#: sets ``func=handler`` where ``handler(args) -> int``.
COMMANDS: list[str] = [
    # -- consistent hashing --
    "dsprims.hashing.cli",
]


@dataclass(frozen=True)
class DemoOptions:
    """What the user chose on the command line."""

    backend_url: str = "memory://"
    zookeeper: str | None = None


class DemoOutput:
    """Terminal-friendly output helpers shared by the demo sections."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.color = self.stream.isatty()

    def _style(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def heading(self, text: str) -> None:
        """A section title."""
        self.stream.write("\n" + self._style(f"== {text} ==", "1;36") + "\n")

    def line(self, text: str = "") -> None:
        """A plain line."""
        self.stream.write(text + "\n")

    def good(self, text: str) -> None:
        """A line in green: something worked as promised."""
        self.stream.write(self._style(text, "32") + "\n")

    def bad(self, text: str) -> None:
        """A line in red: something refused, as promised."""
        self.stream.write(self._style(text, "31") + "\n")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        """An aligned text table."""
        cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
        widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
        for n, row in enumerate(cells):
            self.stream.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
            self.stream.write("\n")
            if n == 0:
                self.stream.write("  ".join("-" * w for w in widths) + "\n")

    def progress(self, label: str, done: int, total: int) -> None:
        """A one-line progress bar, redrawn in place on a terminal."""
        width = 30
        filled = width * done // max(total, 1)
        bar = "#" * filled + "." * (width - filled)
        end = "\n" if done >= total else ""
        if self.color:
            self.stream.write(f"\r{label} [{bar}] {done}/{total}{end}")
        elif done >= total:
            self.stream.write(f"{label} [{bar}] {done}/{total}\n")
        self.stream.flush()


def run_demo(options: DemoOptions, out: DemoOutput | None = None) -> int:
    """Run every demo section; return a process exit code."""
    out = out or DemoOutput()
    started = time.monotonic()
    out.line(f"dsprims demo — stateful parts on {options.backend_url}")
    for module_name in DEMO_SECTIONS:
        module: Any = importlib.import_module(module_name)
        out.heading(module.TITLE)
        module.run(out, options)
    out.line(f"\nDone in {time.monotonic() - started:.1f}s.")
    return 0


def _demo_command(args: argparse.Namespace) -> int:
    return run_demo(DemoOptions(backend_url=args.backend, zookeeper=args.zookeeper))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for the ``dsprims`` command."""
    parser = argparse.ArgumentParser(
        prog="dsprims", description="Distributed-systems primitives: demo and tools."
    )
    parser.add_argument(
        "--log-level",
        default="error",
        choices=["debug", "info", "warning", "error"],
        help="show the library's log records from this level up (default: error)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="a short tour of the primitives")
    demo.add_argument(
        "--backend",
        default="memory://",
        help="backend URL for the stateful parts (memory://, redis://host:port/0, …)",
    )
    demo.add_argument(
        "--zookeeper", default=None, help="ZooKeeper hosts (host:port[,…]) for the lock demo"
    )
    demo.set_defaults(func=_demo_command)
    for module_name in COMMANDS:
        module: Any = importlib.import_module(module_name)
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dsprims`` console script."""
    args = build_parser().parse_args(argv)
    # The library logs state changes (a breaker opening, a clock stepping back) for services to
    # collect; in this terminal tool the tables already tell that story, so only errors print.
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()), format="[%(name)s] %(message)s"
    )
    handler: Callable[[argparse.Namespace], int] = args.func
    return handler(args)
