"""Capacity planning (dsprims.hashing.plan) and the ``dsprims ring`` command."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from dsprims import ConfigurationError
from dsprims.cli import DemoOptions, DemoOutput, main
from dsprims.hashing import demo
from dsprims.hashing.plan import ALGORITHMS, parse_node_list, plan


def test_parse_node_list() -> None:
    assert parse_node_list("a, b=2,c=0.5\n# comment\nd") == {"a": 1.0, "b": 2.0, "c": 0.5, "d": 1.0}
    with pytest.raises(ConfigurationError, match="twice"):
        parse_node_list("a,a")
    with pytest.raises(ConfigurationError, match="not a number"):
        parse_node_list("a=x")


def test_ring_plan_is_exact() -> None:
    result = plan("ring", {"a": 1, "b": 1, "c": 1}, {"a": 1, "b": 1, "c": 1, "d": 1})
    assert result.exact
    rows = {r.name: r for r in result.nodes}
    assert rows["d"].share_before == 0.0
    assert rows["d"].weight_before == 0.0
    assert abs(sum(r.share_after for r in result.nodes) - 1.0) < 1e-9
    assert abs(result.moved - rows["d"].share_after) < 1e-9
    assert result.ideal_moved == 0.25
    assert 1.0 <= result.peak_to_mean_after < 1.15


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_plans(algorithm: str) -> None:
    result = plan(algorithm, {"a": 1, "b": 1, "c": 1}, {"a": 1, "b": 1}, keys=3000, table_size=1009)  # type: ignore[arg-type]
    rows = {r.name: r for r in result.nodes}
    assert rows["c"].share_after == 0.0
    assert abs(sum(r.share_before for r in result.nodes) - 1.0) < 1e-9
    assert result.moved >= rows["c"].share_before - 1e-9  # c's keys must all move
    assert 0.2 < result.moved < 0.7


def test_plan_rejects_bad_input() -> None:
    with pytest.raises(ConfigurationError, match="weights"):
        plan("jump", {"a": 2, "b": 1})
    with pytest.raises(ConfigurationError, match="empty"):
        plan("ring", {})
    with pytest.raises(ConfigurationError, match="algorithm"):
        plan("nope", {"a": 1}, keys=10)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="weight"):
        plan("ring", {"a": -1})


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["ring", *argv])
    return code, out.getvalue(), err.getvalue()


def test_cli_prints_shares_peak_and_movement(tmp_path: Path) -> None:
    code, out, _ = run_cli("--before", "a,b,c", "--after", "a,b,c,d")
    assert code == 0
    assert "algorithm: ring (exact)" in out
    assert "peak/mean" in out
    assert "keys moved:" in out
    node_file = tmp_path / "next.txt"
    node_file.write_text("a=2\nb\n# retired: c\n")
    code, out, _ = run_cli(
        "--before",
        "a=2,b,c",
        "--after",
        f"@{node_file}",
        "--algorithm",
        "rendezvous",
        "--keys",
        "2000",
    )
    assert code == 0
    assert "sampled over 2,000 keys" in out


def test_cli_reports_bad_input_with_exit_code_2() -> None:
    code, _, err = run_cli("--before", "a=2,b", "--algorithm", "maglev")
    assert code == 2
    assert "weights" in err
    code, _, err = run_cli("--before", "a=0")
    assert code == 2
    assert "weight" in err


def test_demo_section_runs() -> None:
    out = io.StringIO()
    demo.run(DemoOutput(out), DemoOptions())
    text = out.getvalue()
    assert "every one to cache-4" in text
    assert "peak/mean" in text
