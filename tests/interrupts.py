"""A token take that is interrupted the way CPython interrupts it (shared by the mutex tests)."""

from __future__ import annotations

from collections.abc import Callable


class InterruptedTake:
    """Calls ``take`` (a mutex token's ``pop``), then, while ``armed``, raises
    ``KeyboardInterrupt`` as CPython does for a signal handled right after that call returns:
    with the token taken. It disarms itself after raising once."""

    def __init__(self, take: Callable[[], object], *, armed: bool = True) -> None:
        self.take = take
        self.armed = armed

    def __call__(self) -> None:
        self.take()
        if self.armed:
            self.armed = False
            raise KeyboardInterrupt
