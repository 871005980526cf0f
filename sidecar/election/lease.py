"""The leader's lease: until when no other candidate can possibly have become leader.

Clock and protocol assumptions (client-go style, next to the code that relies on them):

1. The lease is anchored on a request the ZooKeeper *leader* committed with a quorum (a
   check-only transaction on the own znode, sent at local monotonic time `t_send`). Plain
   reads are not enough: they are answered from the connected server's local copy, and a
   server cut off from the ZooKeeper leader keeps answering them (for up to syncLimit
   ticks) while the quorum may already have expired the session.
2. The ZooKeeper leader expires a session `T` (the *negotiated* timeout) after the newest
   touch it has *received*. Touches reach it from the connected server in its pings to the
   leader, every half tick; a partition can lose the touch of the newest request. The
   candidate sends a request at least every renewal interval (T/4), and a half tick is at
   most T/4 (the server grants T >= 2 ticks), so the newest touch the leader holds is at
   most T/2 older than `t_send`: the session cannot expire before `t_send + T/2`. A new
   ZooKeeper leader restarts every session's timer in full, which only errs on the safe
   side, and so does the servers' rounding of expiry up to the next tick.
3. Local monotonic time and the servers' time advance at rates that differ by less than
   `DRIFT_RATIO`; the margin `max(MIN_MARGIN, DRIFT_RATIO * T)` absorbs that.
4. Applications read `lease_expires` as wall-clock time on the same node. The conversion
   from monotonic to wall time happens once, when the lease is renewed; a wall-clock step
   between renewal and the application's check is *not* covered (run NTP in slew mode).

So `lease_expires = t_send + T/2 - margin`, renewed every T/4: a healthy leader's lease
always runs at least T/4 - margin ahead.

The heir (the candidate right behind the leader) leads with no round trip. While it
waits it keeps an anchor of its own: the same check-only transaction on its own znode,
committed every T/4, exactly as a leader renews. When the deletion of its predecessor
arrives, it leads at once with `lease_expires = t_send + T/2 - margin` of its newest
anchor, provided at least `margin` of that is left (otherwise it takes the round trip).
Why no other candidate can hold an unexpired lease meanwhile, step by step:

5. Nobody is ahead of the heir. Its predecessor was first in its last listing, and
   sequence numbers in a parent only grow, so every candidate created since sorts behind
   it. (If the parent was deleted and recreated, the heir's own znode went first, and
   ZooKeeper delivers that deletion to the heir before any later one: it volunteers
   again instead.)
6. The predecessor's lease has ended. Its znode goes in one of three ways: it demoted
   (role files say `unknown`, lease withdrawn) before it deleted the znode; or its
   session expired, which by 2. happens only after its own lease ran out; or someone
   deleted it by hand, which ZooKeeper ACLs (`--zk-auth`) rule out.
7. The heir's session is alive, so its znode still exists, and will until
   `t_send + T/2` (2. applied to the anchor). A watch event for a change at zxid Z
   reaches a session only if that session was alive at Z: the server closes an expired
   session's connection when it applies the closeSession, in the same order as Z.
8. Nobody behind the heir can lead before its znode is gone, which by 7. is after the
   heir's lease. A heir frozen after it read the event computes its deadline from the
   anchor's send time, not from when it runs again: a lease that ran out while it was
   frozen is published already expired.

A candidate that finds itself first in a listing (a cold start, or a follower whose
predecessors all went) leads the same way when the newest quorum-committed request of
its session is fresh enough: usually the create of its own znode, which a quorum commits
like the check transaction. 5. holds because the listing was served after that create
(ZooKeeper answers one session in order), so every znode ahead of it that the listing
lacks was deleted by a committed change; 6. to 8. hold as written. The listing may come
from a server cut off from the quorum; it is not what bounds the lease, the anchor is.
"""

from __future__ import annotations

import datetime as dt
import time

DRIFT_RATIO = 0.05
MIN_MARGIN = 0.05
RENEW_FRACTION = 0.25
LEASE_FRACTION = 0.5


class LeaseConfigError(ValueError):
    pass


def margin(session_timeout: float) -> float:
    return max(MIN_MARGIN, DRIFT_RATIO * session_timeout)


def renew_interval(session_timeout: float) -> float:
    return RENEW_FRACTION * session_timeout


def check_invariants(session_timeout: float) -> None:
    """A renewed lease must still run for a while after the next renewal is due."""
    if renew_interval(session_timeout) + margin(session_timeout) >= (
        LEASE_FRACTION * session_timeout
    ):
        raise LeaseConfigError(
            f"session timeout {session_timeout:g}s too short for a lease: renewal every "
            f"{renew_interval(session_timeout):g}s plus margin {margin(session_timeout):g}s"
        )


def lease_deadline(answered_send: float, session_timeout: float) -> float:
    """Monotonic instant until which this candidate's leadership is certain."""
    return answered_send + LEASE_FRACTION * session_timeout - margin(session_timeout)


def monotonic_to_wall(deadline: float) -> dt.datetime:
    remaining = deadline - time.monotonic()
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=remaining)
