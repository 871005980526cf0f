"""Presence markers: how a candidate tells "the candidate ahead of me left" from "its znode
was deleted under it while it may still lead" (`lease` 6.).

Protocol:

1. Every candidate creates, in one transaction with its candidate znode, an ephemeral
   marker `<election>.alive/<attempt>` (`<attempt>` is the 32 hex digits of its znode's
   name). The marker holds the owner's negotiated session timeout. Marker and znode share
   one czxid.
2. A candidate that leaves (stop, step-down, leave) demotes, waits until its files say so,
   then deletes its marker and its znode in one transaction, the marker first. A session
   expiry deletes both in the closeSession's one transaction.
3. So a marker whose znode is gone means the znode was deleted by another client while
   its owner's session lives. The owner sees its znode go, demotes, waits until its files
   say so, and only then deletes the marker (the next volunteer's batch carries that
   delete): the marker's deletion is the owner's word that its lease is over.
4. A candidate about to lead first looks at the markers of candidates created before it
   (czxid below its own: a candidate created after it sorts behind it and cannot have led
   while it lives). For each such marker without a znode (an orphan) it holds back until
   the marker goes or until `lease.release_wait` of the owner's timeout after it saw the
   orphan, whichever comes first (`lease` 6.).
5. The heir leads with no round trip, so it watches its predecessor's marker beforehand:
   when the predecessor's znode goes, it already knows whether the marker went first (it
   left) or not. Not: it holds back as in 4. A session expiry deletes both in one
   transaction in any order, so the marker's deletion follows within the same batch of
   notifications, and the heir leads then.

Guaranteed: a candidate never leads while a candidate ahead of it whose znode was deleted
by hand may still hold a lease (under `lease`'s clock assumptions). Not guaranteed: a
candidate of a version without markers (a rolling upgrade) is not protected: its heir
leads at once, as before; a marker deleted by hand together with its znode (a recursive
delete of the election's parent) is indistinguishable from a session expiry.

Not thread-safe: the election's worker thread is its only caller.
"""

from __future__ import annotations

import json
import logging
import time

from ..zk import NoNode, ZkSession
from . import lease
from .candidacy import CANDIDATE_RE

log = logging.getLogger(__name__)

MARKERS_SUFFIX = ".alive"
MAX_MARKER_BYTES = 256


def markers_path(election_path: str) -> str:
    return f"{election_path}{MARKERS_SUFFIX}"


def marker_data(session_timeout: float) -> bytes:
    return json.dumps({"session_timeout": session_timeout}, separators=(",", ":")).encode()


def marker_timeout(data: bytes, fallback: float) -> float:
    """The owner's session timeout from its marker; `fallback` (ours, or longer) for data
    that is not a marker's."""
    if len(data) > MAX_MARKER_BYTES:
        return fallback
    try:
        value = json.loads(data.decode("utf-8"))["session_timeout"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return fallback
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 600:
        return fallback
    return max(float(value), fallback)


def attempt_of(candidate_name: str) -> str | None:
    match = CANDIDATE_RE.match(candidate_name)
    return match.group(1) if match else None


class Presence:
    """The markers as one candidate reads them: its predecessor's (5.) and the orphans it
    holds back for (4.)."""

    def __init__(self, zk: ZkSession, election_path: str) -> None:
        self.zk = zk
        self.path = markers_path(election_path)
        self.predecessor: str | None = None  # the predecessor's marker, watched (5.)
        self.predecessor_released = True  # its marker went (or it has none)
        self.predecessor_gone = False  # its znode went first: held back for its marker
        self._timeouts: dict[str, float] = {}  # marker -> its owner's session timeout
        self._holds: dict[str, float] = {}  # orphan marker -> monotonic end of the hold
        # Markers no lease can rest on any more: held back for in full, or of no session.
        # (A marker found behind us is not kept here: after we volunteer again, it is ahead.)
        self._cleared: set[str] = set()

    def marker(self, attempt: str) -> str:
        return f"{self.path}/{attempt}"

    # -- the heir (5.) -----------------------------------------------------------------

    def watch_predecessor(self, predecessor_name: str) -> None:
        """Arm a watch on the predecessor's marker, and note whether it has one."""
        attempt = attempt_of(predecessor_name)
        marker = None if attempt is None else self.marker(attempt)
        self.predecessor = marker
        self.predecessor_gone = False
        found = None if marker is None else self.zk.get_watched(marker)
        self.predecessor_released = found is None
        if found is not None and marker is not None:
            self._timeouts[marker] = marker_timeout(found[0], self.zk.call_timeout)

    def predecessor_left(self) -> bool:
        """The predecessor's znode is gone. True if its marker went before it (it left, or
        its session ended); else the hold of 4. starts now."""
        marker = self.predecessor
        if self.predecessor_released or marker is None or marker in self._cleared:
            return True
        self.predecessor_gone = True
        if marker not in self._holds:
            self._hold(marker)
        return False

    # -- every candidate about to lead (4.) --------------------------------------------

    def orphans_ahead(
        self, candidates: list[str], own_czxid: int, markers: list[str] | None = None
    ) -> bool:
        """True if a candidate created before us lost its znode while its marker stays:
        hold back (`hold_end` says until when). `candidates`: the candidates of the
        election's listing, as the roster counts them (one it found deleted since is not
        one); `markers`: the markers' listing served after it (listed here if None). A candidate
        created in between then shows as a marker without a znode, but with a czxid above
        ours."""
        if markers is None:
            try:
                markers = self.zk.children(self.path)
            except NoNode:
                return self.holding()  # an election of a version without markers
        present = {attempt_of(name) for name in candidates}
        for name in markers:
            marker = self.marker(name)
            if name in present or marker in self._cleared or marker in self._holds:
                continue
            self._judge(marker, own_czxid)
        return self.holding()

    def _judge(self, marker: str, own_czxid: int) -> None:
        found = self.zk.get_watched(marker)
        if found is None:
            return  # gone meanwhile: released
        data, stat = found
        if stat.ephemeral_owner == 0:
            self._cleared.add(marker)  # no session's (made by hand)
            return
        if stat.czxid >= own_czxid:
            return  # created after us: it cannot have led while we are here
        self._timeouts[marker] = marker_timeout(data, self.zk.call_timeout)
        self._hold(marker)

    def _hold(self, marker: str) -> None:
        wait = lease.release_wait(self._timeouts.get(marker, self.zk.call_timeout))
        self._holds[marker] = time.monotonic() + wait
        log.warning("the znode of the candidate of marker %s was deleted while its session "
                    "lives (by hand?): it may still lead; holding back until it releases, at "
                    "most %.2fs", marker, wait)

    def holding(self) -> bool:
        """Some hold is still on; holds that ran their full time are cleared for good."""
        now = time.monotonic()
        for marker, end in list(self._holds.items()):
            if now >= end:
                log.warning("no release from marker %s in time; its owner's lease is over",
                            marker)
                del self._holds[marker]
                self._cleared.add(marker)
        return bool(self._holds)

    def hold_end(self) -> float | None:
        return min(self._holds.values()) if self._holds else None

    def released(self, marker: str) -> bool:
        """A marker's DELETED arrived. True if it lifts a hold: the caller looks again
        whether it may lead. (The predecessor's marker going first, as it does when the
        predecessor leaves, only notes that: its znode's deletion follows at once.)"""
        lifted = self._holds.pop(marker, None) is not None
        self._timeouts.pop(marker, None)
        if marker == self.predecessor:
            self.predecessor_released = True
        return lifted

    def watches(self, path: str) -> bool:
        return path.startswith(self.path + "/")

    def forget_predecessor(self) -> None:
        self.predecessor = None
        self.predecessor_released = True
        self.predecessor_gone = False
