"""Lock-free reads while another thread adds and removes nodes."""

from __future__ import annotations

import sys
import threading

from dsprims import HashRing


def test_readers_see_a_whole_ring_during_churn() -> None:
    base = [f"n{i}" for i in range(12)]
    ring = HashRing(base, vnodes=100)
    with_extra = HashRing([*base, "extra"], vnodes=100)
    keys = [f"key-{i}" for i in range(400)]
    # Every read must match one of the two rings the writer alternates between.
    allowed = {k: {ring.get_node(k), with_extra.get_node(k)} for k in keys}
    allowed_prefs = {
        k: {tuple(ring.get_nodes(k, 3)), tuple(with_extra.get_nodes(k, 3))} for k in keys
    }
    stop = threading.Event()
    errors: list[BaseException] = []
    reads = [0]
    seen_extra = [False]

    def reader() -> None:
        try:
            while not stop.is_set():
                for k in keys:
                    node = ring.get_node(k)
                    assert node in allowed[k], (k, node)
                    seen_extra[0] |= node == "extra"
                    prefs = tuple(ring.get_nodes(k, 3))
                    assert prefs in allowed_prefs[k], (k, prefs)
                    reads[0] += 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, to interleave reads with writes
    try:
        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        for _ in range(60):
            ring.add_node("extra")
            ring.remove_node("extra")
        ring.add_node("extra")
        for _ in range(20):
            if seen_extra[0]:
                break
            threading.Event().wait(0.01)
        stop.set()
        for t in threads:
            t.join(timeout=30)
    finally:
        sys.setswitchinterval(old_interval)
    assert not errors, errors[0]
    assert reads[0] > 1000
    assert ring.intervals() == with_extra.intervals()


def test_concurrent_writers_do_not_lose_updates() -> None:
    ring = HashRing(vnodes=20)

    def add_many(prefix: str) -> None:
        for i in range(40):
            ring.add_node(f"{prefix}{i}")

    threads = [threading.Thread(target=add_many, args=(p,)) for p in "abc"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ring) == 120
    fresh = HashRing([f"{p}{i}" for p in "abc" for i in range(40)], vnodes=20)
    assert ring.intervals() == fresh.intervals()
