"""The pure core of the ZooKeeper lock: contender names, queue order and the acquire protocol.

Algorithm: the lock recipe of the ZooKeeper documentation ("Recipes and Solutions: Locks",
zookeeper.apache.org/doc/current/recipes.html) with the fencing token of Kleppmann ("How to do
distributed locking", 2016) taken from the znode's ``czxid``:

1. *Enroll*: one ``multi`` creates an ephemeral sequential contender node
   ``<lock znode>/<owner>-lock-<sequence>`` (``owner`` is a random secret) and sets the lock
   znode's data. The ``setData`` result is the lock znode's ``Stat`` *after* the create, in the
   same transaction: its ``mzxid`` is the transaction's zxid, which is the contender node's
   ``czxid`` (the fencing token), and ``numChildren == 1`` says the lock was free. So the
   uncontended grant costs one round trip, and the whole cycle two (enroll, delete).
2. Otherwise *list* the children; the contender with the lowest sequence number holds the lock
   (FIFO by arrival at the leader). A contender that is not first sets an ``exists`` watch on
   its *predecessor only* (no herd effect: one release wakes one waiter) and waits; when the
   watch fires, or the predecessor was already gone, it lists again.

Tokens: a zxid is ``epoch << 32 | counter``; it grows with every write and across restarts and
leader elections (a new epoch starts above every zxid of the old one), so a later grant always
carries a larger token, even when the lock znode was deleted and re-created and the sequence
suffix restarted at 0 (that is why the suffix alone is never the token). Sequence order and
``czxid`` order agree inside one lock znode, because the leader assigns both in one total order.

Idle lock znodes are deleted (see :mod:`dsprims.locks.zookeeper`): a ``delete`` of the lock
znode succeeds only when it has no children, so it can never remove a waiter's or a holder's
node. A contender that finds the lock znode gone (``NoNode``) re-creates it *together with* its
contender node in one ``multi`` (:class:`Enroll` with ``create_parent``), which leaves no window
for a cleanup between the two; if someone else re-created it first (``NodeExists``) it enrolls
as usual. Tokens are unaffected: they are zxids, not anything stored in the lock znode.

This module is pure: the acquire protocol is a generator (:func:`acquire_protocol`) that yields
actions (:class:`Enroll`, :class:`MakeParent`, :class:`ListContenders`,
:class:`WatchPredecessor`, :class:`AwaitChange`) and receives their results; the thread driver
and the asyncio driver in :mod:`dsprims.locks.zookeeper` execute them against kazoo, so the
decisions are written once and tested without a server.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "NODE_MARK",
    "Action",
    "AwaitChange",
    "Busy",
    "ContenderVanished",
    "Enroll",
    "Enrolled",
    "Granted",
    "LeaseEffect",
    "ListContenders",
    "Listing",
    "MakeParent",
    "Outcome",
    "ParentExists",
    "ParentMissing",
    "Position",
    "WatchPredecessor",
    "acquire_protocol",
    "confirm_deadline",
    "contender_prefix",
    "owned_by",
    "position",
    "sequence_of",
    "session_effect",
]

#: Separates the owner id from the sequence suffix in a contender node name.
NODE_MARK: Final = "-lock-"
#: ZooKeeper appends a 10-digit (signed 32-bit, zero-padded) counter to sequential nodes.
_SEQUENCE_DIGITS: Final = 10
#: How many times a vanished contender node (session expired while waiting) is re-enrolled
#: before :class:`ContenderVanished` is raised.
_MAX_RESTARTS: Final = 16
#: How many times an enrollment may race the deletion or re-creation of an idle lock znode (each
#: race means another client completed a whole lock cycle meanwhile, so the system progresses).
_MAX_PARENT_RACES: Final = 64


def contender_prefix(owner: str) -> str:
    """The name prefix of a contender node before ZooKeeper appends the sequence number."""
    return f"{owner}{NODE_MARK}"


def sequence_of(child: str) -> int | None:
    """The sequence number of a contender node name, or ``None`` for a foreign child."""
    head, mark, tail = child.rpartition(NODE_MARK)
    if not mark or not head or len(tail) != _SEQUENCE_DIGITS:
        return None
    try:
        return int(tail)
    except ValueError:
        return None


def owned_by(child: str, owner: str) -> bool:
    """Whether ``child`` is a contender node created with ``owner``'s prefix."""
    return child.startswith(contender_prefix(owner)) and sequence_of(child) is not None


@dataclass(frozen=True, slots=True)
class Position:
    """Where a contender stands in the queue.

    Attributes:
        granted: the contender holds the lock (lowest sequence number).
        predecessor: the child right before it, to watch, when not granted.
        missing: the contender's own node is not among the children (its session ended).
        ahead: how many contenders are ahead of it.
    """

    granted: bool
    predecessor: str | None = None
    missing: bool = False
    ahead: int = 0


def position(children: Iterable[str], mine: str) -> Position:
    """The queue position of the contender node named ``mine`` among ``children``.

    Children that are not contender nodes are ignored; ties (impossible inside one lock znode)
    are broken by name so the order is total.
    """
    mine_seq = sequence_of(mine)
    if mine_seq is None:
        raise ValueError(f"{mine!r} is not a contender node name")
    ahead: list[tuple[int, str]] = []
    found = False
    for child in children:
        if child == mine:
            found = True
            continue
        seq = sequence_of(child)
        if seq is not None and (seq, child) < (mine_seq, mine):
            ahead.append((seq, child))
    if not found:
        return Position(granted=False, missing=True)
    if not ahead:
        return Position(granted=True)
    return Position(granted=False, predecessor=max(ahead)[1], ahead=len(ahead))


def confirm_deadline(
    deadline: float | None, sent_at: float, session_timeout: float, drift: float, floor: float
) -> float | None:
    """The lease deadline after the server answered a request sent at ``sent_at``.

    The server expires a session only after hearing nothing from it for the session timeout, so
    an answer to a request sent at ``sent_at`` proves the session (and its ephemeral nodes) lives
    until at least ``sent_at + session_timeout`` on the server's clock; ``drift`` (a fraction)
    and ``floor`` (seconds) allow for clock-rate differences. Returns ``None`` when the lease had
    already lapsed before the request was sent (``sent_at >= deadline``): the holder ran
    unprotected for a while, so the lease must stay lost even though the session survived.
    The deadline never moves backwards.
    """
    if deadline is None or sent_at >= deadline:
        return None
    candidate = sent_at + session_timeout - session_timeout * drift - floor
    return max(deadline, candidate)


#: What a session state change means for a held lease: ``"lose"`` or ``"keep"``.
LeaseEffect = Literal["lose", "keep"]


def session_effect(state: str, *, suspended_is_lost: bool) -> tuple[LeaseEffect, str]:
    """The effect of a kazoo session state (``"CONNECTED"``, ``"SUSPENDED"``, ``"LOST"``).

    ``LOST`` (the session expired, its ephemeral nodes are gone) loses every lease of the
    session. ``SUSPENDED`` (the connection dropped; the server keeps the session for the session
    timeout) loses a lease only under ``suspended_is_lost``; otherwise the lease stays valid
    until its local deadline, which no heartbeat can move while suspended, so it ends no later
    than the moment the server could expire the session. Returns the effect and its reason.
    """
    if state == "LOST":
        return "lose", "the ZooKeeper session expired (LOST)"
    if state == "SUSPENDED" and suspended_is_lost:
        return "lose", "the ZooKeeper connection was SUSPENDED (suspended_is_lost=True)"
    return "keep", ""


# -- the acquire protocol -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Enroll:
    """Create the contender node ``<parent>/<prefix><seq>`` and touch ``parent`` in one multi.

    With ``create_parent`` the same multi first creates ``parent`` itself (it was found
    missing: an idle lock znode is deleted by its last user).

    Result: :class:`Enrolled`. The driver throws :class:`ParentMissing` when ``parent`` (or,
    with ``create_parent``, its parent) does not exist, and :class:`ParentExists` when
    ``create_parent`` was set but someone else created ``parent`` first.
    """

    parent: str
    prefix: str
    create_parent: bool = False


@dataclass(frozen=True, slots=True)
class Enrolled:
    """The result of :class:`Enroll`: the node path, its ``czxid`` and whether it was alone."""

    path: str
    token: int
    alone: bool


@dataclass(frozen=True, slots=True)
class MakeParent:
    """Create the lock znode and its ancestors (result: ``None``)."""

    parent: str


@dataclass(frozen=True, slots=True)
class ListContenders:
    """List the children of the lock znode (result: :class:`Listing`)."""

    parent: str


@dataclass(frozen=True, slots=True)
class Listing:
    """The result of :class:`ListContenders`.

    Attributes:
        children: the child names.
        stale: the session that created this contender's node has ended since (kazoo said
            LOST): the node is gone or about to go, even if it is still listed, so the
            contender must enroll again instead of waiting behind a dead node.
    """

    children: list[str]
    stale: bool = False


@dataclass(frozen=True, slots=True)
class WatchPredecessor:
    """Arm a one-shot ``exists`` watch on ``path`` (result: whether the node exists).

    The driver resets its wake-up signal *before* sending the request, so a watch that fires
    between the answer and :class:`AwaitChange` is not missed.
    """

    path: str


@dataclass(frozen=True, slots=True)
class AwaitChange:
    """Block until the watch fires or the session changes state (result: ``None``).

    The driver enforces the caller's deadline here (it raises instead of returning).
    """


Action = Enroll | MakeParent | ListContenders | WatchPredecessor | AwaitChange


class ParentMissing(Exception):
    """Thrown into the protocol by a driver when the lock znode does not exist."""


class ParentExists(Exception):
    """Thrown into the protocol when an ``Enroll(create_parent=True)`` found the lock znode."""


class ContenderVanished(Exception):
    """Raised by the protocol when its contender node kept disappearing (sessions expiring)."""


@dataclass(frozen=True, slots=True)
class Granted:
    """The lock is held through the contender node ``path``; ``token`` is its ``czxid``."""

    path: str
    token: int


@dataclass(frozen=True, slots=True)
class Busy:
    """A non-waiting attempt found the lock held; the driver deletes ``path``."""

    path: str


Outcome = Granted | Busy


def acquire_protocol(
    parent: str, owner: str, *, wait: bool, parent_missing: bool = False
) -> Generator[Action, object, Outcome]:
    """The acquire protocol as a generator of actions (see the module docstring).

    Args:
        parent: the lock znode path.
        owner: the random owner id put in the contender node name.
        wait: wait for the predecessors (``acquire``) or give up at once (``try_acquire``).
        parent_missing: the lock znode is probably gone (this client deleted it as idle):
            start with the enrollment that re-creates it, saving the failed first one. A wrong
            guess costs what a right one saves (``ParentExists``, then a plain enrollment).

    Yields:
        Actions for the driver; each ``send`` returns the action's result.

    Returns:
        :class:`Granted` or :class:`Busy`. The driver deletes the contender node when the
        protocol ends any other way (its deadline, a cancellation, an error).
    """
    prefix = contender_prefix(owner)
    restarts = races = 0
    create_parent = parent_missing
    while True:
        try:
            enrolled = yield Enroll(parent, prefix, create_parent)
        except ParentMissing:
            races += 1
            if races > _MAX_PARENT_RACES:
                raise
            if create_parent:
                # Even the lock znode's parent (the prefix) is missing: create the whole path,
                # then enroll as usual (a cleanup in between sends us back here, harmlessly).
                yield MakeParent(parent)
                create_parent = False
            else:
                create_parent = True  # re-create it and enroll in one transaction
            continue
        except ParentExists:
            races += 1
            if races > _MAX_PARENT_RACES:
                raise ContenderVanished("the lock znode kept being created and deleted") from None
            create_parent = False  # another contender re-created it first: just enroll
            continue
        assert isinstance(enrolled, Enrolled)
        if enrolled.alone:
            return Granted(enrolled.path, enrolled.token)
        mine = enrolled.path.rsplit("/", 1)[1]
        while True:
            listing = yield ListContenders(parent)
            assert isinstance(listing, Listing)
            where = position(listing.children, mine)
            if where.missing or listing.stale:
                break  # the session ended and took the node with it: enroll again
            if where.granted:
                return Granted(enrolled.path, enrolled.token)
            if not wait:
                return Busy(enrolled.path)
            assert where.predecessor is not None
            exists = yield WatchPredecessor(f"{parent}/{where.predecessor}")
            if exists:
                yield AwaitChange()
        restarts += 1
        if restarts > _MAX_RESTARTS:
            raise ContenderVanished("the contender node kept vanishing (sessions expiring)")
