"""The leader's lease: until when no other candidate can possibly have become leader.

Clock assumptions (client-go style, stated next to the code that relies on them):

1. A ZooKeeper server that answered a request sent at local monotonic time `t_send` had
   the session alive after `t_send`; the ensemble cannot expire the session, and so cannot
   delete the leader's ephemeral znode and elect a successor, before `t_send + T`, where
   `T` is the *negotiated* session timeout. Servers only ever round expiry *up* to the next
   tick, and a follower server forwards a touch to the leader later, never earlier: both
   err on the safe side.
2. Local monotonic time and the servers' time advance at rates that differ by less than
   `DRIFT_RATIO`. The margin `max(MIN_MARGIN, DRIFT_RATIO * T)` absorbs that difference.
3. Applications read `lease_expires` as wall-clock time on the same node. The conversion
   from monotonic to wall time happens once, when the lease is renewed; a wall-clock step
   between renewal and the application's check is *not* covered (run NTP in slew mode).

Renewal: the election renews with one cheap round trip every `RENEW_FRACTION * T`
(a quarter, so at least every third of the timeout as the design requires).
"""

from __future__ import annotations

import datetime as dt
import time

DRIFT_RATIO = 0.05
MIN_MARGIN = 0.05
RENEW_FRACTION = 0.25


class LeaseConfigError(ValueError):
    pass


def margin(session_timeout: float) -> float:
    return max(MIN_MARGIN, DRIFT_RATIO * session_timeout)


def renew_interval(session_timeout: float) -> float:
    return RENEW_FRACTION * session_timeout


def check_invariants(session_timeout: float) -> None:
    """A renewed lease must still run for a while after the next renewal is due."""
    if renew_interval(session_timeout) + margin(session_timeout) >= session_timeout:
        raise LeaseConfigError(
            f"session timeout {session_timeout:g}s too short for a lease: renewal every "
            f"{renew_interval(session_timeout):g}s plus margin {margin(session_timeout):g}s"
        )


def lease_deadline(answered_send: float, session_timeout: float) -> float:
    """Monotonic instant until which this candidate's leadership is certain."""
    return answered_send + session_timeout - margin(session_timeout)


def monotonic_to_wall(deadline: float) -> dt.datetime:
    remaining = deadline - time.monotonic()
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=remaining)
