"""Squatting refused: with `--zk-auth`, the ACLs of the nodes an election relies on are
checked before the candidate volunteers, so before it leads or follows.

The threat: a client without the group's credentials makes one of these nodes first,
with an open ACL (`world:anyone` with every permission), before the group ever starts.
ZooKeeper keeps the ACL a node was made with, so the group would run its election on a
node whose maker, or anyone, may delete its candidates, forge its leader record, or
delete and make anew what the secure defaults promise is the group's own.

The nodes, and the ACL each may have (`verdict`):

1. The shared parents above the election (`/leader-election`), made with
   `world:anyone:rc`: every group makes its election there, nobody deletes. No entry of
   another scheme than digest may grant more than read and create. Entries of other
   digests are other groups' (a parent made by an earlier version granted its maker all):
   accepted, as groups holding credentials of the same ensemble are trusted not to
   sabotage each other (docs/security.md).
2. The group's own nodes: the election (its candidates), the leader record
   (`<election>.leader`) and the presence markers' folder (`<election>.alive`), made with
   `digest:<ours>:all, world:anyone:r`. No entry of another scheme may grant more than
   read; nor may another digest where the node lets this group in (a node of other
   credentials alone is refused by ZooKeeper itself: NoAuth, `worker`, the case of a
   reinstall with new credentials over old znodes).

Each check is one round trip: the nodes are made where missing (parents first, each with
its ACL; the record too, empty, so that nobody else can make it later with an ACL of their
own) and their ACLs read back, pipelined (`ZkSession.made_with_acls`).

A shared parent found open is repaired when its ACL lets us (an open ACL grants admin to
anyone): its digest entries stay, every other entry is replaced by `world:anyone:rc`
(`set_acl` at the version judged, one warning line). That is safe because nothing a
parent's maker could do while it was open touches the election except through the
group's own nodes below it, which the same round trip has just checked one by one (a
child deleted and made anew, a record forged into a new node: all caught there), and the
parent's data is never read. It is also what an upgrade needs: a `/leader-election` made
by a release without credentials is open, and several groups live in it, so deleting it
is not an option.

A group's own node that breaks its rule is never used, and not repaired: resetting the
ACL cannot undo what the node's maker could do while it was open (children of its own in
the election, ephemeral `candidate-` nodes that would sort first; a record; watches). Who
made the node has to be found out and the node deleted by an operator; the candidates
then make it anew with the group's ACL at their next retry. `OpenAcl` names it and its
ACL, and the worker says `unknown`, logs that one line, posts it as an Event, and retries
with backoff (`worker`).

Guaranteed: a candidate with credentials never creates its znode in, leads or follows on
an election whose own nodes break these rules when it volunteers. Not guaranteed: a node
deleted and made anew after that check by someone allowed to (a group whose digest an
old parent grants all, or whoever opens a repaired parent again with its old admin right
before the repair) is found only at the next volunteer.
"""

from __future__ import annotations

import logging

from ..zk import AclEntry, ConnectionTrouble, NotAuthorized, Perm, ZkSession
from .presence import markers_path
from .record import record_path

log = logging.getLogger(__name__)

SHARED_MAY = Perm.READ | Perm.CREATE  # what anyone may do in a shared parent
OTHERS_MAY = Perm.READ  # what anyone but the group may do in its own nodes


class OpenAcl(NotAuthorized):
    """A node of the election is open to others: never used."""

    def __init__(self, path: str, acl: list[AclEntry], shared: bool) -> None:
        entries = ", ".join(str(entry) for entry in acl) or "none"
        contract = (
            "world:anyone:rc (a shared parent: no scheme but digest may grant more)"
            if shared else "digest:<this group>:cdrwa, world:anyone:r"
        )
        super().__init__(
            f"refusing the election: {path} has the ACL [{entries}], open to others where "
            f"the group needs {contract}; a client without the group's credentials made it "
            "(squatting?): delete it so that the group makes it anew"
        )
        self.path = path


def verdict(acl: list[AclEntry], shared: bool, ours: str) -> bool:
    """Whether a node with `acl` keeps its promise (see the module's text)."""
    allowed = SHARED_MAY if shared else OTHERS_MAY
    foreign = False  # another digest may do more than read in a group node
    usable = False  # the node lets this group do more than read
    for entry in acl:
        beyond = entry.perms & ~allowed
        if entry.scheme != "digest":
            if beyond:
                return False
        elif entry.id == ours:
            usable = bool(entry.perms & ~Perm.READ)
        elif not shared and beyond:
            foreign = True
    # A node of other credentials alone is not ours to use: ZooKeeper answers NoAuth to
    # the volunteer, and the worker says so (wrong --zk-auth, e.g. after a reinstall).
    return not (foreign and usable)


class AclGuard:
    """The check of one election's nodes, run by the worker before each volunteer."""

    def __init__(self, zk: ZkSession, election_path: str) -> None:
        self.zk = zk
        parts = election_path.strip("/").split("/")
        parents = ["/" + "/".join(parts[: i + 1]) for i in range(len(parts) - 1)]
        self.nodes = [(parent, True) for parent in parents] + [
            (election_path, False),
            (record_path(election_path), False),
            (markers_path(election_path), False),
        ]
        self.checks = 0
        self.repairs = 0

    @property
    def enabled(self) -> bool:
        """Only with credentials: without them every node is open by contract."""
        return self.zk.digest_id is not None

    def verify(self) -> None:
        """Make the missing nodes and check every ACL; repair an open shared parent,
        `OpenAcl` for the first broken node of the group's own."""
        ours = self.zk.digest_id
        if ours is None:
            return
        self.checks += 1
        found = self.zk.made_with_acls(self.nodes)
        for (path, shared), read in zip(self.nodes, found, strict=True):
            if read is None or verdict(read[0], shared, ours):
                continue
            acl, version = read
            if not shared or not self._repaired(path, acl, version):
                raise OpenAcl(path, acl, shared)

    def _repaired(self, path: str, acl: list[AclEntry], version: int) -> bool:
        """A shared parent's ACL set to the contract (see the module's text), if we may."""
        if not any(Perm.ADMIN in e.perms for e in acl if e.scheme != "digest" or (
            e.id == self.zk.digest_id
        )):
            return False
        repaired = [e for e in acl if e.scheme == "digest"] + [
            AclEntry("world", "anyone", SHARED_MAY)
        ]
        try:
            self.zk.set_acl(path, repaired, version)
        except NotAuthorized:
            # The ACL we read granted us admin, so it has changed since (a peer repaired it
            # first): judge it again shortly, as after any failed request.
            raise ConnectionTrouble(f"the ACL of {path} changed while being repaired") from None
        # Anything else (BadVersion: changed since it was read; no answer) propagates as a
        # plain ZooKeeper error too.
        log.warning("repaired the ACL of the shared parent %s: was [%s], now [%s] (every "
                    "group may read and create there, nobody may delete)", path,
                    ", ".join(map(str, acl)), ", ".join(map(str, repaired)))
        self.repairs += 1
        return True
