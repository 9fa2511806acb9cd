"""ZooKeeper locks with fencing tokens: :class:`ZooKeeperLock` and :class:`AsyncZooKeeperLock`.

Algorithm: the ZooKeeper lock recipe (ephemeral sequential contender nodes, FIFO by sequence
number, each waiter watching only its predecessor), with the fencing token taken from the
contender node's ``czxid`` (Kleppmann, "How to do distributed locking", 2016). The decisions live
in :mod:`dsprims.locks.zookeeper_core`; this module runs them against kazoo, from threads
(:class:`ZooKeeperLock`) or from asyncio (:class:`AsyncZooKeeperLock`; kazoo has no asyncio
driver, so its ``*_async`` results are bridged to asyncio futures with
``loop.call_soon_threadsafe``).

Round trips: an uncontended ``acquire`` + ``release`` costs two (one ``multi`` that enrolls and
reads the fencing token, one ``delete``); a contended acquire adds one ``getChildren`` and one
``exists`` watch per change of predecessor. After the lock znode was deleted as idle, the client
that deleted it re-creates it in its next enrolling ``multi`` (no extra round trip); any other
client's first acquire adds one (its plain ``multi`` fails, then one re-creates the znode).

Guarantees:

* Mutual exclusion while the holder's ZooKeeper session lives; tokens strictly increase per lock
  name across all grants, restarts and leader changes (zxids only grow).
* Loss detection without a round trip: a lease's local deadline is the send time of the last
  request the server answered plus the session timeout (minus a drift allowance). A per-client
  heartbeat (one ``exists`` of each held contender node every third of the session timeout)
  moves it forward while the session is healthy; a paused process finds ``lease.lost`` true as
  soon as it resumes.
* Session states: ``SUSPENDED`` (connection lost, session maybe alive) puts leases *at risk*:
  they are **not** marked lost at once (the session may well survive a short blip), but no
  heartbeat can confirm them, so they become lost at their local deadline, which is no later than
  the moment the server could expire the session. Pass ``suspended_is_lost=True`` to mark them
  lost at ``SUSPENDED`` instead (Curator's strict mode). ``LOST`` (session expired) marks every
  lease of that session lost and fires ``on_lost``. A lost lease stays lost.
* ``release()`` of a lost lease raises :class:`~dsprims.LockLost`. A lease found lost frees the
  lock at once (its node is deleted if it is still there); a lease that is garbage-collected
  without ``release()`` frees it within a third of the session timeout (its finalizer only
  queues the work for the heartbeat thread, so it can never deadlock on the session's lock).
  A non-owner cannot release: the node name carries a random owner id.
* No leaked contender node: an acquire that times out, fails or is cancelled deletes its node;
  a ``create`` that was abandoned before its reply arrived is deleted when the reply comes, and
  one whose reply was lost with the connection is found by its owner id and deleted when the
  client reconnects (kazoo issue #732). Ephemeral nodes vanish with their session anyway.
* No leaked lock znode: the lock znode (the parent of the contender nodes, one per lock name)
  is deleted once this client has stopped using it for ``cleanup_delay`` seconds (default 1 s,
  so a hot lock pays nothing; ``close()`` and interpreter exit delete pending ones at once).
  The ``delete`` fails with ``NotEmpty`` while anyone holds or waits, so it never takes a
  node from under a contender; a contender that finds the lock znode gone re-creates it and
  enrolls in one transaction (see :mod:`dsprims.locks.zookeeper_core`). Tokens are zxids, so
  they keep increasing across a deletion (the sequence suffix restarts at 0 but is never the
  token). A lock znode whose last user died without deleting it (crashed, or killed before
  ``cleanup_delay``) stays until the next lock cycle on that name.

Failure modes: every request is bounded by the backend's ``timeout`` and raises
:class:`~dsprims.BackendUnavailable` when the server does not answer in time (a *waiting*
acquire first waits up to that long for the client to reconnect, re-sends its reads, and
enrolls again under a new owner id if its session expired or its enrollment was cut off); a
lease whose session cannot be confirmed becomes lost at its local deadline (conservative: the
session may in fact have survived). The session timeout used for the deadline is the one the
client asked for; a server configured with a smaller ``maxSessionTimeout`` would negotiate it
down, so pass ``session_timeout=`` when that is the case. Deleting a contender node by hand is
noticed at the next heartbeat.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import math
import queue
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any

from dsprims.backends.base import DEFAULT_PREFIX, check_name
from dsprims.errors import BackendError, BackendUnavailable, ConfigurationError, LockNotAcquired
from dsprims.locks._lock import _pop_held, _push_held
from dsprims.locks.core import CLOCK_DRIFT_FLOOR, check_timeout, check_ttl
from dsprims.locks.lease import AsyncLease, Lease, LeaseBase, OnLost
from dsprims.locks.zookeeper_core import (
    NODE_MARK,
    Action,
    AwaitChange,
    Busy,
    ContenderVanished,
    Enroll,
    Enrolled,
    Granted,
    ListContenders,
    Listing,
    MakeParent,
    Outcome,
    ParentExists,
    ParentMissing,
    WatchPredecessor,
    acquire_protocol,
    confirm_deadline,
    owned_by,
    session_effect,
)
from dsprims.timesource import SYSTEM_CLOCK, Clock

try:
    import kazoo.exceptions as kexc
    from kazoo.client import KazooClient, KazooState
    from kazoo.protocol.states import ZnodeStat
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("ZooKeeper locks need kazoo: pip install 'dsprims[zookeeper]'") from exc

from dsprims.backends.zookeeper import ZooKeeperBackend, translate_zookeeper_error

__all__ = ["AsyncZooKeeperLock", "ZooKeeperLock"]

logger = logging.getLogger(__name__)

_DRIVER_ERRORS = (kexc.KazooException, OSError)
#: How many times a waiting acquire re-sends a request that failed with the connection.
_READ_RETRIES = 3
#: Default seconds an unused lock znode is kept before this client deletes it.
DEFAULT_CLEANUP_DELAY = 1.0
#: At most this long is spent at interpreter exit deleting idle lock znodes.
_EXIT_FLUSH_SECONDS = 2.0
#: How many lock znodes this client remembers having deleted (enrollment hints).
_GONE_HINTS = 4096


def _resolve(backend: object) -> tuple[ZooKeeperBackend, bool]:
    """The backend, and whether it was made here from a URL (then the lock closes it)."""
    if isinstance(backend, str):
        from dsprims.backends.url import backend_from_url

        made = backend_from_url(backend)
        if not isinstance(made, ZooKeeperBackend):
            made.close()
            raise ConfigurationError(f"backend must be a zookeeper:// URL, got {backend!r}")
        return made, True
    from dsprims.backends.url import client_kind

    if client_kind(backend) == "kazoo":  # a started KazooClient: the caller's to close
        return ZooKeeperBackend(backend), False
    if not isinstance(backend, ZooKeeperBackend):
        raise ConfigurationError(
            f"backend must be a ZooKeeperBackend, a KazooClient or a zookeeper:// URL, "
            f"got {backend!r}"
        )
    return backend, False


def _check_cleanup_delay(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"cleanup_delay must be a number of seconds or None, got {value!r}")
    delay = float(value)
    if not math.isfinite(delay) or delay < 0:
        raise ConfigurationError(f"cleanup_delay must be >= 0 and finite, got {value!r}")
    return delay


def _ignore_result(result: Any) -> None:
    with contextlib.suppress(Exception):
        result.get(block=False)


# -- per-client session tracking, heartbeats and the janitor ------------------------------------


class _Held:
    """A lease tracked by a :class:`_Session` (held weakly: see :meth:`_Session.track`)."""

    __slots__ = ("cleanup_delay", "clock", "drift", "path", "ref", "strict", "timeout")

    def __init__(
        self,
        lease: LeaseBase,
        path: str,
        clock: Clock,
        timeout: float,
        strict: bool,
        drift: float = 0.01,
        cleanup_delay: float | None = None,
    ) -> None:
        self.ref = weakref.ref(lease)
        self.path = path
        self.clock = clock
        self.timeout = timeout
        self.strict = strict
        self.drift = drift
        self.cleanup_delay = cleanup_delay


class _Session:
    """What one kazoo client's locks share: a state listener, a heartbeat, janitors.

    * Listener: ``LOST`` marks every tracked lease lost; ``SUSPENDED`` marks the strict ones;
      state changes wake waiting acquires so they re-check instead of sleeping on a dead watch.
    * Heartbeat: one daemon thread per client, alive only while leases are held, sending an
      ``exists`` for each contender node every third of the session timeout; an answer moves
      the lease deadline (:func:`confirm_deadline`), a missing node marks the lease lost.
    * Janitor: ``(lock znode, owner)`` pairs whose contender node may exist without anyone
      waiting for it; swept (children listed, matching nodes deleted) on every reconnect.
    * Idle lock znodes: each lock znode counts the acquires and leases of this client that use
      it; when the count drops to zero the znode is deleted after the lock's ``cleanup_delay``
      (by the heartbeat thread, which lives while there are leases or pending deletions). The
      ``delete`` fails with ``NotEmpty`` while anyone (of any client) holds or waits, which is
      fine: that user deletes it later. A deletion that failed for a connection reason is
      retried at the next reconnect.
    """

    def __init__(self, client: KazooClient) -> None:
        self._client = weakref.ref(client)
        self._lock = threading.Lock()
        self._held: dict[int, _Held] = {}
        self._wakers: set[Callable[[], None]] = set()
        self._pending: set[tuple[str, str]] = set()
        #: lock znode -> acquires and leases of this client using it.
        self._active: dict[str, int] = {}
        #: idle lock znode -> when to delete it (``time.monotonic()``; real time: this is I/O
        #: scheduling, no lock decision depends on it).
        self._idle: dict[str, float] = {}
        #: idle lock znodes whose deletion failed with the connection (retried on reconnect).
        self._undeleted: set[str] = set()
        #: lock znodes this client deleted (oldest first; bounded): hints for the next enroll.
        self._gone: dict[str, bool] = {}
        #: Leases collected without release() (queued by their finalizer, see _collected).
        self._collected_leases: queue.SimpleQueue[tuple[int, str, str, str, float | None]] = (
            queue.SimpleQueue()
        )
        self._kick = threading.Event()
        self._beat_now = False
        self._thread: threading.Thread | None = None
        #: Incremented at every LOST; a grant that straddles one is lost on arrival.
        self.losses = 0
        client.add_listener(self._on_state)

    # -- session states ----------------------------------------------------------------------

    def _on_state(self, state: str) -> None:
        # Runs on kazoo's connection thread: never block it (on_lost callbacks may block).
        doomed: list[tuple[_Held, str]] = []
        with self._lock:
            if state == KazooState.LOST:
                self.losses += 1
                self._pending.clear()  # ephemeral nodes died with the session
            for held in self._held.values():
                effect, reason = session_effect(str(state), suspended_is_lost=held.strict)
                if effect == "lose":
                    doomed.append((held, reason))
            wakers = list(self._wakers)
        if doomed:
            threading.Thread(
                target=self._mark_lost, args=(doomed,), daemon=True, name="dsprims-zk-lost"
            ).start()
        if state == KazooState.CONNECTED:
            self._beat_now = True
            self._kick.set()
            self.sweep()
            self._retry_undeleted()
        for wake in wakers:
            wake()

    @staticmethod
    def _mark_lost(doomed: list[tuple[_Held, str]]) -> None:
        for held, reason in doomed:
            lease = held.ref()
            if lease is not None:
                lease._mark_lost(reason)

    def add_waker(self, wake: Callable[[], None]) -> None:
        with self._lock:
            self._wakers.add(wake)

    def remove_waker(self, wake: Callable[[], None]) -> None:
        with self._lock:
            self._wakers.discard(wake)

    # -- held leases and the heartbeat -------------------------------------------------------

    def track(self, held: _Held, losses_before: int) -> None:
        """Watch the lease until it is released, lost or garbage-collected.

        A lease dropped without ``release()`` frees the lock when it is collected, and a lease
        found lost frees it at once (its node is deleted): otherwise the lock would stay taken
        for as long as the client's session lives.
        """
        lease = held.ref()
        if lease is None:  # pragma: no cover - the caller holds it
            return
        key = id(held)
        client = self._client()
        parent, _, name = held.path.rpartition("/")
        owner = name.split(NODE_MARK, 1)[0]
        delay = held.cleanup_delay
        collected = weakref.finalize(lease, self._collected, key, held.path, parent, owner, delay)
        with self._lock:
            self._held[key] = held
            straddled = self.losses != losses_before
            self._start_thread()

        def stop_watching() -> None:  # on release or loss (the lease's ``_cancel_renewal``)
            collected.detach()
            self.untrack(key)
            gone = held.ref()
            if gone is not None and not gone.released:
                # Lost is final: nobody may act on this lease any more, so free the lock for
                # the next contender now (the node may outlive a local-deadline loss).
                self.discard_node(held.path, parent, owner)
            self.leave(parent, delay)  # after the node's delete was sent (or done)

        lease._renewal = stop_watching
        if straddled:
            lease._mark_lost("the ZooKeeper session expired while the lock was granted")
        elif held.strict and client is not None and client.state == KazooState.SUSPENDED:
            lease._mark_lost("the ZooKeeper connection was SUSPENDED at the grant")

    def _collected(self, key: int, path: str, parent: str, owner: str, delay: float | None) -> None:
        # A finalizer may run in any thread at any allocation, also inside one of this
        # session's ``with self._lock`` blocks (cyclic garbage collection): taking the lock here
        # could deadlock, so only queue the work (SimpleQueue.put is reentrant) for the
        # heartbeat thread, which stays alive while the lease is still tracked.
        self._collected_leases.put((key, path, parent, owner, delay))

    def _drain_collected(self) -> None:
        while not self._collected_leases.empty():
            try:
                key, path, parent, owner, delay = self._collected_leases.get_nowait()
            except queue.Empty:  # pragma: no cover - another thread drained it
                return
            self.untrack(key)
            self.discard_node(path, parent, owner)
            self.leave(parent, delay)

    def untrack(self, key: int) -> None:
        with self._lock:
            self._held.pop(key, None)

    def _start_thread(self) -> None:
        # Called with self._lock held.
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._heartbeat, daemon=True, name="dsprims-zk-heartbeat"
            )
            self._thread.start()

    def _heartbeat(self) -> None:
        next_beat = 0.0
        while True:
            self._drain_collected()
            now = time.monotonic()
            with self._lock:
                held = list(self._held.values())
                due = [parent for parent, at in self._idle.items() if at <= now]
                for parent in due:
                    del self._idle[parent]
                next_due = min(self._idle.values(), default=None)
                if not held and not due and next_due is None:
                    self._thread = None
                    return
                beat, self._beat_now = self._beat_now or now >= next_beat, False
            client = self._client()
            if client is None:
                return
            for parent in due:
                self._delete_parent(client, parent)
            if held and beat:
                self._beat(client, held)
                next_beat = now + min(item.timeout for item in held) / 3.0
            waits = [next_beat - now] if held else []
            if next_due is not None:
                waits.append(next_due - now)
            del client, held
            self._kick.wait(max(min(waits, default=0.0), 0.02))
            self._kick.clear()

    def _beat(self, client: KazooClient, held: list[_Held]) -> None:
        if client.state != KazooState.CONNECTED:
            return
        for item in held:
            lease = item.ref()
            # Reading ``lost`` fires on_lost once the local deadline has passed.
            if lease is None or lease.lost:
                continue
            sent = item.clock.monotonic()
            try:
                result = client.exists_async(item.path)
            except _DRIVER_ERRORS:
                return
            result.rawlink(lambda r, item=item, sent=sent: self._confirmed(item, sent, r))

    @staticmethod
    def _confirmed(held: _Held, sent: float, result: Any) -> None:
        try:
            stat = result.get(block=False)
        except Exception:  # unanswered: the local deadline decides
            return
        lease = held.ref()
        if lease is None or lease.released:
            return
        if stat is None:
            lease._mark_lost("the lock znode was deleted")
            return
        if lease.lost:
            return
        deadline = confirm_deadline(
            lease.deadline, sent, held.timeout, held.drift, CLOCK_DRIFT_FLOOR
        )
        if deadline is None:
            _ = lease.lost
        else:
            lease._set_deadline(deadline)

    # -- idle lock znodes ----------------------------------------------------------------------

    def enter(self, parent: str) -> bool:
        """An acquire of this client starts using the lock znode ``parent``.

        Returns whether this client deleted ``parent`` as idle since it last used it (so it is
        probably gone and the enrollment should re-create it right away).
        """
        self._drain_collected()
        with self._lock:
            self._active[parent] = self._active.get(parent, 0) + 1
            self._idle.pop(parent, None)
            return self._gone.pop(parent, False)

    def leave(self, parent: str, delay: float | None) -> None:
        """An acquire or lease of this client stops using ``parent``.

        The last one out schedules the deletion of the lock znode ``delay`` seconds later (at
        once for ``0``; never for ``None``). Call it only after the request that removed this
        user's contender node was *sent*: requests of one session run in order, so the delete
        then finds the node gone.
        """
        with self._lock:
            left = self._active.get(parent, 0) - 1
            if left > 0:
                self._active[parent] = left
                return
            self._active.pop(parent, None)
            if delay is None:
                return
            if delay > 0:
                self._idle[parent] = time.monotonic() + delay
                if self._thread is None:
                    self._start_thread()
                return
        client = self._client()
        if client is not None:
            self._delete_parent(client, parent)

    def _delete_parent(self, client: KazooClient, parent: str) -> Any:
        """Delete the lock znode if it has no children (fire and forget); the kazoo result.

        No version check: ``NotEmpty`` alone keeps every contender's node safe, and a version
        remembered from this client's last enrollment could be stale (others enrolled and left
        since), which would make the last user's delete fail and leak the znode.
        """
        try:
            result = client.delete_async(parent)
        except _DRIVER_ERRORS:
            with self._lock:
                self._undeleted.add(parent)
            return None
        result.rawlink(lambda r: self._parent_deleted(r, parent))
        return result

    def _parent_deleted(self, result: Any, parent: str) -> None:
        try:
            result.get(block=False)
        except (kexc.NotEmptyError, kexc.NoNodeError):
            deleted = False  # someone holds or waits (they delete it later), or it was gone
        except Exception:
            with self._lock:
                self._undeleted.add(parent)
            return
        else:
            deleted = True
        with self._lock:
            self._undeleted.discard(parent)
            if deleted and parent not in self._active:
                if len(self._gone) >= _GONE_HINTS:
                    del self._gone[next(iter(self._gone))]
                self._gone[parent] = True

    def _retry_undeleted(self) -> None:
        with self._lock:
            retry = [parent for parent in self._undeleted if parent not in self._active]
            self._undeleted.clear()
            for parent in retry:
                self._idle.setdefault(parent, time.monotonic())
            if retry:
                self._start_thread()

    def flush(self, parents: set[str] | None = None, timeout: float = 1.0) -> None:
        """Delete the idle lock znodes now (those in ``parents``, or all) and wait for the answers.

        Used by ``close()`` and at interpreter exit, so no lock znode outlives a short program.
        """
        client = self._client()
        if client is None or client.state != KazooState.CONNECTED:
            return  # what is pending stays pending (retried on reconnect)
        with self._lock:
            chosen = [
                parent
                for parent in (*self._idle, *self._undeleted)
                if (parents is None or parent in parents) and parent not in self._active
            ]
            for parent in chosen:
                self._idle.pop(parent, None)
                self._undeleted.discard(parent)
        if not chosen:
            return
        results = [self._delete_parent(client, parent) for parent in chosen]
        until = time.monotonic() + timeout
        for result in results:
            if result is not None:
                with contextlib.suppress(Exception):
                    result.wait(max(until - time.monotonic(), 0.0))

    def lose_all(self, reason: str) -> None:
        """Mark every lease of this client lost (before its client is closed on purpose).

        Marking comes first: each lost lease then deletes its node and leaves its lock znode,
        so no other client can be granted the lock while a lease here still looks held.
        """
        with self._lock:
            held = list(self._held.values())
        self._mark_lost([(item, reason) for item in held])

    def idle(self) -> set[str]:
        """Lock znodes waiting for their deletion (for tests and metrics)."""
        with self._lock:
            return set(self._idle) | set(self._undeleted)

    # -- janitor -----------------------------------------------------------------------------

    def abandon_create(self, result: Any, parent: str, owner: str) -> None:
        """A create was given up before its reply: delete the node whenever it turns up."""
        with self._lock:
            self._pending.add((parent, owner))

        def created(res: Any) -> None:
            try:
                value = res.get(block=False)
            except (kexc.NoNodeError, kexc.NoAuthError, kexc.NodeExistsError):
                self._forget(parent, owner)  # nothing was created
                return
            except Exception:
                return  # unknown: swept by owner id on reconnect
            path = _created_path(value)
            if path is None:
                self._forget(parent, owner)
            else:
                self.discard_node(path, parent, owner)

        result.rawlink(created)

    def discard_node(self, path: str, parent: str, owner: str) -> None:
        """Delete a contender node nobody waits for (fire and forget, swept again on failure)."""
        client = self._client()
        if client is None:
            return
        with self._lock:
            self._pending.add((parent, owner))
        try:
            result = client.delete_async(path)
        except _DRIVER_ERRORS:
            return
        result.rawlink(lambda r: self._deleted(r, parent, owner))

    def _deleted(self, result: Any, parent: str, owner: str) -> None:
        try:
            result.get(block=False)
        except kexc.NoNodeError:
            pass
        except Exception:
            return
        self._forget(parent, owner)

    def _forget(self, parent: str, owner: str) -> None:
        with self._lock:
            self._pending.discard((parent, owner))

    def sweep(self) -> None:
        """List each pending lock znode and delete the nodes of abandoned owners."""
        client = self._client()
        if client is None:
            return
        with self._lock:
            pending = list(self._pending)
        for parent, owner in pending:
            try:
                result = client.get_children_async(parent)
            except _DRIVER_ERRORS:
                return
            result.rawlink(lambda r, p=parent, o=owner: self._listed(r, p, o))

    def _listed(self, result: Any, parent: str, owner: str) -> None:
        try:
            children = result.get(block=False)
        except kexc.NoNodeError:
            self._forget(parent, owner)
            return
        except Exception:
            return
        mine = [child for child in children if owned_by(child, owner)]
        if not mine:
            self._forget(parent, owner)
        for child in mine:
            self.discard_node(f"{parent}/{child}", parent, owner)

    def pending(self) -> set[tuple[str, str]]:
        """The ``(lock znode, owner)`` pairs not yet cleaned up (for tests and metrics)."""
        with self._lock:
            return set(self._pending)


_SESSIONS: weakref.WeakKeyDictionary[KazooClient, _Session] = weakref.WeakKeyDictionary()
_SESSIONS_LOCK = threading.Lock()


def _session_for(client: KazooClient) -> _Session:
    with _SESSIONS_LOCK:
        session = _SESSIONS.get(client)
        if session is None:
            session = _Session(client)
            _SESSIONS[client] = session
        return session


@atexit.register
def _flush_at_exit() -> None:
    """Delete the idle lock znodes still waiting for their ``cleanup_delay`` (bounded wait)."""
    with _SESSIONS_LOCK:
        sessions = list(_SESSIONS.values())
    until = time.monotonic() + _EXIT_FLUSH_SECONDS
    for session in sessions:
        left = until - time.monotonic()
        if left <= 0:
            return
        with contextlib.suppress(Exception):
            session.flush(timeout=left)


def _created_path(value: Any) -> str | None:
    """The contender node created by an enrollment ``multi`` (or a plain create), if any.

    An enrollment answers ``[create parent?, create, setData]``: the contender node is the
    last path (the first one is the lock znode itself when the multi re-created it).
    """
    if isinstance(value, list):
        paths = [item for item in value if isinstance(item, str)]
        if paths and len(paths) == len(value) - 1:
            return paths[-1]
        return None
    if isinstance(value, str):
        return value
    return None


def _enrolled(results: Any) -> Enrolled:
    """Decode the ``[create parent?, create, setData]`` results of an :class:`Enroll` multi."""
    if (
        isinstance(results, list)
        and len(results) in (2, 3)
        and all(isinstance(r, str) for r in results[:-1])
        and isinstance(results[-1], ZnodeStat)
    ):
        stat = results[-1]
        # Same transaction, same zxid: the parent's mzxid is the new node's czxid.
        return Enrolled(results[-2], int(stat.mzxid), int(stat.numChildren) == 1)
    errors = (
        [r for r in results if isinstance(r, BaseException)] if isinstance(results, list) else []
    )
    if any(isinstance(err, kexc.NoNodeError) for err in errors):
        raise ParentMissing
    if (
        isinstance(results, list)
        and len(results) == 3
        and isinstance(results[0], kexc.NodeExistsError)
    ):
        raise ParentExists
    cause = next(
        (e for e in errors if not isinstance(e, kexc.RolledBackError | kexc.RuntimeInconsistency)),
        None,
    )
    if cause is not None:
        raise translate_zookeeper_error(cause) from cause
    raise BackendError(f"unexpected answer to the lock transaction: {results!r}")


# -- the shared part of both lock classes -------------------------------------------------------


class _Attempt:
    """One acquire attempt: the protocol generator plus what cleanup needs to know."""

    __slots__ = ("confirmed", "gen", "losses", "node", "owner", "parent", "session")

    def __init__(
        self, parent: str, session: _Session, *, wait: bool, parent_missing: bool = False
    ) -> None:
        self.parent = parent
        self.session = session
        self.owner = secrets.token_hex(16)
        self.gen: Generator[Action, object, Outcome] = acquire_protocol(
            parent, self.owner, wait=wait, parent_missing=parent_missing
        )
        self.node: str | None = None
        #: Lock-clock time just before the last request the server answered.
        self.confirmed = 0.0
        #: The session's LOST count when the current contender node was created.
        self.losses = session.losses

    def abandon(self) -> None:
        if self.node is not None:
            self.session.discard_node(self.node, self.parent, self.owner)
            self.node = None


class _ZooKeeperLockBase:
    """Validation, paths and request building shared by the thread and asyncio locks."""

    def __init__(
        self,
        name: str,
        *,
        backend: ZooKeeperBackend | str,
        prefix: str = DEFAULT_PREFIX,
        session_timeout: float | None = None,
        suspended_is_lost: bool = False,
        on_lost: OnLost | None = None,
        clock: Clock = SYSTEM_CLOCK,
        clock_drift: float = 0.01,
        cleanup_delay: float | None = DEFAULT_CLEANUP_DELAY,
    ) -> None:
        self.name = check_name(name, "name")
        if session_timeout is not None:
            check_ttl(session_timeout, "session_timeout")
        if not isinstance(suspended_is_lost, bool):
            raise TypeError("suspended_is_lost must be a bool")
        if on_lost is not None and not callable(on_lost):
            raise TypeError("on_lost must be callable or None")
        drift = check_timeout(clock_drift, "clock_drift")
        if drift is None or drift >= 0.5:
            raise ConfigurationError(f"clock_drift must be in [0, 0.5), got {clock_drift!r}")
        self.cleanup_delay = _check_cleanup_delay(cleanup_delay)
        # Everything is validated before a client is made from a URL, so a bad argument leaks
        # no connection.
        self._backend, self._owns_backend = _resolve(backend)
        self._closed = False
        try:
            self._parent = self._backend.path(prefix, name)
        except BaseException:
            if self._owns_backend:
                self._backend.close()
            raise
        self.prefix = prefix
        self.session_timeout: float
        requested = float(self._backend.client._session_timeout) / 1000.0
        if session_timeout is None:
            self.session_timeout = requested
        else:
            self.session_timeout = min(float(session_timeout), requested)
        self.suspended_is_lost = suspended_is_lost
        self.on_lost = on_lost
        self.clock = clock
        self.clock_drift = drift
        self._session = _session_for(self._backend.client)

    @property
    def backend(self) -> ZooKeeperBackend:
        """The backend this lock runs on."""
        return self._backend

    @property
    def owns_backend(self) -> bool:
        """Whether this lock made its backend from a URL (then :meth:`close` closes it)."""
        return self._owns_backend

    def close(self) -> None:
        """Delete this lock's znode if it is idle, and close the client if this lock made it.

        A backend made from a URL by this lock is stopped and closed: its session ends, so
        leases still held through it become lost (their nodes go with the session) and later
        acquires raise :class:`~dsprims.BackendUnavailable`. A backend that was passed in is
        never closed (its owner closes it). The lock znode, if no one uses it, is deleted now
        instead of after ``cleanup_delay``. Calling ``close()`` again does nothing.
        """
        if self._closed:
            return
        self._closed = True
        if self._owns_backend:
            self._session.lose_all("the lock was closed (close() ends its ZooKeeper session)")
            self._session.flush(None, timeout=self._backend.timeout)
            self._backend.close()
        else:
            self._session.flush({self._parent}, timeout=self._backend.timeout)

    @property
    def path(self) -> str:
        """The lock znode; contender nodes are its children."""
        return self._parent

    @property
    def session_state(self) -> str:
        """The client's session state: ``"CONNECTED"``, ``"SUSPENDED"`` or ``"LOST"``.

        While ``"SUSPENDED"`` the leases of this client are at risk: still valid until their
        local deadline (see the module docstring), but unconfirmed.
        """
        return str(self._backend.client.state)

    def _reconnect_budget(self, wait: bool, deadline: float | None) -> float:
        """Seconds a waiting acquire may wait for the client to reconnect (0: do not wait).

        A waiting acquire rides out a connection blip (and a session expiry, after which it
        enrolls again) for up to the backend timeout instead of failing at its next request.
        """
        if not wait or self._backend.client.state == KazooState.CONNECTED:
            return 0.0
        budget = self._backend.timeout
        if deadline is not None:
            budget = min(budget, deadline - self.clock.monotonic())
        return max(budget, 0.0)

    def _may_retry(self, wait: bool, tries: int, deadline: float | None) -> bool:
        """Whether a waiting acquire re-sends a request that failed with the connection.

        Reads (listing, watching) are idempotent; an enrollment is not (its node may exist),
        so the caller leaves that node to the janitor and enrolls under a new owner id.
        """
        if not wait or tries >= _READ_RETRIES:
            return False
        return deadline is None or self.clock.monotonic() < deadline

    def _deadline(self, timeout: object) -> float | None:
        limit = check_timeout(timeout)
        return None if limit is None else self.clock.monotonic() + limit

    # The sync and async acquire loops differ only in how they wait; what they do with each
    # step, failure and reply lives in the three methods below, once.

    @staticmethod
    def _next_action(
        attempt: _Attempt, result: object, error: BaseException | None
    ) -> Action | Outcome:
        """Advance the pure acquire protocol: its next action, or its final outcome."""
        try:
            return attempt.gen.throw(error) if error else attempt.gen.send(result)
        except StopIteration as stop:
            outcome: Outcome = stop.value
            return outcome

    def _before_send(self, attempt: _Attempt, action: Action) -> float:
        """Note what a request needs before it is sent; return its send time."""
        if isinstance(action, Enroll):
            attempt.losses = self._session.losses
        return self.clock.monotonic()

    def _request_failed(
        self,
        attempt: _Attempt,
        action: Action,
        request: Any,
        exc: BaseException,
        *,
        wait: bool,
        tries: int,
        deadline: float | None,
    ) -> tuple[_Attempt, Action]:
        """Clean up after a request that failed; return what to send next, or re-raise ``exc``.

        An enrollment whose create was sent may still land: its node is handed to the janitor
        (by owner id), and a retried acquire enrolls afresh under a new owner id.
        """
        if request is not None and isinstance(action, Enroll):
            self._session.abandon_create(request, attempt.parent, attempt.owner)
        if not isinstance(exc, BackendUnavailable) or not self._may_retry(wait, tries, deadline):
            raise exc
        if isinstance(action, Enroll):
            attempt = _Attempt(self._parent, self._session, wait=wait)
            action = next(attempt.gen)
        return attempt, action

    @staticmethod
    def _reply(
        attempt: _Attempt, sent: float, raw: Any, decode: Callable[[Any], object]
    ) -> tuple[object, BaseException | None]:
        """Decode a reply into the protocol's next input: ``(result, error)``."""
        attempt.confirmed = sent
        try:
            result = decode(raw)
        except (ParentMissing, ParentExists) as exc:
            return None, exc
        if isinstance(result, Enrolled):
            attempt.node = result.path
        return result, None

    def _start(
        self, attempt: _Attempt, action: Action, arm: Callable[[], Callable[[Any], None]]
    ) -> tuple[Any, Callable[[Any], object]]:
        """Send the request for ``action``; return its kazoo result and a decoder."""
        backend = self._backend
        client = backend.client
        backend.check_connected()
        try:
            if isinstance(action, Enroll):
                tx = client.transaction()
                if action.create_parent:
                    tx.create(action.parent, b"", acl=backend.acl)
                tx.create(
                    f"{action.parent}/{action.prefix}",
                    b"",
                    acl=backend.acl,
                    ephemeral=True,
                    sequence=True,
                )
                tx.set_data(action.parent, b"")
                return tx.commit_async(), _enrolled
            if isinstance(action, MakeParent):
                return client.ensure_path_async(action.parent, acl=backend.acl), _none
            if isinstance(action, ListContenders):
                ended = self._session.losses != attempt.losses
                return client.get_children_async(action.parent), lambda kids: Listing(
                    list(kids), stale=ended
                )
            if isinstance(action, WatchPredecessor):
                return client.exists_async(action.path, watch=arm()), _exists
        except _DRIVER_ERRORS as exc:
            raise translate_zookeeper_error(exc) from exc
        raise AssertionError(f"no request for {action!r}")  # pragma: no cover

    def _granted_args(self, attempt: _Attempt, outcome: Granted) -> dict[str, Any]:
        return {
            "owner": outcome.path,
            "clock": self.clock,
            "ttl": self.session_timeout,
            "start": attempt.confirmed,
            "clock_drift": self.clock_drift,
            "on_lost": self.on_lost,
        }

    def _track(self, lease: LeaseBase, losses_before: int) -> None:
        held = _Held(
            lease,
            lease.owner,
            self.clock,
            self.session_timeout,
            self.suspended_is_lost,
            self.clock_drift,
            self.cleanup_delay,
        )
        self._session.track(held, losses_before)

    def _not_acquired(self, timeout: object) -> LockNotAcquired:
        return LockNotAcquired(f"lock {self.name!r} not acquired within {timeout!r} s")

    def pending_cleanups(self) -> int:
        """How many abandoned contender nodes of this client still await deletion."""
        return len(self._session.pending())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, path={self._parent!r})"


def _none(_: Any) -> None:
    return None


def _vanished(action: Action, exc: BaseException) -> Any:
    """The raw reply for a request that found its znode missing (``NoNode``).

    Only a listing can meet it: the lock znode was deleted as idle after this contender's own
    node had gone (its session ended), so the listing is empty and the protocol enrolls again.
    """
    if isinstance(action, ListContenders):
        return []
    raise translate_zookeeper_error(exc) from exc


def _exists(stat: Any) -> bool:
    return stat is not None


def _lost_node(lease: LeaseBase) -> Exception:
    from dsprims.errors import LockLost

    return LockLost(
        f"lock {lease.name!r} (token {lease.token}) lost: its znode is gone "
        "(the session expired or the node was deleted)"
    )


class _Timeout(Exception):
    pass


class ZooKeeperLock(_ZooKeeperLockBase):
    """A distributed lock on ZooKeeper with fencing tokens (see the module docstring).

    Args:
        name: the lock name (any non-empty string; it is encoded into one znode name).
        backend: a :class:`~dsprims.ZooKeeperBackend`, a started ``KazooClient`` (stays
            yours to stop) or a ``zookeeper://`` URL.
        prefix: the top znode of dsprims data (default ``"dsprims"``).
        session_timeout: seconds used for the local lease deadline; defaults to the client's
            session timeout (pass the negotiated value if the server lowers it).
        suspended_is_lost: mark leases lost as soon as the connection is SUSPENDED instead of at
            their local deadline.
        on_lost: ``on_lost(lease)`` called once when a lease is found lost.
        clock: the monotonic clock for lease deadlines and acquire timeouts.
        clock_drift: fraction of the session timeout subtracted from every deadline.
        cleanup_delay: seconds the lock znode may stay unused by this client before the client
            deletes it (default 1.0; ``0``: right after the release; ``None``: keep it). The
            delete succeeds only when no one holds or waits; see the module docstring.

    A lock made from a URL owns its client: call :meth:`close` (or use
    ``contextlib.closing(lock)``) when done. ``with lock as lease:`` acquires and releases.

    Raises:
        ConfigurationError: bad parameters (empty name, non-ZooKeeper backend, bad timeout,
            negative or non-finite ``cleanup_delay``).
    """

    def acquire(self, timeout: float | None = None) -> Lease:
        """Wait until the lock is granted (FIFO) and return the lease.

        Args:
            timeout: seconds to wait for other holders (``None``: forever; ``0``: one try).
                Each request is also bounded by the backend's timeout.

        Raises:
            LockNotAcquired: ``timeout`` passed; the contender node was removed.
            BackendUnavailable: ZooKeeper did not answer in time.
            ConfigurationError: ``timeout`` is negative or NaN.
        """
        lease = self._run(wait=True, timeout=timeout)
        if lease is None:  # pragma: no cover - the waiting protocol never returns Busy
            raise self._not_acquired(timeout)
        return lease

    def try_acquire(self) -> Lease | None:
        """Take the lock if it is free right now (no waiting); ``None`` if it is held."""
        return self._run(wait=False, timeout=None)

    def _run(self, *, wait: bool, timeout: object) -> Lease | None:
        deadline = self._deadline(timeout)
        missing = self._session.enter(self._parent)
        try:
            lease = self._attempt(wait, deadline, timeout, missing)
        except BaseException:
            self._session.leave(self._parent, self.cleanup_delay)
            raise
        if lease is None:
            self._session.leave(self._parent, self.cleanup_delay)
        return lease  # the lease leaves when it is released, lost or collected

    def _attempt(
        self, wait: bool, deadline: float | None, timeout: object, missing: bool
    ) -> Lease | None:
        backend = self._backend
        attempt = _Attempt(self._parent, self._session, wait=wait, parent_missing=missing)
        wake = threading.Event()
        self._session.add_waker(wake.set)

        def arm() -> Callable[[Any], None]:
            wake.clear()
            return lambda _event: wake.set()

        try:
            result: object = None
            error: BaseException | None = None
            while True:
                step = self._next_action(attempt, result, error)
                if isinstance(step, Outcome):
                    outcome = step
                    break
                action, result, error = step, None, None
                if isinstance(action, AwaitChange):
                    if self._session.losses != attempt.losses:
                        continue  # the session ended (its wake-up may predate the watch)
                    remaining = None if deadline is None else deadline - self.clock.monotonic()
                    if remaining is not None and (remaining <= 0 or not wake.wait(remaining)):
                        raise _Timeout
                    if remaining is None:
                        wake.wait()
                    continue
                for tries in range(_READ_RETRIES + 1):
                    budget = self._reconnect_budget(wait, deadline)
                    if budget > 0:
                        until = time.monotonic() + budget
                        while (
                            backend.client.state != KazooState.CONNECTED
                            and time.monotonic() < until
                        ):
                            wake.clear()
                            wake.wait(until - time.monotonic())
                    sent = self._before_send(attempt, action)
                    request = None
                    try:
                        request, decode = self._start(attempt, action, arm)
                        raw = backend.wait(request, expected=(kexc.NoNodeError,))
                        break
                    except kexc.NoNodeError as exc:
                        raw = _vanished(action, exc)
                        break
                    except BaseException as exc:
                        attempt, action = self._request_failed(
                            attempt, action, request, exc, wait=wait, tries=tries, deadline=deadline
                        )
                result, error = self._reply(attempt, sent, raw, decode)
        except _Timeout:
            with contextlib.suppress(Exception):  # on failure the janitor takes over
                self._delete_now(attempt)
            raise self._not_acquired(timeout) from None
        except ContenderVanished as exc:
            attempt.abandon()
            raise BackendError(str(exc)) from exc
        except BaseException:
            attempt.abandon()
            raise
        finally:
            self._session.remove_waker(wake.set)
        if isinstance(outcome, Busy):
            self._delete_now(attempt)
            return None
        lease = Lease(self.name, outcome.token, driver=self, **self._granted_args(attempt, outcome))
        self._track(lease, attempt.losses)
        return lease

    def _delete_now(self, attempt: _Attempt) -> None:
        node, attempt.node = attempt.node, None
        if node is None:
            return
        try:
            self._backend.request("delete", node, expected=(kexc.NoNodeError,))
        except kexc.NoNodeError:
            pass
        except Exception:
            self._session.discard_node(node, attempt.parent, attempt.owner)
            raise

    # -- LeaseDriver ---------------------------------------------------------------------------

    def release_lease(self, lease: Lease) -> None:
        """Delete the contender node (LeaseDriver hook; call ``lease.release()`` instead)."""
        try:
            self._backend.request("delete", lease.owner, expected=(kexc.NoNodeError,))
        except kexc.NoNodeError:
            raise _lost_node(lease) from None

    def extend_lease(self, lease: Lease, ttl: float | None) -> float | None:
        """Confirm the session and the node (LeaseDriver hook; ZooKeeper leases have no TTL)."""
        if self._backend.request("exists", lease.owner) is None:
            raise _lost_node(lease)
        return self.session_timeout

    # -- context manager -----------------------------------------------------------------------

    def __enter__(self) -> Lease:
        return _push_held(self, self.acquire())

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _pop_held(self, Lease).__exit__(exc_type, exc, tb)


class AsyncZooKeeperLock(_ZooKeeperLockBase):
    """The asyncio twin of :class:`ZooKeeperLock` (same arguments).

    ``acquire`` is cancellation-safe: cancelling it (``asyncio.wait_for``, a task cancel) at any
    point removes its contender node, also when the ``create`` reply is still in flight.
    A lock made from a URL owns its client: ``await lock.aclose()`` when done.
    """

    async def aclose(self) -> None:
        """:meth:`close` without blocking the event loop (stopping a kazoo client blocks)."""
        await asyncio.to_thread(self.close)

    async def acquire(self, timeout: float | None = None) -> AsyncLease:  # noqa: ASYNC109
        """See :meth:`ZooKeeperLock.acquire`."""
        lease = await self._run(wait=True, timeout=timeout)
        if lease is None:  # pragma: no cover - the waiting protocol never returns Busy
            raise self._not_acquired(timeout)
        return lease

    async def try_acquire(self) -> AsyncLease | None:
        """See :meth:`ZooKeeperLock.try_acquire`."""
        return await self._run(wait=False, timeout=None)

    async def _await(self, request: Any, expected: tuple[type[BaseException], ...] = ()) -> Any:
        """Wait for a kazoo result from asyncio, bounded by the backend timeout.

        Exceptions listed in ``expected`` propagate unchanged; others are translated.
        """
        future = _bridge(request, asyncio.get_running_loop())
        try:
            async with asyncio.timeout(self._backend.timeout):
                return await future
        except expected:
            raise
        except TimeoutError as exc:
            raise translate_zookeeper_error(exc) from exc
        except _DRIVER_ERRORS as exc:
            raise translate_zookeeper_error(exc) from exc

    async def _run(self, *, wait: bool, timeout: object) -> AsyncLease | None:  # noqa: ASYNC109
        deadline = self._deadline(timeout)
        missing = self._session.enter(self._parent)
        try:
            lease = await self._attempt(wait, deadline, timeout, missing)
        except BaseException:  # also a cancellation
            self._session.leave(self._parent, self.cleanup_delay)
            raise
        if lease is None:
            self._session.leave(self._parent, self.cleanup_delay)
        return lease  # the lease leaves when it is released, lost or collected

    async def _attempt(
        self,
        wait: bool,
        deadline: float | None,
        timeout: object,  # noqa: ASYNC109
        missing: bool,
    ) -> AsyncLease | None:
        loop = asyncio.get_running_loop()
        attempt = _Attempt(self._parent, self._session, wait=wait, parent_missing=missing)
        wake = asyncio.Event()

        def wake_threadsafe() -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(wake.set)

        def arm() -> Callable[[Any], None]:
            wake.clear()
            return lambda _event: wake_threadsafe()

        self._session.add_waker(wake_threadsafe)
        try:
            result: object = None
            error: BaseException | None = None
            while True:
                step = self._next_action(attempt, result, error)
                if isinstance(step, Outcome):
                    outcome = step
                    break
                action, result, error = step, None, None
                if isinstance(action, AwaitChange):
                    if self._session.losses != attempt.losses:
                        continue  # the session ended (its wake-up may predate the watch)
                    remaining = None if deadline is None else deadline - self.clock.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise _Timeout
                    try:
                        async with asyncio.timeout(remaining):
                            await wake.wait()
                    except TimeoutError:
                        raise _Timeout from None
                    continue
                for tries in range(_READ_RETRIES + 1):
                    budget = self._reconnect_budget(wait, deadline)
                    if budget > 0:
                        until = time.monotonic() + budget
                        while (
                            self._backend.client.state != KazooState.CONNECTED
                            and time.monotonic() < until
                        ):
                            wake.clear()
                            with contextlib.suppress(TimeoutError):
                                async with asyncio.timeout(until - time.monotonic()):
                                    await wake.wait()
                    sent = self._before_send(attempt, action)
                    request = None
                    try:
                        request, decode = self._start(attempt, action, arm)
                        raw = await self._await(request, expected=(kexc.NoNodeError,))
                        break
                    except kexc.NoNodeError as exc:
                        raw = _vanished(action, exc)
                        break
                    except BaseException as exc:
                        attempt, action = self._request_failed(
                            attempt, action, request, exc, wait=wait, tries=tries, deadline=deadline
                        )
                result, error = self._reply(attempt, sent, raw, decode)
        except _Timeout:
            with contextlib.suppress(Exception):  # on failure the janitor takes over
                await self._delete_now(attempt)
            raise self._not_acquired(timeout) from None
        except ContenderVanished as exc:
            attempt.abandon()
            raise BackendError(str(exc)) from exc
        except BaseException:
            attempt.abandon()  # also on CancelledError: fire and forget, nothing to await
            raise
        finally:
            self._session.remove_waker(wake_threadsafe)
        if isinstance(outcome, Busy):
            await self._delete_now(attempt)
            return None
        lease = AsyncLease(
            self.name, outcome.token, driver=self, **self._granted_args(attempt, outcome)
        )
        self._track(lease, attempt.losses)
        return lease

    async def _delete_now(self, attempt: _Attempt) -> None:
        node = attempt.node
        if node is None:
            return
        try:
            self._backend.check_connected()
            await self._await(self._backend.client.delete_async(node), expected=(kexc.NoNodeError,))
        except kexc.NoNodeError:
            pass
        except BaseException:
            attempt.abandon()
            raise
        attempt.node = None

    # -- AsyncLeaseDriver ----------------------------------------------------------------------

    async def release_lease(self, lease: AsyncLease) -> None:
        """Delete the contender node (driver hook; call ``await lease.release()`` instead)."""
        self._backend.check_connected()
        try:
            await self._await(
                self._backend.client.delete_async(lease.owner), expected=(kexc.NoNodeError,)
            )
        except kexc.NoNodeError:
            raise _lost_node(lease) from None

    async def extend_lease(self, lease: AsyncLease, ttl: float | None) -> float | None:
        """Confirm the session and the node (driver hook; ZooKeeper leases have no TTL)."""
        self._backend.check_connected()
        if await self._await(self._backend.client.exists_async(lease.owner)) is None:
            raise _lost_node(lease)
        return self.session_timeout

    # -- context manager -----------------------------------------------------------------------

    async def __aenter__(self) -> AsyncLease:
        return _push_held(self, await self.acquire())

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await _pop_held(self, AsyncLease).__aexit__(exc_type, exc, tb)


def _bridge(request: Any, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
    """An asyncio future settled from a kazoo ``IAsyncResult`` (completed on kazoo's thread)."""
    future: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def done(result: Any) -> None:
        try:
            value, error = result.get(block=False), None
        except BaseException as exc:
            value, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(settle, value, error)

    request.rawlink(done)
    return future
