"""Step 2 of the election: the candidates among the election's children, in election order.

Children that are no candidate (put there by hand or by another program) are logged once
and ignored. So is a znode with a candidate's name that belongs to no session (a ghost:
persistent, made by hand): no candidate ever leads through it, and it would block the
election for good. The first candidate of a listing is checked once for that (one `stat`
per new first candidate); a predecessor is checked by the follower's own `stat`
(`follower`), which reports it here.

Guaranteed: the own znode is never taken for a ghost, and a ghost deleted by hand is
forgotten at the next listing. Not guaranteed: that a ghost is left out before it is first
or a predecessor: only then is it looked at (anywhere else it blocks no one).

Not thread-safe: the election's worker thread is its only caller.
"""

from __future__ import annotations

import logging

from ..zk import ZkSession
from .candidacy import Candidacy, Candidate, parse_candidates

log = logging.getLogger(__name__)


class Roster:
    def __init__(self, zk: ZkSession, election_path: str, candidacy: Candidacy) -> None:
        self.zk = zk
        self.path = election_path
        self.candidacy = candidacy
        self._ghosts: set[str] = set()  # candidates' names on znodes of no session
        self._checked_first: str | None = None  # the last first candidate seen ephemeral
        self._foreign: set[str] = set()  # children that are no candidate, already logged

    def candidate_names(self, children: list[str]) -> list[str]:
        """The candidates among `children`, in election order, ghosts left out."""
        candidates = parse_candidates(children)
        self._log_foreign(children, candidates)
        present = {candidate.name for candidate in candidates}
        self._ghosts &= present  # a ghost deleted by hand is forgotten
        names = [c.name for c in candidates if c.name not in self._ghosts]
        while names and names[0] != self.candidacy.name and names[0] != self._checked_first:
            stat = self.zk.stat(f"{self.path}/{names[0]}")
            if stat is not None and stat.ephemeral_owner != 0:
                self._checked_first = names[0]
                break
            if stat is not None:
                self.ghost(names[0])
            names.pop(0)
        return names

    def ghost(self, name: str) -> None:
        """`name` belongs to no session: leave it out of every listing from now on."""
        log.warning("znode %s/%s has a candidate's name but no session (made by hand?): not a "
                    "candidate; ignored", self.path, name)
        self._ghosts.add(name)

    def _log_foreign(self, children: list[str], candidates: list[Candidate]) -> None:
        if len(children) == len(candidates) and not self._foreign:
            return
        names = {candidate.name for candidate in candidates}
        foreign = {child for child in children if child not in names}
        new = sorted(foreign - self._foreign)
        self._foreign = foreign
        if new:
            shown = ", ".join(repr(name[:64]) for name in new[:5])
            more = f" and {len(new) - 5} more" if len(new) > 5 else ""
            log.warning("ignoring %d znode(s) in %s that are not a candidate: %s%s",
                        len(new), self.path, shown, more)
