"""The election's one worker thread: the queue of events it handles, and when it ticks.

kazoo's listener and watches, and the control calls of other threads, only put an `Event`
on the queue; every protocol step runs on this thread, one at a time, in the handler the
election gives it. With nothing queued the worker ticks (the handler gets None) at
`next_tick`, or at `wake_at()` (the end of the lease while it leads, of a hold while it
holds back), whichever comes first.

A failed step never stops the worker: a ZooKeeper error is logged and retried after
`ERROR_BACKOFF`; NoAuth, and an election node open to others (`guard`), which only a
person can fix, are logged once and retried every `REFUSED_BACKOFF` until the next verdict
(`granted`), the open node with the delay doubling up to `REFUSED_BACKOFF_MAX` (each of
its checks costs several requests); anything else is logged with its traceback and retried
like a ZooKeeper error.

Guaranteed: events are handled in the order they were queued, and `stop` is
cancel-and-wait (queued STOP, then join). Not guaranteed: that `stop` or `leave` returns
only once the worker is done: both give up after their timeout (a step may be blocked in a
request); the thread is a daemon and dies with the process.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
import time
from collections.abc import Callable

from ..state import Record
from ..zk import NotAuthorized, SessionEvent, WatchKind, ZkError
from .guard import OpenAcl

log = logging.getLogger(__name__)

ERROR_BACKOFF = 0.2
REFUSED_BACKOFF = 1.0  # NoAuth: only a change of an ACL or of --zk-auth helps
REFUSED_BACKOFF_MAX = 8.0


class Kind(enum.Enum):
    SESSION = "session"
    WATCH = "watch"
    STEP_DOWN = "step-down"
    LEAVE = "leave"
    REJOIN = "rejoin"
    STOP = "stop"


class Event(Record):
    __slots__ = ("done", "kind", "path", "session", "watch")

    def __init__(
        self,
        kind: Kind,
        session: SessionEvent | None = None,
        path: str = "",
        watch: WatchKind | None = None,
        done: threading.Event | None = None,
    ) -> None:
        self.kind = kind
        self.session = session
        self.path = path
        self.watch = watch
        self.done = done


class Worker:
    """The thread and its queue. `handle(None)` is a tick; `wake_at()` is the monotonic
    instant it must wake at anyway (a lease's or a hold's end), or None. `put`, `leave` and `stop`
    from any thread; `next_tick` and `granted` from the worker thread only."""

    def __init__(
        self,
        handle: Callable[[Event | None], None],
        wake_at: Callable[[], float | None],
        path: str,
    ) -> None:
        self._handle = handle
        self._wake_at = wake_at
        self._path = path  # the election's, for the log
        self._events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="election", daemon=True)
        self.next_tick = 0.0  # monotonic instant of the next tick
        self._refused = False  # ZooKeeper answered NoAuth; logged once until a verdict
        self._refused_delay = REFUSED_BACKOFF  # the next retry's, doubling
        # Told the one line of a refusal, once per refusal (the runner posts it as a
        # Kubernetes Event); it must return at once.
        self.on_refused: Callable[[str], None] = lambda _: None

    # -- any thread ----------------------------------------------------------------------

    def put(self, event: Event) -> None:
        self._events.put(event)

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def leave(self, timeout: float) -> bool:
        """Queue a LEAVE and wait until it was handled. True once done in time."""
        if not self._thread.is_alive():
            return True  # never started, or stopped: nothing of ours in the election
        done = threading.Event()
        self._events.put(Event(Kind.LEAVE, done=done))
        return done.wait(timeout)

    def stop(self, timeout: float) -> None:
        """Cancel-and-wait: STOP goes behind the events already queued."""
        self._events.put(Event(Kind.STOP))
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- the worker thread ---------------------------------------------------------------

    def granted(self) -> None:
        """A verdict was reached: whatever ZooKeeper refused before, it grants now."""
        self._refused_delay = REFUSED_BACKOFF
        if self._refused:
            self._refused = False
            log.info("ZooKeeper grants access to %s again", self._path)

    def _run(self) -> None:
        while True:
            try:
                event = self._events.get(timeout=self._wait_time())
            except queue.Empty:
                event = None
            if event is not None and event.kind is Kind.STOP:
                return
            try:
                self._handle(event)
            except ZkError as error:
                self._on_error(error)
            except Exception:  # the worker must survive anything and try again
                log.exception("election step failed; retrying")
                self.next_tick = time.monotonic() + ERROR_BACKOFF
            finally:
                if event is not None and event.done is not None and event.kind is Kind.LEAVE:
                    event.done.set()

    def _wait_time(self) -> float:
        deadline = self.next_tick
        wake = self._wake_at()
        if wake is not None:
            deadline = min(deadline, wake)
        return max(0.0, deadline - time.monotonic())

    def _on_error(self, error: ZkError) -> None:
        if isinstance(error, NotAuthorized):
            # Retrying cannot help until someone changes an ACL: one line, slower retries.
            delay = REFUSED_BACKOFF
            if isinstance(error, OpenAcl):
                delay, self._refused_delay = self._refused_delay, min(
                    2 * self._refused_delay, REFUSED_BACKOFF_MAX)
            if not self._refused:
                if isinstance(error, OpenAcl):
                    line = (f"{error}; retrying after {REFUSED_BACKOFF:g}s, then less often "
                            f"(every {REFUSED_BACKOFF_MAX:g}s at most)")
                else:
                    line = (f"ZooKeeper refused access to {self._path}: {error} (check "
                            "--zk-auth and the ACL of the election's znodes); retrying every "
                            f"{REFUSED_BACKOFF:g}s")
                log.error("%s", line)
                try:
                    self.on_refused(line)
                except Exception:  # telling it must not stop the worker
                    log.debug("reporting the refusal failed", exc_info=True)
            self._refused = True
            self.next_tick = time.monotonic() + delay
            return
        log.info("ZooKeeper request failed: %s; retrying", error)
        self.next_tick = time.monotonic() + ERROR_BACKOFF
