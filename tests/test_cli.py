from __future__ import annotations

import io
import subprocess
import sys

from dsprims.cli import DemoOptions, DemoOutput, main, run_demo


def test_demo_runs_every_section_on_memory() -> None:
    out = io.StringIO()
    assert run_demo(DemoOptions(), DemoOutput(out)) == 0
    text = out.getvalue()
    assert "Backends" in text
    assert "Done in" in text


def test_demo_runs_on_redis(redis_server: object) -> None:
    url = redis_server.url  # type: ignore[attr-defined]
    out = io.StringIO()
    assert run_demo(DemoOptions(backend_url=url), DemoOutput(out)) == 0
    assert "RedisBackend" in out.getvalue()


def test_python_dash_m_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dsprims", "demo"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "dsprims demo" in result.stdout


def test_main_parses_arguments() -> None:
    assert main(["demo", "--backend", "memory://"]) == 0
