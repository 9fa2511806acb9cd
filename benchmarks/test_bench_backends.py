"""Backend overhead: a dsprims EVALSHA against the same command on the bare client."""

from __future__ import annotations

from typing import Any

from benchmarks.conftest import Contender
from dsprims import backend_from_url
from dsprims.backends._lua import lua_script


def test_backend_evalsha(redis_server: Any, compare: Any) -> None:
    backend = backend_from_url(redis_server.url)
    client = redis_server.client()
    script = lua_script("ping")
    client.script_load(script.source)
    compare(
        "backends: one script round trip (redis)",
        [
            Contender("ours", "RedisBackend.evalsha", lambda: backend.evalsha("ping", [])),
            Contender(
                "floor",
                "bare redis-py evalsha",
                lambda: client.evalsha(script.sha, 0),
                goal=1.1,
            ),
            Contender("floor", "bare redis-py PING", client.ping),
        ],
    )
    backend.close()
    client.close()
