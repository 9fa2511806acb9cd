"""Turn a pytest-benchmark JSON file into ``benchmarks/RESULTS.md`` (tables of ratios)."""

from __future__ import annotations

import json
import platform
import statistics
import sys
from collections import defaultdict
from importlib import metadata
from pathlib import Path
from typing import Any

PEERS = [
    "dsprims", "redis", "kazoo", "mmh3", "uhashring", "limits", "pyrate-limiter", "throttled-py",
    "pybreaker", "circuitbreaker", "aiobreaker", "vectorclock", "hlcpy", "python-redis-lock",
]  # fmt: skip


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _fmt_time(seconds: float) -> str:
    if seconds < 1e-6:
        return f"{seconds * 1e9:.0f} ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} µs"
    return f"{seconds * 1e3:.2f} ms"


_ROLE_ORDER = {"ours": 0, "floor": 1, "peer": 2}


def _row_order(row: dict[str, Any]) -> tuple[Any, ...]:
    info = row.get("extra_info", {})
    return (info.get("x", 0), _ROLE_ORDER.get(info.get("role", ""), 3), row["name"])


def expand_compared(data: dict[str, Any]) -> dict[str, Any]:
    """Replace each ``compare`` entry (one interleaved run of a whole group) by a row per contender.

    The rows look like ordinary entries (group, role, label, goal, median) and carry the paired
    ratio measured in the interleaved run, which ``render`` prefers to a ratio of medians.
    """
    expanded = []
    for bench in data.get("benchmarks", []):
        rows = bench.get("extra_info", {}).get("compare")
        if rows is None:
            expanded.append(bench)
            continue
        for row in rows:
            info = {"role": row["role"], "label": row["label"], "interleaved": row["rounds"]}
            if "ratio" in row:
                info["paired_ratio"] = row["ratio"]
            if "goal" in row:
                info["goal"] = row["goal"]
            expanded.append(
                {
                    "name": f"{bench['name']}[{row['label']}]",
                    "group": bench.get("group"),
                    "extra_info": info,
                    "stats": {"median": row["median"]},
                }
            )
    return {**data, "benchmarks": expanded}


def render(data: dict[str, Any]) -> str:
    """The Markdown report for one pytest-benchmark run."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for bench in data.get("benchmarks", []):
        groups[bench.get("group") or "ungrouped"].append(bench)
    machine = data.get("machine_info", {})
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`benchmarks/report.py`); every ratio compares rows measured in",
        "the same run, on medians (robust to the other load of a shared machine). `ours / this`",
        "below 1 means dsprims is faster. Goals come from the issues; numbers on a shared 2-core",
        "machine still vary by 10–20 % between runs. Groups marked *interleaved* ran all their",
        "rows in one loop, alternating batches, and show the median of per-round ratios (load",
        "drift cancels); the others ran their rows one after another.",
        "",
        f"- Machine: {machine.get('cpu', {}).get('brand_raw', platform.processor() or '?')}, "
        f"{machine.get('cpu', {}).get('count', '?')} cores; "
        f"Python {platform.python_version()} ({sys.implementation.name}); {platform.platform()}",
        f"- Run: {data.get('datetime', '?')}",
        "- Versions: " + ", ".join(f"{p} {_version(p)}" for p in PEERS),
        "",
    ]
    for group in sorted(groups):
        rows = groups[group]
        for row in rows:
            samples = row.get("extra_info", {}).get("samples_ms")
            if samples:
                # A latency distribution: the row's time is its median sample, and p99 is shown.
                ordered = sorted(samples)
                row["stats"]["median"] = statistics.median(ordered) / 1000
                p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
                row.setdefault("extra_info", {})["label"] = (
                    f"{row['extra_info'].get('label', row['name'])} (p99 {p99:.2f} ms, "
                    f"max {ordered[-1]:.2f} ms, n={len(ordered)})"
                )
        sized = all("x" in r.get("extra_info", {}) for r in rows)
        lines += [f"## {group}", ""]
        interleaved = [
            r["extra_info"]["interleaved"] for r in rows if "interleaved" in r.get("extra_info", {})
        ]
        if interleaved:
            lines += [f"*interleaved, {interleaved[0]} rounds*", ""]
        if sized:
            lines += ["| what | size | role | median | ours / this |", "|---|---|---|---|---|"]
        else:
            lines += ["| what | role | median | ours / this | goal |", "|---|---|---|---|---|"]
        rows.sort(key=_row_order)
        for row in rows:
            info = row.get("extra_info", {})
            peers = [r for r in rows if r.get("extra_info", {}).get("x") == info.get("x")]
            ours = [r for r in peers if r.get("extra_info", {}).get("role") == "ours"]
            base = ours[0]["stats"]["median"] if ours else None
            mean = row["stats"]["median"]
            value = info.get("paired_ratio", base / mean if base is not None else None)
            ratio = "" if value is None or row in ours else f"{value:.2f}×"
            label = info.get("label", row["name"])
            if sized:
                role = info.get("role", "?")
                lines.append(f"| {label} | {info['x']} | {role} | {_fmt_time(mean)} | {ratio} |")
                continue
            goal = info.get("goal")
            verdict = ""
            if goal is not None and value is not None and row not in ours:
                verdict = f"≤ {goal:.3g}× " + ("✅" if value <= goal else "❌")
            lines.append(
                f"| {label} | {info.get('role', '?')} | {_fmt_time(mean)} | {ratio} | {verdict} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """``report.py RUN.json RESULTS.md [DOCS_DIR]``: the report, plus plots and a docs page."""
    if len(argv) not in (3, 4):
        print("usage: report.py RUN.json RESULTS.md [DOCS_DIR]", file=sys.stderr)
        return 2
    data = expand_compared(json.loads(Path(argv[1]).read_text()))
    results = Path(argv[2])
    body = render(data)
    if len(argv) == 4:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from plots import render as render_plots

        docs = Path(argv[3])
        images = render_plots(data, docs / "img")
        gallery = "\n".join(f"![{p.stem}](img/{p.name})" for p in images)
        (docs / "benchmarks.md").write_text(body + "\n## Plots\n\n" + gallery + "\n")
        relative = Path("..") / docs.name / "img"
        body += (
            "\n## Plots\n\n" + "\n".join(f"![{p.stem}]({relative / p.name})" for p in images) + "\n"
        )
    results.write_text(body)
    print(f"wrote {results} ({len(data.get('benchmarks', []))} benchmarks)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
