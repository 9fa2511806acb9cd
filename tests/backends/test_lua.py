"""Package Lua scripts: ``--#include`` splices shared helpers in before hashing."""

from __future__ import annotations

import hashlib
from importlib import resources

from dsprims.backends._lua import lua_script

LOCK_SCRIPTS = ("lock_acquire", "lock_release", "lock_extend", "lock_leave")


def _file(name: str) -> str:
    path = resources.files("dsprims.backends").joinpath("lua", f"{name}.lua")
    return path.read_text(encoding="utf-8")


def test_includes_are_spliced_in_and_the_sha_covers_them() -> None:
    common = _file("lock_common").rstrip("\n")
    for name in LOCK_SCRIPTS:
        raw = _file(name)
        assert "\n--#include lock_common\n" in raw, name
        script = lua_script(name)
        assert not any(line.startswith("--#include") for line in script.source.splitlines())
        assert script.source == raw.replace("--#include lock_common", common)
        assert script.sha == hashlib.sha1(script.source.encode(), usedforsecurity=False).hexdigest()


def test_scripts_without_includes_are_read_as_they_are() -> None:
    assert lua_script("ping").source == _file("ping")
