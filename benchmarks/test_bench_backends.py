"""Backend overhead: a dsprims EVALSHA against the same command on the bare client."""

from __future__ import annotations

from typing import Any

from dsprims import backend_from_url
from dsprims.backends._lua import lua_script


def test_backend_evalsha_ours(redis_server: Any, mark: Any) -> None:
    backend = backend_from_url(redis_server.url)
    backend.evalsha("ping", [])
    mark("backends: one script round trip (redis)", "ours", "RedisBackend.evalsha")(
        backend.evalsha, "ping", []
    )
    backend.close()


def test_backend_evalsha_floor(redis_server: Any, mark: Any) -> None:
    client = redis_server.client()
    script = lua_script("ping")
    client.script_load(script.source)
    mark("backends: one script round trip (redis)", "floor", "bare redis-py evalsha", goal=1.1)(
        client.evalsha, script.sha, 0
    )
    client.close()


def test_backend_ping_floor(redis_server: Any, mark: Any) -> None:
    client = redis_server.client()
    mark("backends: one script round trip (redis)", "floor", "bare redis-py PING")(client.ping)
    client.close()
