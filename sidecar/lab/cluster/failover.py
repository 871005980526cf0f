"""One failover of a helm-installed release, triggered and timed as a user sees it.

Shared by `bench/cluster_failover.py`, the exclusivity tests and `leader-sidecar demo
--cluster`. The actions are what users do to the pod labelled `role=leader`: `kubectl
delete pod` (*graceful*), a crash of its sidecar (*crash*, SIGKILL of its process: the pod
runner's on kwok's nodes, the container's on a real node), `kubectl annotate ...
leader-election/step-down=now` (*step-down*); and, for the crash-order test, *freeze*
(SIGSTOP of the leader's sidecar, SIGCONT once another pod is labelled: a frozen process
keeps its pod's `leader` label for the successor to clear).

Everything is read from a `GroupWatch` (a watch of the group's pods and of the leader
Service's EndpointSlices), never sampled. The clock starts at the action *as the API
server recorded it*: the watch event that shows the deletionTimestamp, or the step-down
annotation (kubectl's own start-up, 100 to 200 ms here, is not the sidecars' time). A
crash or a freeze leaves no record in the API server: its clock starts at the signal.
From there: another pod labelled leader, the `<release>-leader` Service's ready
addresses being exactly that pod's, and no pod but that one labelled leader. Each round
also reports the intervals in which two pods carried the leader label (the bar for
graceful actions is none) and the time in which none did.
"""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import time
from collections.abc import Callable

from sidecar.lab.cluster.release import ChartRelease
from sidecar.lab.cluster.watch import GroupWatch, PodSeen

ACTIONS = ("graceful", "crash", "step-down")
GRACEFUL = ("graceful", "step-down")
MEASURES = {
    "labelled": "another pod labelled leader",
    "endpoint": "leader Service's EndpointSlice on it",
    "only": "no other pod labelled leader",
}


@dataclasses.dataclass(frozen=True)
class Failover:
    action: str
    old: str
    new: str
    seconds: dict[str, float]  # MEASURES key -> seconds from the action's record
    doubles: tuple[float, ...]  # seconds of each interval with two pods labelled leader
    unlabelled: float  # seconds in which no pod was labelled leader
    recorded_after: float  # seconds from the command to the API server's record of it
    cleared_first: bool  # the old pod's label was off before the new one was on
    old_uid: str = ""
    new_uid: str = ""
    walls: dict[str, float] = dataclasses.field(default_factory=dict)  # as `seconds`, wall


def watch_release(release: ChartRelease) -> GroupWatch:
    return GroupWatch(release.cluster.kubeconfig, release.namespace, release.app_selector,
                      service=f"{release.name}-leader").start()


def act(release: ChartRelease, action: str, leader: str) -> None:
    if action == "graceful":
        subprocess.run([release.cluster.tool("kubectl"), "--kubeconfig",
                        str(release.cluster.kubeconfig), "-n", release.namespace,
                        "delete", "pod", leader, "--wait=false"],
                       capture_output=True, check=True, timeout=30)
    elif action == "crash":
        release.signal_sidecar(leader, signal.SIGKILL)
    elif action == "freeze":
        release.signal_sidecar(leader, signal.SIGSTOP)
    elif action == "step-down":
        # A value of its own each time: the same value over one the sidecar has not yet
        # removed (its removal late on a busy machine) would change nothing, and no
        # event would tell that the request was made.
        release.kubectl("annotate", "pod", leader,
                        f"leader-election/step-down=now-{time.time_ns()}", "--overwrite")
    else:
        raise ValueError(f"unknown action {action!r}")


def settled(watch: GroupWatch, replicas: int, timeout: float = 60.0) -> str:
    """The leader once exactly one pod says leader and the others follower."""
    return str(watch.wait_state(lambda w: w.settled_leader(replicas), timeout,
                                f"one leader and {replicas - 1} followers"))


def fail_over(release: ChartRelease, watch: GroupWatch, action: str,
              timeout: float = 60.0) -> Failover:
    """Act on the settled leader and time the three moments; raises TimeoutError."""
    leader = settled(watch, release.replicas, timeout)
    old_uid = next(p.uid for p in watch.pods.values() if p.name == leader and not p.deleting)
    mark = watch.mark()
    commanded = time.monotonic()
    act(release, action, leader)
    try:
        start = _recorded(watch, action, leader, old_uid, mark, commanded, timeout)
        new = watch.wait_for(lambda s: s.role == "leader" and s.uid != old_uid, mark,
                             timeout, f"{action}: another pod labelled leader")
    finally:
        if action == "freeze":
            release.signal_sidecar(leader, signal.SIGCONT)
    only = watch.wait_for(lambda s: s.leaders == (new.name,), mark, timeout,
                          f"{action}: only {new.name} labelled leader")
    ip = new.ip or watch.ip(new.name)
    # From the command, not from `start`: the slice and the pods come on two watch
    # streams, so on a busy machine the slice's change can arrive before the pod event
    # that dates the action; waiting for a change after `start` then waited for one that
    # had already come (a 60 s timeout seen twice). Such an early arrival counts as 0.
    endpoint = watch.wait_endpoints((ip,) if ip else (), commanded, timeout)
    seconds = {"labelled": new.at - start, "endpoint": max(0.0, endpoint.at - start),
               "only": max(only.at, new.at) - start}
    old_off = watch.wait_for(lambda s: s.uid == old_uid and (s.role != "leader"
                                                             or s.type == "DELETED"),
                             mark, timeout, f"{action}: the label of {leader} off")
    return Failover(
        action, leader, new.name, seconds,
        doubles=tuple(d.seconds for d in watch.doubles_since(commanded)),
        unlabelled=sum(min(gap.end or new.at, new.at) - max(gap.start, commanded)
                       for gap in watch.unlabelled if (gap.end or new.at) > commanded
                       and gap.start < new.at),
        recorded_after=start - commanded,
        cleared_first=watch.changes.index(old_off) < watch.changes.index(new),
        old_uid=old_uid, new_uid=new.uid,
        walls={"recorded": time.time() - (time.monotonic() - start), "labelled": new.wall})


def _recorded(watch: GroupWatch, action: str, leader: str, old_uid: str, mark: int,
              commanded: float, timeout: float) -> float:
    """The instant the watch showed the action; the command's for a crash or freeze."""
    wanted: dict[str, Callable[[PodSeen], bool]] = {
        "graceful": lambda s: s.uid == old_uid and s.deleting,
        "step-down": lambda s: s.uid == old_uid and s.step_down is not None,
    }
    predicate = wanted.get(action)
    if predicate is None:
        return commanded
    return watch.wait_for(predicate, mark, timeout, f"{action} of {leader} in the API server").at
