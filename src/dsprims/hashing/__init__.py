"""Consistent hashing: a ring with virtual nodes and a libketama-exact mode, Jump, rendezvous,
Maglev, and consistent hashing with bounded loads.

All algorithms share one key convention: keys are ``str`` (hashed as UTF-8) or ``bytes``; any
other type raises ``TypeError``. Lookups on an empty structure raise :class:`EmptyRingError`
(a ``LookupError``). Bad parameters raise :class:`~dsprims.errors.ConfigurationError`.
"""

from __future__ import annotations

from dsprims.hashing._common import HASH_SPACE, EmptyRingError, key_hash32
from dsprims.hashing.bounded import BoundedLoadBalancer
from dsprims.hashing.jump import JumpHash, jump_hash
from dsprims.hashing.maglev import MaglevHash
from dsprims.hashing.rendezvous import RendezvousHash
from dsprims.hashing.ring import DEFAULT_VNODES, HashRing, Move

__all__ = [
    "DEFAULT_VNODES",
    "HASH_SPACE",
    "BoundedLoadBalancer",
    "EmptyRingError",
    "HashRing",
    "JumpHash",
    "MaglevHash",
    "Move",
    "RendezvousHash",
    "jump_hash",
    "key_hash32",
]
