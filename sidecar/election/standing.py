"""Where one candidate stands in the election, as its worker thread last learned it.

The election, its leader's side (`leader`) and its follower's side (`follower`) share this
one record, so that each fact has one home: whether it leads and until when, whom it
watches, whether it is the heir, and who leads as far as it knows.

Guaranteed: nothing by itself. It is the worker's memo between steps; the verdicts that
count go to the status board, stamped with a connection token (`core`). Not thread-safe:
the worker thread is its only user.
"""

from __future__ import annotations


class Standing:
    def __init__(self) -> None:
        self.leading = False
        self.lease_deadline = 0.0  # monotonic; the lease's end while leading
        self.predecessor: str | None = None  # the znode watched (step 5)
        self.heir = False  # the predecessor leads: keep an anchor, lead at once
        self.watch_armed = False  # predecessor and own watches set on this connection
        self.left = False  # out of the election until a rejoin
        self.last_leader: tuple[str, str, int] | None = None  # (node, identity, epoch)

    def no_predecessor(self) -> None:
        self.predecessor = None
        self.heir = False
