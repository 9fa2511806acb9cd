"""Lua scripts shipped as package data, loaded once and run by SHA.

A script may say ``--#include <name>`` on a line of its own: the loader puts the package's
``<name>.lua`` there (helpers several scripts share; Redis has no way to share code between
scripts). Only package files are ever spliced in; nothing comes from user input.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from importlib import resources
from typing import Final

__all__ = ["LuaScript", "lua_script"]

_LOCK: Final = threading.Lock()
_CACHE: dict[str, LuaScript] = {}
_INCLUDE: Final = re.compile(r"^--#include ([a-z_]+)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class LuaScript:
    """One script: its name, source and SHA1 (computed here, so no SCRIPT LOAD round trip)."""

    name: str
    source: str
    sha: str


def lua_script(name: str) -> LuaScript:
    """The script ``dsprims/backends/lua/<name>.lua``, read from the package once."""
    script = _CACHE.get(name)
    if script is None:
        with _LOCK:
            script = _CACHE.get(name)
            if script is None:
                text = _INCLUDE.sub(lambda m: _read(m.group(1)).rstrip("\n"), _read(name))
                sha = hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()
                script = _CACHE[name] = LuaScript(name, text, sha)
    return script


def _read(name: str) -> str:
    source = resources.files("dsprims.backends").joinpath("lua", f"{name}.lua")
    return source.read_text(encoding="utf-8")
