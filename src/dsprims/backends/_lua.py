"""Lua scripts shipped as package data, loaded once and run by SHA."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from importlib import resources
from typing import Final

__all__ = ["LuaScript", "lua_script"]

_LOCK: Final = threading.Lock()
_CACHE: dict[str, LuaScript] = {}


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
                source = resources.files("dsprims.backends").joinpath("lua", f"{name}.lua")
                text = source.read_text(encoding="utf-8")
                sha = hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()
                script = _CACHE[name] = LuaScript(name, text, sha)
    return script
