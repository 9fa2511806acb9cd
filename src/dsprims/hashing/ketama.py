"""libketama's continuum, reproduced byte for byte.

libketama (Last.fm, 2007; https://github.com/RJ/ketama) is the consistent-hashing scheme that
memcached clients, twemproxy and libmemcached's ketama mode follow (those two reimplement it, with
small differences of their own in rounding edge cases). A Python service that must map keys
exactly as libketama does needs the same points, the same arithmetic and the same tie order:

* Server ``i`` with weight ``w_i`` (libketama's "memory", an integer) out of a total ``W`` over
  ``n`` servers gets ``ks = floorf(pct * 40.0 * (float)n)`` hashes, where
  ``pct = (float)w_i / (float)W`` is computed in **single precision** (float32) and the product is
  rounded back to float32 by ``floorf``'s float argument. At equal weights that is 40 hashes, but
  the float32 rounding can make it 39 for some server counts; this module reproduces that.
* Hash ``k`` is the MD5 of the ASCII text ``"<server>-<k>"``; its 16 bytes give four points, each
  four bytes read little-endian (bytes 0-3, 4-7, 8-11, 12-15), for 160 points per server.
* The continuum is sorted by point with C ``qsort``; glibc's ``qsort`` is a stable merge sort, so
  tied points keep generation order: server order in the server list, then ``k``, then the four
  points of one digest. A lookup takes the **first** point ``>= hash(key)`` (libketama's binary
  search returns the first of a run of equal points) and wraps to the first point of the circle.
* A key's hash is the first four bytes of MD5(key), little-endian.

Failure modes: the server list order matters for tied points (as it does in libketama), and the
weights are relative, so adding a server changes every server's point count and moves keys between
existing servers: libketama has no minimal-disruption guarantee beyond what that arithmetic gives.
libketama truncates server names beyond 21 bytes and keys at the first NUL byte (C strings); this
module hashes the full names and keys, so keep both short and free of NUL bytes for compatibility.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Mapping

from dsprims.errors import ConfigurationError

__all__ = ["ketama_hash", "ketama_hash_count", "ketama_points"]

_F32 = struct.Struct("<f")
_FOUR = struct.Struct("<4I")


def _f32(value: float) -> float:
    """Round a double to the nearest float32, as a C ``(float)`` conversion does."""
    result: float = _F32.unpack(_F32.pack(value))[0]
    return result


def ketama_hash_count(weight: int, total: int, servers: int) -> int:
    """How many MD5 digests libketama computes for one server (4 points each).

    Args:
        weight: the server's weight (libketama's memory figure), a positive integer.
        total: the sum of all servers' weights.
        servers: the number of servers.
    """
    pct = _f32(_f32(float(weight)) / _f32(float(total)))
    # pct * 40.0 is a double product and (float)numservers is widened back to double; floorf's
    # float parameter then rounds the product to float32 before flooring.
    return math.floor(_f32(pct * 40.0 * _f32(float(servers))))


def ketama_hash(data: bytes) -> int:
    """libketama's key hash: the first four bytes of MD5(data), little-endian."""
    return int.from_bytes(hashlib.md5(data, usedforsecurity=False).digest()[:4], "little")


def check_ketama_weight(node: str, weight: float) -> int:
    """libketama reads weights as integers: accept whole numbers only."""
    if not float(weight).is_integer():
        raise ConfigurationError(
            f"weight of node {node!r} must be a whole number with hash='ketama' "
            f"(libketama reads integer weights), got {weight!r}"
        )
    return int(weight)


def ketama_points(servers: Mapping[str, float]) -> list[tuple[int, str]]:
    """The continuum: ``(point, server)`` pairs sorted as libketama sorts them.

    Args:
        servers: server name -> weight, in server-list order (the order breaks point ties).
    """
    weights = {name: check_ketama_weight(name, w) for name, w in servers.items()}
    total = sum(weights.values())
    count = len(weights)
    entries: list[tuple[int, str]] = []
    for name, weight in weights.items():
        for k in range(ketama_hash_count(weight, total, count)):
            digest = hashlib.md5(f"{name}-{k}".encode(), usedforsecurity=False).digest()
            for point in _FOUR.unpack(digest):
                entries.append((point, name))
    # list.sort is stable, like glibc's merge-sort qsort: ties keep generation order.
    entries.sort(key=lambda entry: entry[0])
    return entries
