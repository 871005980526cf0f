"""The leader's lease: until when no other candidate can possibly have become leader.

Clock and protocol assumptions (client-go style, next to the code that relies on them):

1. The lease is anchored on a request the ZooKeeper *leader* committed with a quorum (a
   check-only transaction on the own znode, sent at local monotonic time `t_send`). Plain
   reads are not enough: they are answered from the connected server's local copy, and a
   server cut off from the ZooKeeper leader keeps answering them (for up to syncLimit
   ticks) while the quorum may already have expired the session.
2. The ZooKeeper leader expires a session `T` (the *negotiated* timeout) after the newest
   touch it has *received*. A connect (a new session, or a reconnect, which the server
   revalidates with the leader) touches the session at the leader directly. Every other
   packet (request or ping) touches it at the server the client is connected to, which
   forwards its touches to the leader in its answer to the leader's pings, every half
   tick. A committed anchor proves the link from that server to the leader was up when
   it committed; the link can fail right after, losing every touch it had not forwarded
   yet: at worst those of the last half tick before the commit. The server grants
   `T >= 2 ticks`, so a half tick is at most `T/4`: every packet sent at least `T/4`
   before `t_send` has reached the leader (measured on our clock as
   `T/4 * (1 + DRIFT_RATIO)`, so that a clock running fast by up to `DRIFT_RATIO` still
   spans a half tick: 3.). So the session cannot expire before
   `touch + T`, where `touch` is the newest of: a connect of this session sent before
   `t_send`, and a packet of it sent at or before `t_send - T/4` (`ZkSession` records
   every packet kazoo sends, its pings included). The lease is
   `min(t_send + T/2, touch + T) - margin`: `t_send + T/2` when the session sent anything
   in the quarter before (a leader renewing every `T/4`, an heir keeping its anchor), but
   shorter after an idle spell: at `T = 2` ticks a follower that only pinged (every
   `T/3`, kazoo's pace) gets about `t_send + 0.40 T - margin` at worst, and a process frozen
   for most of `T` gets what is left of its last touch, nothing if that is too little.
   A new ZooKeeper leader restarts every session's timer in full, and servers round an
   expiry up to the next tick: both err on the safe side.
3. Local monotonic time and the servers' time advance at rates that differ by less than
   `DRIFT_RATIO`; the margin `max(MIN_MARGIN, DRIFT_RATIO * T)` absorbs that, and the few
   milliseconds a server's ping round may run late. The bound, exactly: let `rho` be the
   rate of this process's monotonic clock against the ZooKeeper leader's (seconds of
   ours per second of its; below 1 ours runs slow). A lease of `L` seconds of our clock
   lasts `L/rho` real seconds. With the anchor sent at `t_send` and the newest touch the
   leader certainly received `d` seconds of our clock before it, 2. gives
   `L = min(T/2, T - d) - margin` and the session lives until `touch + T` at least, so
   the lease ends first when `L/rho <= T - d/rho`, that is when
   `rho >= (min(T/2, T - d) - margin + d) / T`:
   - an anchor after an idle spell (`d >= T/2`, the lease `touch + T - margin`):
     `rho >= 1 - margin/T` (0.95 for `T >= 1 s`): `slowest_rate_any`, the bound the
     argument guarantees whatever the network lost, and the reason for `DRIFT_RATIO`;
   - a leader or heir renewing every `T/4` (`d = T/4`, the steady state):
     `rho >= 3/4 - margin/T` (0.70);
   - the anchor's own touch reached the ZooKeeper leader (`d = 0`: the link between the
     servers held, as it does when only this sidecar's link fails; the usual case):
     `rho >= 1/2 - margin/T` (0.45 at `T = 2 s`): `slowest_rate`, the "factor of 2" of a
     `T/2 - margin` lease against a `T` session. `tests/test_clock_skew.py` runs a leader
     under libfaketime at exactly this rate, cut off right after a renewal: 0 two-lease
     instants; and 0.05 below it: the checker sees two leases in every round.
   A clock that runs fast (`rho > 1`) shortens leases in real time, but two intervals
   must be *long* in real time and so bound it. The forwarding window of 2.: packets
   counted as forwarded were sent `T/4 * (1 + DRIFT_RATIO)` of our clock before the
   anchor, at least the half tick a server may hold them when
   `rho <= (1 + DRIFT_RATIO) * T / (2 * tick)`: 1.05 at the smallest `T` (two ticks),
   5.25 at the soak's ten. And `release_wait` (6.): `T/2 + margin` of the heir's clock
   must outlast `T/2 - margin` of the owner's, so the heir's rate may be at most
   `fastest_ratio` = `(T/2 + margin)/(T/2 - margin)` (1.22) times the owner's. Where a
   znode can be deleted by hand while its owner lives (6.; the soak's `znode-delete`),
   that bounds a slow owner too, whatever the case above: at least `1/fastest_ratio`
   (0.82) of its heir's rate.
4. Applications read `lease_expires` as wall-clock time on the same node. The conversion
   from monotonic to wall time reads the wall clock *first* (`monotonic_to_wall`): a
   stall between the two reads (descheduling, a pause of the collector, SIGSTOP) can
   only shorten the published lease, never lengthen it. A lease that has run out by the
   time it would be published is not published (`board`): a process that wakes from a
   freeze never shows `leader` on an old anchor. A wall-clock step between renewal and
   the application's check is *not* covered (run NTP in slew mode).

So a healthy leader's `lease_expires = t_send + T/2 - margin`, renewed every `T/4`: its
lease always runs at least `T/4 - margin` ahead. `check_invariants` checks, when the
configuration is built, that this holds and that a lease taken on the worst idle anchor
(`5T/12 - margin`) still lasts until its first renewal is due.

The heir (the candidate right behind the leader) leads with no round trip. While it
waits it keeps an anchor of its own: the same check-only transaction on its own znode,
committed every T/4, exactly as a leader renews. When the deletion of its predecessor
arrives, it leads at once with the lease of its newest anchor, provided at least
`margin` of that is left (otherwise it takes the round trip).
Why no other candidate can hold an unexpired lease meanwhile, step by step:

5. Nobody is ahead of the heir. Its predecessor was first in its last listing, and
   sequence numbers in a parent only grow, so every candidate created since sorts behind
   it. If the parent was deleted (recursively: children first, in any order) and
   recreated, sequence numbers start again, but the heir's own znode was deleted before
   the parent was, so that deletion reaches the heir before any event of the new parent.
   The predecessor's deletion may come first; its marker, which lives beside the
   election, then still stands, and the heir holds back (6.) until its own deletion
   arrives and it volunteers again.
6. The predecessor's lease has ended. Its znode goes in one of three ways, and the heir
   tells them apart by the predecessor's presence marker (`presence`), an ephemeral
   znode created and deleted in the same transactions as the candidate's own:
   - it left: it demoted (role files say `unknown`, lease withdrawn) before it deleted
     its marker and its znode in one transaction, marker first;
   - its session expired, which by 2. happens only after its own lease ran out, and
     which deletes the marker in the same transaction;
   - another client deleted the znode (zkCli, a tool, a recursive delete of the
     election) while its session lives: the marker stays. The heir then holds back
     until the marker goes (the owner saw its znode go, demoted, then deleted it) or
     `release_wait(T)` after it saw the deletion, whichever is first: the owner's
     newest anchor committed before the deletion (a check on a deleted znode fails), so
     its lease ends at most `T/2 - margin` of its clock after the deletion, which the
     heir saw after it happened.
7. The heir's session is alive, so its znode still exists, and will until its lease
   ends (2. applied to the anchor). A watch event for a change at zxid Z reaches a
   session only if that session was alive at Z: the server closes an expired session's
   connection when it applies the closeSession, in the same order as Z.
8. Nobody behind the heir can lead before its znode is gone, which by 7. is after the
   heir's lease. A heir frozen after it read the event computes its deadline from the
   anchor's send time, not from when it runs again: a lease that ran out while it was
   frozen is not published (4.).

A candidate that finds itself first in a listing (a cold start, or a follower whose
predecessors all went) leads the same way when the newest quorum-committed request of
its session is fresh enough: usually the create of its own znode, which a quorum commits
like the check transaction. 5. holds because the listing was served after that create
(ZooKeeper answers one session in order), so every znode ahead of it that the listing
lacks was deleted by a committed change; 6. holds because it first looks for markers
without a candidate among those created before its own (`presence`), and holds back for
them as the heir does; 7. and 8. hold as written. The listing may come from a server cut
off from the quorum; it is not what bounds the lease, the anchor is.

A recursive delete of the election's *parent* (which holds the markers' folder too) while
candidates run can remove a leader's marker before its znode, in any order: that is as
good as killing its session by hand, and only ACLs (`--zk-auth`) rule it out.
"""

from __future__ import annotations

import datetime as dt
import time

DRIFT_RATIO = 0.05
MIN_MARGIN = 0.05
RENEW_FRACTION = 0.25
LEASE_FRACTION = 0.5
FORWARD_FRACTION = 0.25  # a half tick at most (2.): touches older than this reached the leader
IDLE_PING_FRACTION = 1 / 3  # kazoo pings an idle session every T/3 (minus jitter)


class LeaseConfigError(ValueError):
    pass


def margin(session_timeout: float) -> float:
    return max(MIN_MARGIN, DRIFT_RATIO * session_timeout)


def renew_interval(session_timeout: float) -> float:
    return RENEW_FRACTION * session_timeout


def idle_lease(session_timeout: float) -> float:
    """The shortest lease an anchor gives a session that only pinged before it (2.)."""
    t = session_timeout
    worst_touch = forward_window(t) + IDLE_PING_FRACTION * t  # before t_send
    return min(LEASE_FRACTION * t, t - worst_touch) - margin(t)


def check_invariants(session_timeout: float) -> None:
    """Every lease must outlast the renewal that follows it, with `margin` to spare for
    its round trip: the lease a healthy leader renews (`T/2 - margin`) and the one taken
    on the first anchor after an idle spell (2.)."""
    t = session_timeout
    shortest = min(LEASE_FRACTION * t - margin(t), idle_lease(t))
    if renew_interval(t) + margin(t) >= shortest:
        raise LeaseConfigError(
            f"session timeout {t:g}s too short for a lease: renewal every "
            f"{renew_interval(t):g}s plus margin {margin(t):g}s outlasts the shortest "
            f"lease, {shortest:.3g}s"
        )


def lease_deadline(answered_send: float, session_timeout: float, touch: float | None) -> float:
    """Monotonic instant until which this candidate's leadership is certain: anchored on a
    request sent at `answered_send` and committed, given `touch`, the newest instant at
    which the ZooKeeper leader certainly received a touch of the session (2.; None: no
    such touch is known, and the anchor gives no lease)."""
    t = session_timeout
    if touch is None:
        return answered_send - margin(t)
    return min(answered_send + LEASE_FRACTION * t, touch + t) - margin(t)


def forward_window(session_timeout: float) -> float:
    """How long before an anchor a packet must have been sent, on our clock, to have
    reached the ZooKeeper leader (2.): a half tick, `T/4` at most, with room for a clock
    running fast by `DRIFT_RATIO` (3.)."""
    return FORWARD_FRACTION * session_timeout * (1 + DRIFT_RATIO)


def forwarded_before(answered_send: float, session_timeout: float) -> float:
    """Packets sent at or before this instant reached the ZooKeeper leader (2.)."""
    return answered_send - forward_window(session_timeout)


def release_wait(session_timeout: float) -> float:
    """How long a candidate holds back after it saw the znode of a candidate ahead of it
    deleted while that candidate's session lives (6.): its owner's lease, `T/2 - margin`
    of the owner's clock, measured on ours, with the margin back for drift both ways."""
    return LEASE_FRACTION * session_timeout + margin(session_timeout)


def slowest_rate(session_timeout: float) -> float:
    """The slowest clock rate (ours against the servers', 3.) at which a lease still ends
    before the session when the anchor's own touch reached the ZooKeeper leader."""
    t = session_timeout
    return (LEASE_FRACTION * t - margin(t)) / t


def slowest_rate_any(session_timeout: float) -> float:
    """The slowest clock rate (3.) at which every lease the argument gives, the one after
    an idle spell with the last half tick's touches lost included, ends before the session."""
    t = session_timeout
    return 1 - margin(t) / t


def fastest_ratio(session_timeout: float) -> float:
    """How much faster the heir's clock may run than the owner's for `release_wait` (6.)
    still to outlast the owner's lease."""
    t = session_timeout
    return (LEASE_FRACTION * t + margin(t)) / (LEASE_FRACTION * t - margin(t))


def between_clock_reads() -> None:
    """A seam for the lab's fault tests (`sidecar.lab.seams` replaces it): called between
    the two clock reads of `monotonic_to_wall`, where a stall or a SIGSTOP would do most
    harm. A no-op here."""


def monotonic_to_wall(deadline: float) -> dt.datetime:
    """The wall-clock instant of the monotonic `deadline` (4.): the wall clock is read
    first, so a stall before the monotonic read shortens the result, never lengthens it."""
    wall = dt.datetime.now(dt.UTC)
    between_clock_reads()
    remaining = deadline - time.monotonic()
    return wall + dt.timedelta(seconds=remaining)
