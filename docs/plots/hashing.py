"""Plot load per node for the five dsprims hashing algorithms (and uhashring for reference).

Run from the repository root: ``.venv/bin/python docs/plots/hashing.py``. Writes
``docs/img/hashing-load.png`` and ``docs/img/hashing-moves.png``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import uhashring

from dsprims import BoundedLoadBalancer, HashRing, JumpHash, MaglevHash, RendezvousHash

NODES = [f"node-{i}" for i in range(50)]
KEYS = [f"key-{i}" for i in range(200_000)]
OUT = Path(__file__).resolve().parent.parent / "img"


def loads(get: Callable[[str], str], nodes: list[str]) -> list[float]:
    counts = Counter(get(k) for k in KEYS)
    mean = len(KEYS) / len(nodes)
    return sorted((counts[n] / mean for n in nodes), reverse=True)


def algorithms(nodes: list[str]) -> dict[str, Callable[[str], str]]:
    return {
        "HashRing (400 points, nearest)": HashRing(nodes).get_node,
        "HashRing ketama (160 points)": HashRing(nodes, hash="ketama").get_node,
        "JumpHash": JumpHash(nodes).get_node,
        "RendezvousHash": RendezvousHash(nodes).get_node,
        "MaglevHash (M=65537)": MaglevHash(nodes).get_node,
        "BoundedLoadBalancer (c=1.05)": BoundedLoadBalancer(nodes, load_factor=1.05).acquire,
        "uhashring 2.5 (160 vnodes)": uhashring.HashRing(nodes).get_node,
    }


def main() -> None:
    OUT.mkdir(exist_ok=True)
    fig, ax = plt.subplots(figsize=(9, 4.8))
    for label, get in algorithms(NODES).items():
        ax.plot(range(1, len(NODES) + 1), loads(get, NODES), marker=".", label=label)
    ax.axhline(1.15, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("nodes, busiest first")
    ax.set_ylabel("keys held / mean")
    ax.set_title(f"Load per node: {len(NODES)} equal nodes, {len(KEYS):,} keys")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(OUT / "hashing-load.png", dpi=110)

    before, after = algorithms(NODES), algorithms([*NODES, "node-50"])
    sample = KEYS[:50_000]
    labels, moved = [], []
    for label in before:
        a, b = before[label], after[label]
        labels.append(label)
        moved.append(100 * sum(a(k) != b(k) for k in sample) / len(sample))
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.barh(labels, moved)
    ax.axvline(100 / 51, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("% of keys moved when a 51st node joins (dashed: the minimum, 1/51)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(OUT / "hashing-moves.png", dpi=110)


if __name__ == "__main__":
    main()
