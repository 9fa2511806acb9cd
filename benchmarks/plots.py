"""Plots for the benchmark report: one PNG per area, from a pytest-benchmark JSON file.

Each figure has one panel per benchmark group: horizontal bars of the median time of every row,
dsprims highlighted, on a log scale (peers and floors differ by orders of magnitude). Groups whose
rows carry ``extra_info["x"]`` (e.g. ring size) are drawn as lines over x instead, one line per
label. Rows whose ``extra_info["samples_ms"]`` holds latency samples add a CDF panel.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLORS = {"ours": "#1f77b4", "floor": "#7f7f7f", "peer": "#ff7f0e"}


def area_of(group: str) -> str:
    """``"ratelimit: memory try_acquire"`` -> ``"ratelimit"``."""
    return re.split(r"[:\s]", group, maxsplit=1)[0].strip().lower() or "misc"


def _unit(seconds: float) -> tuple[str, float]:
    for name, scale in (("ns", 1e9), ("µs", 1e6), ("ms", 1e3)):
        if seconds * scale < 1000:
            return name, scale
    return "s", 1.0


def _bars(ax: Any, group: str, rows: list[dict[str, Any]]) -> None:
    rows = sorted(rows, key=lambda r: r["stats"]["median"])
    labels = [r.get("extra_info", {}).get("label", r["name"]) for r in rows]
    unit, scale = _unit(max(r["stats"]["median"] for r in rows))
    medians = [r["stats"]["median"] * scale for r in rows]
    colors = [COLORS.get(r.get("extra_info", {}).get("role", ""), "#2ca02c") for r in rows]
    ax.barh(range(len(rows)), medians, color=colors)
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    if max(medians) / max(min(medians), 1e-9) > 20:
        ax.set_xscale("log")
        ax.set_xlabel(f"median time per call ({unit}, log scale)")
    else:
        ax.set_xlabel(f"median time per call ({unit})")
    ax.set_title(group, fontsize=9)
    for i, value in enumerate(medians):
        ax.text(value, i, f" {value:.3g}", va="center", fontsize=7)


def _lines(ax: Any, group: str, rows: list[dict[str, Any]]) -> None:
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    roles: dict[str, str] = {}
    for row in rows:
        info = row.get("extra_info", {})
        label = info.get("label", row["name"])
        series[label].append((float(info["x"]), row["stats"]["median"] * 1e6))
        roles[label] = info.get("role", "")
    for label, points in sorted(series.items()):
        points.sort()
        style = "-o" if roles[label] == "ours" else "--s"
        ax.plot([p[0] for p in points], [p[1] for p in points], style, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(rows[0].get("extra_info", {}).get("x_label", "size"))
    ax.set_ylabel("median time per call (µs)")
    ax.set_title(group, fontsize=9)
    ax.legend(fontsize=7)


def _cdf(ax: Any, group: str, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        info = row.get("extra_info", {})
        samples = sorted(info.get("samples_ms", []))
        if not samples:
            continue
        ys = [(i + 1) / len(samples) for i in range(len(samples))]
        ax.plot(samples, ys, label=info.get("label", row["name"]))
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("fraction of samples ≤ x")
    ax.set_title(f"{group}: latency distribution", fontsize=9)
    ax.legend(fontsize=7)


def render(data: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write ``bench-<area>.png`` files into ``out_dir``; return their paths."""
    by_area: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for bench in data.get("benchmarks", []):
        group = bench.get("group") or "misc"
        by_area[area_of(group)][group].append(bench)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for area, groups in sorted(by_area.items()):
        panels: list[tuple[str, str, list[dict[str, Any]]]] = []
        for group, rows in sorted(groups.items()):
            kind = "lines" if all("x" in r.get("extra_info", {}) for r in rows) else "bars"
            panels.append((kind, group, rows))
            if any(r.get("extra_info", {}).get("samples_ms") for r in rows):
                panels.append(("cdf", group, rows))
        cols = 2 if len(panels) > 1 else 1
        nrows = math.ceil(len(panels) / cols)
        fig, axes = plt.subplots(
            nrows, cols, figsize=(6.5 * cols, 2.6 * nrows + 0.6), squeeze=False
        )
        for ax, (kind, group, rows) in zip(axes.flat, panels, strict=False):
            {"bars": _bars, "lines": _lines, "cdf": _cdf}[kind](ax, group, rows)
        for ax in list(axes.flat)[len(panels) :]:
            ax.axis("off")
        fig.suptitle(f"dsprims benchmarks — {area} (blue: dsprims, grey: floor, orange: peers)")
        fig.tight_layout()
        path = out_dir / f"bench-{area}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written
