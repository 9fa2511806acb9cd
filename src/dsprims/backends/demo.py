"""Demo section: picking a backend by URL, and the key namespace every primitive uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dsprims.backends.base import namespaced_key
from dsprims.backends.url import backend_from_url

if TYPE_CHECKING:
    from dsprims.cli import DemoOptions, DemoOutput

TITLE = "Backends: one URL picks where shared state lives"


def run(out: DemoOutput, options: DemoOptions) -> None:
    """Open the chosen backend, show its kind and how hostile keys are namespaced."""
    backend = backend_from_url(options.backend_url)
    try:
        out.line(f"backend_from_url({options.backend_url!r}) -> {backend!r}")
        rows = []
        for user_key in ["user:42", "evil}{key", "line\nbreak"]:
            rows.append([repr(user_key), repr(namespaced_key("dsprims", user_key, "tb"))])
        out.line("User keys are data: escaped into one hash-tagged slot under the prefix.")
        out.table(["user key", "Redis key"], rows)
    finally:
        backend.close()
